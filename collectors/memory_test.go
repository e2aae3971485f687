package collectors

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestParseMeminfo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []meminfoField
		wantErr string
	}{
		{
			name: "realistic",
			in:   "MemTotal:       24684096 kB\nActive(anon):       1544 kB\nHugePages_Total:       2\nDirectMap4k:       28672 kB\n",
			want: []meminfoField{{"MemTotal", 24684096 * 1024}, {"Active(anon)", 1544 * 1024}, {"HugePages_Total", 2}, {"DirectMap4k", 28672 * 1024}},
		},
		{name: "empty", in: "", wantErr: "empty file"},
		{
			name:    "truncated",
			in:      "MemTotal:       24684096 kB\nMemFree:        240",
			want:    []meminfoField{{"MemTotal", 24684096 * 1024}},
			wantErr: "line 2: no newline at end: file truncated",
		},
		{
			name:    "truncated after key",
			in:      "MemTotal:       24684096 kB\nMemFree:\n",
			want:    []meminfoField{{"MemTotal", 24684096 * 1024}},
			wantErr: "line 2: want \"Key: value [kB]\"",
		},
		{name: "garbage", in: "\x00\xff\xfe binary\n", wantErr: "line 1: want \"Key: value [kB]\""},
		{name: "not a number", in: "MemTotal: lots kB\n", wantErr: "line 1: MemTotal: strconv.ParseUint"},
		{name: "negative", in: "MemTotal: -1 kB\n", wantErr: "line 1: MemTotal: strconv.ParseUint"},
		{name: "unknown unit", in: "MemTotal: 1 MB\n", wantErr: "unit \"MB\" is not kB"},
		{name: "too many fields", in: "MemTotal: 1 kB extra\n", wantErr: "line 1: want"},
		{name: "no key", in: ": 1 kB\n", wantErr: "line 1: want"},
		{name: "blank line", in: "MemTotal: 1 kB\n\n", want: []meminfoField{{"MemTotal", 1024}}, wantErr: "line 2: want"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMeminfo(strings.NewReader(tc.in))
			checkErr(t, err, tc.wantErr)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzParseMeminfo(f *testing.F) {
	f.Add("MemTotal:       24684096 kB\nHugePages_Total:       0\n")
	f.Add("Active(anon):       1544 kB\nDirectMap2M:     2068480 kB\n")
	f.Add("MemFree:        240")
	f.Add("")
	snake := regexp.MustCompile(`^([a-z0-9]+(_[a-z0-9]+)*)?$`)
	f.Fuzz(func(t *testing.T, in string) {
		fields, err := parseMeminfo(strings.NewReader(in))
		if err == nil && len(fields) == 0 {
			t.Errorf("no fields and no error")
		}
		for _, fl := range fields {
			if !(fl.Value >= 0) {
				t.Errorf("%s = %v", fl.Name, fl.Value)
			}
			if n := snakeCase(fl.Name); !snake.MatchString(n) {
				t.Errorf("snakeCase(%q) = %q, not snake_case", fl.Name, n)
			}
		}
	})
}

// checkErr fails t unless err contains want, or is nil when want is empty.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Errorf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q does not contain %q", err, want)
	}
}

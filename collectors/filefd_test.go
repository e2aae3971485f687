package collectors

import (
	"strings"
	"testing"
)

func TestParseFileNr(t *testing.T) {
	for _, tc := range []struct {
		name               string
		in                 string
		allocated, maximum uint64
		wantErr            string
	}{
		{name: "realistic", in: "592\t0\t2466183\n", allocated: 592, maximum: 2466183},
		{name: "file-max at LONG_MAX", in: "592\t0\t9223372036854775807\n", allocated: 592, maximum: 9223372036854775807},
		{name: "empty", in: "", wantErr: "empty file"},
		{name: "truncated", in: "592\t0\t24", wantErr: "line 1: no newline at end: file truncated"},
		{name: "two fields", in: "592\t2466183\n", wantErr: "line 1: want \"allocated free maximum\""},
		{name: "garbage", in: "many\t0\tmore\n", wantErr: "line 1: field 1: strconv.ParseUint"},
		{name: "negative", in: "1\t-1\t2\n", wantErr: "line 1: field 2: strconv.ParseUint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := parseFileNr(strings.NewReader(tc.in))
			checkErr(t, err, tc.wantErr)
			if v[0] != tc.allocated || v[2] != tc.maximum {
				t.Errorf("got %d %d, want %d %d", v[0], v[2], tc.allocated, tc.maximum)
			}
		})
	}
}

func FuzzParseFileNr(f *testing.F) {
	f.Add("592\t0\t2466183\n")
	f.Add("592\t0\t24")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		v, err := parseFileNr(strings.NewReader(in))
		if err != nil && v != [3]uint64{} {
			t.Errorf("%q: values %v with error %v", in, v, err)
		}
	})
}

package collectors

import (
	"strings"
	"testing"
)

func TestParseUptime(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		up, idle float64
		wantErr  string
	}{
		{name: "realistic", in: "490.24 711.07\n", up: 490.24, idle: 711.07},
		{name: "empty", in: "", wantErr: "empty file"},
		{name: "truncated", in: "490.24 71", wantErr: "line 1: no newline at end: file truncated"},
		{name: "one field", in: "490.24\n", wantErr: "line 1: want \"uptime idle\""},
		{name: "garbage", in: "since tuesday\n", wantErr: "line 1: uptime: strconv.ParseFloat"},
		{name: "nan", in: "NaN 1.00\n", wantErr: "line 1: uptime: \"NaN\" is out of range"},
		{name: "inf", in: "1.00 Inf\n", wantErr: "line 1: idle: \"Inf\" is out of range"},
		{name: "negative", in: "-1.00 1.00\n", wantErr: "line 1: uptime: \"-1.00\" is out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUptime(strings.NewReader(tc.in))
			checkErr(t, err, tc.wantErr)
			if got != [2]float64{tc.up, tc.idle} {
				t.Errorf("got %v, want %v %v", got, tc.up, tc.idle)
			}
		})
	}
}

func FuzzParseUptime(f *testing.F) {
	f.Add("490.24 711.07\n")
	f.Add("490.24 71")
	f.Add("NaN Inf\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseUptime(strings.NewReader(in))
		if err != nil && got != [2]float64{} {
			t.Errorf("%q: values %v with error %v", in, got, err)
		}
		for _, v := range got {
			if !(v >= 0 && v <= maxSeconds) {
				t.Errorf("%q: %v out of range", in, v)
			}
		}
	})
}

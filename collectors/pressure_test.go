package collectors

import (
	"strings"
	"testing"
)

func TestParsePSI(t *testing.T) {
	t.Parallel()
	const (
		some = "some avg10=38.33 avg60=34.62 avg300=13.41 total=55781367\n"
		full = "full avg10=0.00 avg60=0.00 avg300=0.13 total=2619068\n"
	)
	for _, tc := range []struct {
		name, in string
		want     psiTotals
		wantErr  string
	}{
		{name: "realistic", in: some + full, want: psiTotals{some: 55781367, full: 2619068, hasSome: true, hasFull: true}},
		{name: "irq, full only", in: full, want: psiTotals{full: 2619068, hasFull: true}},
		{name: "line of a newer kernel", in: some + "most avg10=1 total=2\n" + full, want: psiTotals{some: 55781367, full: 2619068, hasSome: true, hasFull: true}},
		{name: "empty", in: "", wantErr: "empty file"},
		{name: "truncated in total", in: some + "full avg10=0.00 avg60=0.00 avg300=0.13 total=26", want: psiTotals{some: 55781367, hasSome: true}, wantErr: "line 2: no newline at end: file truncated"},
		{name: "no total", in: "some avg10=38.33 avg60=34.62\n", wantErr: `line 1: some: no total= in "some avg10=38.33 avg60=34.62"`},
		{name: "garbage", in: "\x00\xff\n", wantErr: "no some or full line"},
		{name: "total not a number", in: "some avg10=0.00 avg60=0.00 avg300=0.00 total=lots\n", wantErr: `line 1: some total: strconv.ParseUint: parsing "lots": invalid syntax`},
		{name: "total negative", in: "some avg10=0.00 avg60=0.00 avg300=0.00 total=-1\n", wantErr: "line 1: some total: strconv.ParseUint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePSI(strings.NewReader(tc.in))
			checkErr(t, err, tc.wantErr)
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParsePSI(f *testing.F) {
	f.Add("some avg10=38.33 avg60=34.62 avg300=13.41 total=55781367\nfull avg10=0.00 avg60=0.00 avg300=0.13 total=2619068\n")
	f.Add("full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	f.Add("some total=1")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parsePSI(strings.NewReader(in))
		if err == nil && !got.hasSome && !got.hasFull {
			t.Errorf("%q: no total and no error", in)
		}
		if !got.hasSome && got.some != 0 || !got.hasFull && got.full != 0 {
			t.Errorf("%q: total without its line: %+v", in, got)
		}
	})
}

package collectors

import (
	"strings"
	"testing"
)

func TestParseUintLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     uint64
		wantErr  string
	}{
		{name: "realistic", in: "4194304\n", want: 4194304},
		{name: "padded", in: " 262144\t\n", want: 262144},
		{name: "empty", in: "", wantErr: "empty file"},
		{name: "truncated", in: "41943", wantErr: "line 1: no newline at end: file truncated"},
		{name: "blank", in: "\n", wantErr: `line 1: want "number", got ""`},
		{name: "two numbers", in: "1 2\n", wantErr: `line 1: want "number", got "1 2"`},
		{name: "garbage", in: "lots\n", wantErr: `line 1: strconv.ParseUint: parsing "lots": invalid syntax`},
		{name: "negative", in: "-1\n", wantErr: "line 1: strconv.ParseUint"},
		{name: "hex", in: "0x10\n", wantErr: "line 1: strconv.ParseUint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUintLine(strings.NewReader(tc.in))
			checkErr(t, err, tc.wantErr)
			if got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

package collectors

import (
	"reflect"
	"strings"
	"testing"
)

const netDevHeader = "Inter-|   Receive                                                |  Transmit\n" +
	" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"

func TestParseNetDev(t *testing.T) {
	t.Parallel()
	lo := netDev{name: "lo", values: [16]uint64{3193, 29, 0, 0, 0, 0, 0, 0, 3193, 29}}
	for _, tc := range []struct {
		name, in string
		want     []netDev
		err      string
	}{
		{name: "empty", err: "empty file"},
		{name: "header only", in: netDevHeader},
		{
			name: "real",
			in: netDevHeader +
				"    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n" +
				"eth0.100: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 18446744073709551615\n",
			want: []netDev{lo, {name: "eth0.100", values: [16]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 18446744073709551615}}},
		},
		{
			name: "no space after the colon",
			in:   netDevHeader + "eth0:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
			want: []netDev{{name: "eth0", values: [16]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}},
		},
		{
			name: "truncated",
			in:   netDevHeader + "    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n  eth0: 131 7",
			want: []netDev{lo},
			err:  "line 4: no newline at end: file truncated",
		},
		{
			// Every counter there, the last one cut short: a value that lost digits.
			name: "truncated in the last counter",
			in:   netDevHeader + "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 1",
			err:  "line 3: no newline at end: file truncated",
		},
		{
			name: "short line",
			in:   netDevHeader + "eth0: 131 7\n",
			err:  "line 3: 2 counters for eth0, want 16",
		},
		{
			name: "garbage",
			in:   netDevHeader + "\x00\xff\xfe\n",
			err:  "line 3: no colon after the interface name",
		},
		{
			name: "no name",
			in:   netDevHeader + "   : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
			err:  "line 3: empty interface name",
		},
		{
			name: "negative",
			in:   netDevHeader + "eth0: 1 2 3 4 5 6 7 8 9 -10 11 12 13 14 15 16\n",
			err:  `line 3: eth0 tx_packets "-10": invalid syntax`,
		},
		{
			name: "too large",
			in:   netDevHeader + "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 18446744073709551616\n",
			err:  `line 3: eth0 tx_compressed "18446744073709551616": value out of range`,
		},
		{
			name: "extra column",
			in:   netDevHeader + "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n",
			err:  "line 3: 17 counters for eth0, want 16",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNetDev(strings.NewReader(tc.in))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			checkErr(t, err, tc.err)
		})
	}
}

func FuzzParseNetDev(f *testing.F) {
	for _, s := range []string{"", netDevHeader, netDevHeader + "lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", netDevHeader + "eth0:", netDevHeader + ":::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		devs, _ := parseNetDev(strings.NewReader(in))
		for _, d := range devs {
			if d.name == "" {
				t.Errorf("empty interface name from %q", in)
			}
		}
	})
}

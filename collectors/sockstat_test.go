package collectors

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/picket-agent/picket/agent/metric"
)

// The golden cases run with 4 KiB pages; this checks mem is scaled by the page size the
// collector was built with, and memory is not.
func TestSockstatPageSize(t *testing.T) {
	t.Parallel()
	o := testOptions("testdata/sockstat/busy")
	o.pageSize = 65536
	c, err := newSockstat(o)
	if err != nil {
		t.Fatal(err)
	}
	s := metric.NewSink("sockstat")
	if err := c.Collect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, x := range s.Samples() {
		if x.Field == "mem_bytes" || x.Field == "memory_bytes" {
			got[x.Labels[0].Value+"."+x.Field] = x.Value
		}
	}
	want := map[string]float64{"tcp.mem_bytes": 25 * 65536, "udp.mem_bytes": 6 * 65536, "frag.memory_bytes": 4352, "frag6.memory_bytes": 0}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestParseSockstat(t *testing.T) {
	t.Parallel()
	sockets := sockstatLine{proto: "sockets", keys: []string{"used"}, values: []uint64{1843}}
	tcp := sockstatLine{proto: "tcp", keys: []string{"inuse", "orphan", "tw", "alloc", "mem"}, values: []uint64{57, 2, 31, 213, 25}}
	const lines = "sockets: used 1843\nTCP: inuse 57 orphan 2 tw 31 alloc 213 mem 25\n"
	for _, tc := range []struct {
		name, in string
		want     []sockstatLine
		err      string
	}{
		{name: "empty", err: "empty file"},
		{name: "real", in: lines, want: []sockstatLine{sockets, tcp}},
		{name: "truncated", in: lines + "UDP: inuse 8 mem", want: []sockstatLine{sockets, tcp}, err: "line 3: no newline at end: file truncated"},
		{name: "key without value", in: lines + "UDP: inuse 8 mem\n", want: []sockstatLine{sockets, tcp}, err: `line 3: want "PROTO: key value …", got "UDP: inuse 8 mem"`},
		{name: "no pairs", in: "RAW:\n", err: `line 1: want "PROTO: key value …", got "RAW:"`},
		{name: "no colon", in: "TCP inuse 57\n", err: `line 1: want "PROTO: key value …", got "TCP inuse 57"`},
		{name: "blank line", in: lines + "\n", want: []sockstatLine{sockets, tcp}, err: `line 3: want "PROTO: key value …", got ""`},
		{name: "garbage", in: "\xff\xfe junk\n", err: `line 1: want "PROTO: key value …", got "\xff\xfe junk"`},
		{name: "not a number", in: "TCP: inuse fifty-seven orphan 2\n", err: `line 1: TCP inuse "fifty-seven": invalid syntax`},
		{name: "negative", in: "TCP: inuse -1\n", err: `line 1: TCP inuse "-1": invalid syntax`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSockstat(strings.NewReader(tc.in))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			checkErr(t, err, tc.err)
		})
	}
}

func FuzzParseSockstat(f *testing.F) {
	for _, s := range []string{"", "sockets: used 1843\nTCP: inuse 57 orphan 2 tw 31 alloc 213 mem 25\n", "FRAG6: inuse 0 memory 0\n", "UDP: inuse 8 mem", ":\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		lines, _ := parseSockstat(strings.NewReader(in))
		for _, l := range lines {
			if l.proto == "" || len(l.keys) == 0 || len(l.keys) != len(l.values) {
				t.Errorf("bad line %+v from %q", l, in)
			}
		}
	})
}

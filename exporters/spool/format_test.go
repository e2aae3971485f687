package spool

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/picket-agent/picket/agent/metric"
)

var (
	cpu0   = []metric.Label{{Key: "cpu", Value: "0"}}
	eth0   = []metric.Label{{Key: "iface", Value: "eth0"}}
	cgroup = []metric.Label{{Key: "cgroup", Value: "/system.slice/ssh.service", Named: true}, {Key: "le", Value: "+Inf"}}
)

// oddValues are values whose bits must survive: the varint path's edges, signed zero,
// NaN and infinities (the spool keeps them; exporters decide), subnormals.
var oddValues = []float64{
	0, math.Copysign(0, -1), 1, -1, 0.5, -0.25, 1e-300, 5e-324, math.MaxFloat64, -math.MaxFloat64,
	1 << 48, -1 << 48, 1<<48 + 1, 1 << 53, 1<<53 + 2, 1 << 63, -1 << 63, 1e300,
	math.NaN(), math.Float64frombits(0x7ff8_0000_dead_beef), math.Inf(1), math.Inf(-1),
	123456789012, 3.14159,
}

// testBatch returns a batch unlike its neighbours: labels shared and not, Named labels,
// both kinds, odd values, empty strings.
func testBatch(i int, t time.Time) *metric.Batch {
	b := &metric.Batch{Time: t}
	add := func(collector, field string, v float64, k metric.Kind, labels []metric.Label) {
		b.Samples = append(b.Samples, metric.Sample{Collector: collector, Field: field, Value: v, Kind: k, Labels: labels})
	}
	add("load", "load1", float64(i)/100, metric.Gauge, nil)
	add("cpu", "user", float64(i)*1.5, metric.Counter, cpu0)
	add("cpu", "system", float64(i)*0.25, metric.Counter, cpu0)
	add("net", "rx_bytes", float64(i)*1e9, metric.Counter, eth0)
	add("net", "tx_bytes", float64(i), metric.Counter, eth0)
	add("oom", "kills", float64(i%3), metric.Counter, cgroup)
	add("", "", oddValues[i%len(oddValues)], metric.Gauge, []metric.Label{{Key: "", Value: ""}})
	add("fs", "free_bytes", -float64(i), metric.Gauge, []metric.Label{{Key: "mount", Value: strings.Repeat("x", i%300)}})
	for j := range i % 5 {
		add("disk", "reads_completed", float64(j), metric.Counter, []metric.Label{{Key: "dev", Value: "sd" + string(rune('a'+j))}})
	}
	return b
}

// relayedBatch returns a batch that mixes picket's own samples with relayed ones of every
// origin, with times before, at and after t, and far from it either way.
func relayedBatch(t time.Time) *metric.Batch {
	base := t.UnixNano()
	tags := []metric.Label{{Key: "dc", Value: "eu-1"}, {Key: "host", Value: "app7"}}
	return &metric.Batch{Time: t, Samples: []metric.Sample{
		{Collector: "cpu", Labels: cpu0, Field: "user", Value: 12.5, Kind: metric.Counter},
		{Collector: "app.requests", Value: 17, Origin: metric.Graphite, Time: base - 3e9},
		{Collector: "app.latency", Labels: []metric.Label{{Key: "route", Value: "/api"}}, Value: 0.25, Origin: metric.Graphite, Time: base + 1},
		{Collector: "http", Labels: tags, Field: "p99", Value: 0.125, Origin: metric.InfluxFloat, Time: base + 1500},
		{Collector: "http", Labels: tags, Field: "count", Value: 1 << 40, Origin: metric.InfluxInt, Time: base + 1500},
		{Collector: "http", Labels: tags, Field: "bytes", Value: 1<<53 - 1, Origin: metric.InfluxUint, Time: base + 1500},
		{Collector: "http", Labels: tags, Field: "errors", Value: -3, Origin: metric.InfluxInt, Time: base},
		{Collector: "cpu", Labels: cpu0, Field: "system", Value: 2, Kind: metric.Counter},
		{Collector: "old", Field: "x", Value: math.NaN(), Origin: metric.InfluxFloat, Time: math.MinInt64},
		{Collector: "new", Field: "x", Value: 1, Origin: metric.InfluxFloat, Time: math.MaxInt64},
		{Collector: "arrived", Value: 1, Origin: metric.Graphite},
		{Collector: "self", Field: "own_time", Value: 5, Time: base - 7},
	}}
}

// sameBatch reports how a and b differ, or "" if they do not: times by instant, values
// by bits, nil and empty labels alike.
func sameBatch(a, b *metric.Batch) string {
	if !a.Time.Equal(b.Time) {
		return "time " + a.Time.String() + " != " + b.Time.String()
	}
	if len(a.Samples) != len(b.Samples) {
		return "sample counts differ"
	}
	for i := range a.Samples {
		x, y := &a.Samples[i], &b.Samples[i]
		if x.Collector != y.Collector || x.Field != y.Field || x.Kind != y.Kind || x.Origin != y.Origin || x.Time != y.Time ||
			math.Float64bits(x.Value) != math.Float64bits(y.Value) || len(x.Labels) != len(y.Labels) {
			return "sample " + x.Collector + "." + x.Field + " differs"
		}
		for j := range x.Labels {
			if x.Labels[j] != y.Labels[j] {
				return "labels of " + x.Collector + "." + x.Field + " differ"
			}
		}
	}
	return ""
}

func TestPayloadRoundTrip(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1700000000, 0)
	many := &metric.Batch{Time: t0}
	for i := range 3000 {
		many.Samples = append(many.Samples, metric.Sample{Collector: "c", Field: "f" + string(rune('a'+i%26)), Value: float64(i), Labels: []metric.Label{{Key: "k", Value: strings.Repeat("v", i%40)}}})
	}
	tests := []struct {
		name string
		b    *metric.Batch
	}{
		{"empty", &metric.Batch{Time: t0}},
		{"one", testBatch(1, t0)},
		{"labels and odd values", testBatch(7, t0)},
		{"long label", testBatch(299, t0)},
		{"many samples", many},
		{"relayed", relayedBatch(t0)},
		{"relayed before 1970", relayedBatch(time.Unix(-86400, 5))},
		{"relayed at time zero", relayedBatch(time.Time{})},
	}
	for _, v := range oddValues {
		tests = append(tests, struct {
			name string
			b    *metric.Batch
		}{"value", &metric.Batch{Time: t0, Samples: []metric.Sample{{Collector: "x", Field: "y", Value: v}}}})
	}
	var e encoder
	var d decoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := e.appendPayload(nil, tt.b)
			var got metric.Batch
			if err := d.decode(p, headerOf(tt.b), &got); err != nil {
				t.Fatal(err)
			}
			got.Time = tt.b.Time
			if diff := sameBatch(tt.b, &got); diff != "" {
				t.Fatal(diff)
			}
		})
	}
}

// headerOf is the record header of b that the decoder needs: its count and time.
func headerOf(b *metric.Batch) header {
	return header{datapoints: uint32(len(b.Samples)), time: b.Time.UnixNano()}
}

// TestPayloadVersion: a batch of picket's own samples is written as version 1, byte for
// byte as before there was a version 2; a batch with any relayed sample or sample time as
// version 2. The golden bytes were written by the encoder of 3c8483e.
func TestPayloadVersion(t *testing.T) {
	t.Parallel()
	const golden = "011c046c6f6164056c6f61643103637075013004757365720673797374656d036e657405696661636504657468300872785f62797465730874785f6279746573036f6f6d066367726f7570192f73797374656d2e736c6963652f7373682e73657276696365026c65042b496e66056b696c6c7300026673056d6f756e74037878780a667265655f6279746573046469736b03646576037364610f72656164735f636f6d706c6574656403736462037364630b00000001b81e85eb51b89e3f01020104030400000000000012400505000000000000e83f0306010e080980f882ad16070a06030b02190d1c0f100002110122111101021201261415050316012e1819000316012e1a19020316012e1b1904"
	var e encoder
	if got := hex.EncodeToString(e.appendPayload(nil, testBatch(3, time.Unix(1, 0)))); got != golden {
		t.Errorf("testBatch(3) encodes to\n%s\nwant\n%s", got, golden)
	}
	// The whole of a host's tick, by length and checksum.
	if p := e.appendPayload(nil, hostBatch(0)); len(p) != 22790 || crcOf(p) != 0x359a57ba {
		t.Errorf("hostBatch(0) encodes to %d bytes, crc %#08x; want 22790, 0x359a57ba", len(p), crcOf(p))
	}
	for _, tc := range []struct {
		name string
		s    metric.Sample
		want byte
	}{
		{"collected", metric.Sample{Collector: "c", Field: "f", Value: 1}, payloadVersion1},
		{"relayed", metric.Sample{Collector: "c", Value: 1, Origin: metric.Graphite}, payloadVersion},
		{"own time", metric.Sample{Collector: "c", Field: "f", Value: 1, Time: 1}, payloadVersion},
	} {
		b := testBatch(3, time.Unix(1, 0))
		b.Samples = append(b.Samples, tc.s)
		if p := e.appendPayload(nil, b); p[0] != tc.want {
			t.Errorf("%s: version %d, want %d", tc.name, p[0], tc.want)
		}
	}
}

// Integral values take the varint path only where it is exact and shorter.
func TestIntegral(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    float64
		want bool
	}{
		{0, true}, {1, true}, {-1, true}, {1<<48 - 1, true}, {-1 << 48, true}, {1 << 48, false},
		{math.Copysign(0, -1), false}, {0.5, false}, {1<<48 + 1, false}, {1 << 60, false},
		{math.NaN(), false}, {math.Inf(1), false}, {math.Inf(-1), false},
	}
	for _, tt := range tests {
		i, ok := integral(tt.v)
		if ok != tt.want || ok && float64(i) != tt.v {
			t.Errorf("integral(%v) = %d, %v; want ok=%v", tt.v, i, ok, tt.want)
		}
		if ok && len(binary.AppendVarint(nil, i)) >= 8 {
			t.Errorf("integral(%v): varint not shorter than the float", tt.v)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	t.Parallel()
	var e encoder
	good := e.appendPayload(nil, testBatch(3, time.Unix(1, 0)))
	n := uint32(len(testBatch(3, time.Unix(1, 0)).Samples))
	// One sample c = 0 with the given flags, in a payload of the given version.
	one := func(version, flags byte) []byte { return []byte{version, 1, 1, 'c', 1, flags, 0, 0, 0, 0} }
	tests := []struct {
		name string
		p    []byte
		n    uint32
		want string
	}{
		{"empty", nil, 0, "empty"},
		{"truncated", good[:len(good)-1], n, "truncated"},
		{"trailing byte", append(append([]byte{}, good...), 0), n, "1 bytes after the last sample"},
		{"garbage", []byte("carbon.agents.host.cpu 1 2\n"), 1, "version 99, want 1 or 2"},
		{"version 0", append([]byte{0}, good[1:]...), n, "version 0, want 1 or 2"},
		{"wrong version", append([]byte{9}, good[1:]...), n, "version 9"},
		{"count differs from header", good, n + 1, "samples, the record header says"},
		{"huge string count", []byte{payloadVersion, 0xff, 0xff, 0xff, 0xff, 0x0f}, 0, "4294967295 strings cannot fit in the 0 bytes left"},
		{"string longer than the payload", []byte{payloadVersion, 1, 0x80, 0x80, 0x04, 'x'}, 0, "string 0 of 1: length 65536 exceeds the 1 bytes left"},
		{"string count varint overflows", []byte{payloadVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 0, "string count: varint overflows"},
		{"huge sample count", []byte{payloadVersion, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, 0xffffffff, "4294967295 samples cannot fit in the 0 bytes left"},
		{"sample count truncated", []byte{payloadVersion, 0, 0x80}, 0, "sample count: truncated"},
		{"string index out of range", []byte{payloadVersion, 0, 1, 0, 5, 0, 0, 0}, 1, "sample 0 of 1: string index 5 out of range (0 strings)"},
		{"first sample same as previous", []byte{payloadVersion, 1, 0, 1, flagSame | flagInt, 0, 0}, 1, "sample 0 continues a previous one"},
		{"unknown flag", []byte{payloadVersion, 1, 0, 1, 0x80, 0, 0, 0, 0}, 1, "sample 0: unknown flags 0x80 in a version 2 payload"},
		{"time flag in version 1", append(one(payloadVersion1, flagInt|flagTime), 2), 1, "sample 0: unknown flags 0xa in a version 1 payload"},
		{"origin in version 1", one(payloadVersion1, flagInt|byte(metric.Graphite)<<originShift), 1, "sample 0: unknown flags 0x12 in a version 1 payload"},
		{"unknown origin", one(payloadVersion, flagInt|5<<originShift), 1, "sample 0: unknown origin 5"},
		{"highest origin bits", one(payloadVersion, flagInt|7<<originShift), 1, "sample 0: unknown origin 7"},
		{"time missing", one(payloadVersion, flagInt|flagTime), 1, "sample 0 of 1: truncated"},
		{"time varint overflows", append(one(payloadVersion, flagInt|flagTime), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), 1, "sample 0 of 1: varint overflows"},
		{"huge label count", []byte{payloadVersion, 1, 0, 1, flagInt, 0, 0x7f, 0, 0}, 1, "sample 0: 127 labels cannot fit in the 2 bytes left"},
		{"float cut short", []byte{payloadVersion, 1, 0, 1, 0, 0, 0, 0, 1, 2, 3}, 1, "sample 0 of 1: truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d decoder
			var b metric.Batch
			err := d.decode(tt.p, header{datapoints: tt.n}, &b)
			if !errors.Is(err, errPayload) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want errPayload saying %q", err, tt.want)
			}
			if b.Samples != nil {
				t.Fatal("samples left after an error")
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	t.Parallel()
	h := header{length: 300, datapoints: 100, time: -5, crc: 42}
	good := make([]byte, headerSize)
	h.put(good)
	mod := func(f func(b []byte)) []byte {
		b := append([]byte{}, good...)
		f(b)
		return b
	}
	resum := func(b []byte) { binary.LittleEndian.PutUint32(b[24:], crcOf(b[:24])) }
	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"good", good, true},
		{"empty", nil, false},
		{"truncated", good[:headerSize-1], false},
		{"garbage", []byte(strings.Repeat("x", headerSize)), false},
		{"bit flip", mod(func(b []byte) { b[13] ^= 4 }), false},
		{"bad magic", mod(func(b []byte) { b[0] = 0; resum(b) }), false},
		{"length over the bound", mod(func(b []byte) { binary.LittleEndian.PutUint32(b[4:], maxPayload+1); resum(b) }), false},
		{"more datapoints than bytes allow", mod(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], 101); resum(b) }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseHeader(tt.b)
			if ok != tt.ok || ok && got != h {
				t.Fatalf("parseHeader = %+v, %v; want ok=%v", got, ok, tt.ok)
			}
		})
	}
}

// allocBound is the most a fresh decoder may allocate to decode a payload of n bytes: 40
// bytes per byte and 64 KiB, as the decoder's comment works out.
func allocBound(n int) uint64 { return (40+raceAllocPerByte)*uint64(n) + 64<<10 }

// allocated returns the bytes the process allocated while f ran. Other goroutines count
// too, so callers leave room for them.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// craft builds payloads meant to make the decoder allocate the most for their size: each
// spends about n bytes on what costs the decoder most per byte.
var craft = map[string]func(n int) (p []byte, datapoints uint32){
	// Every distinct string the encoding allows, shortest first.
	"distinct strings": func(n int) ([]byte, uint32) {
		var table []byte
		k := 0
		for ; len(table)+4 < n; k++ {
			switch {
			case k == 0:
				table = append(table, 0)
			case k <= 256:
				table = append(table, 1, byte(k-1))
			default:
				table = append(table, 2, byte(k-257), byte((k-257)>>8))
			}
		}
		p := binary.AppendUvarint([]byte{payloadVersion}, uint64(k))
		return append(append(p, table...), 0), 0
	},
	// The same one-byte string over and over.
	"repeated strings": func(n int) ([]byte, uint32) {
		p := binary.AppendUvarint([]byte{payloadVersion}, uint64(n/2))
		for range n / 2 {
			p = append(p, 1, 'x')
		}
		return append(p, 0), 0
	},
	// One sample with as many labels as fit.
	"labels": func(n int) ([]byte, uint32) {
		p := binary.AppendUvarint([]byte{payloadVersion, 1, 0, 1, flagInt, 0}, uint64(n/2))
		for range n / 2 {
			p = append(p, 0, 0)
		}
		return append(p, 0, 0), 1
	},
	// Samples of a few labels each, so the label array is counted, not read at once.
	"labelled samples": func(n int) ([]byte, uint32) {
		k := n / 11
		p := binary.AppendUvarint([]byte{payloadVersion, 1, 0}, uint64(k))
		for range k {
			p = append(p, flagInt, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0)
		}
		return p, uint32(k)
	},
	// As many samples as fit, each the smallest there is.
	"samples": func(n int) ([]byte, uint32) {
		k := n / 3
		p := binary.AppendUvarint([]byte{payloadVersion, 1, 0}, uint64(k))
		p = append(p, flagInt, 0, 0, 0, 0)
		for range k - 1 {
			p = append(p, flagSame|flagInt, 0, 0)
		}
		return p, uint32(k)
	},
	// A sample count the bytes could hold, but the bytes are something else.
	"samples that are not there": func(n int) ([]byte, uint32) {
		k := n / 3
		p := binary.AppendUvarint([]byte{payloadVersion, 0}, uint64(k))
		return append(p, make([]byte, n)...), uint32(k)
	},
}

// TestDecodeAllocBound holds a fresh decoder to allocBound for payloads crafted to make
// it allocate the most, and for a real tick.
func TestDecodeAllocBound(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 250 MiB in all")
	}
	check := func(t *testing.T, p []byte, datapoints uint32) {
		t.Helper()
		var d decoder
		var b metric.Batch
		var err error
		got := allocated(func() { err = d.decode(p, header{datapoints: datapoints}, &b) })
		if got > allocBound(len(p)) {
			t.Errorf("%d bytes allocated for %d bytes of payload (%.1f per byte), over the bound %d (err %v)", got, len(p), float64(got)/float64(len(p)), allocBound(len(p)), err)
		}
	}
	for name, f := range craft {
		t.Run(name, func(t *testing.T) {
			// Up to 256 KiB: past the interner's bound (16,384 strings, about 50 KiB of
			// them), bigger payloads only cost less per byte.
			for n := 64; n <= 256<<10; n = n*9/8 + 1 {
				p, datapoints := f(n)
				check(t, p, datapoints)
			}
		})
	}
	t.Run("host tick", func(t *testing.T) {
		var e encoder
		b := hostBatch(0)
		check(t, e.appendPayload(nil, b), uint32(len(b.Samples)))
	})
	t.Run("relayed", func(t *testing.T) {
		var e encoder
		b := relayedBatch(time.Unix(1_700_000_000, 0))
		check(t, e.appendPayload(nil, b), uint32(len(b.Samples)))
	})
}

// The crafted payloads decode: they test what a payload that passes every check costs.
func TestCraftedPayloadsDecode(t *testing.T) {
	t.Parallel()
	for name, f := range craft {
		p, datapoints := f(4096)
		var d decoder
		var b metric.Batch
		err := d.decode(p, header{datapoints: datapoints}, &b)
		if name == "samples that are not there" {
			if err == nil {
				t.Errorf("%s: decoded", name)
			}
		} else if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestInterner: equal bytes give the same string, across growth and until the table is
// full, when it starts afresh without invalidating what it handed out.
func TestInterner(t *testing.T) {
	t.Parallel()
	var in interner
	key := func(i int) []byte { return []byte("series-" + strconv.Itoa(i)) }
	first := make([]string, maxInterned)
	for i := range first {
		first[i] = in.get(key(i))
	}
	for i, s := range first {
		got := in.get(key(i))
		if got != s || unsafe.StringData(got) != unsafe.StringData(s) {
			t.Fatalf("string %d not interned: %q", i, got)
		}
	}
	if len(in.strs) != maxInterned || len(in.slots) != 2*maxInterned {
		t.Fatalf("%d strings in %d slots, want %d in %d", len(in.strs), len(in.slots), maxInterned, 2*maxInterned)
	}
	// Full: the next new string starts a fresh table in the same memory.
	slots := unsafe.SliceData(in.slots)
	if s := in.get([]byte("new")); s != "new" || len(in.strs) != 1 || unsafe.SliceData(in.slots) != slots {
		t.Fatalf("after the table filled: %q, %d strings, slots moved %v", s, len(in.strs), unsafe.SliceData(in.slots) != slots)
	}
	if got := in.get(key(7)); got != first[7] {
		t.Fatalf("reinterned %q", got)
	}
	if first[0] != "series-0" {
		t.Fatal("a handed-out string changed")
	}
	// Too long to keep, and empty: returned, not kept.
	long := bytes.Repeat([]byte("x"), maxInternedBytes/16+1)
	if s := in.get(long); s != string(long) || len(in.strs) != 2 {
		t.Fatalf("long string: %d bytes, %d strings kept", len(s), len(in.strs))
	}
	if s := in.get(nil); s != "" || len(in.strs) != 2 {
		t.Fatalf("empty string: %q, %d strings kept", s, len(in.strs))
	}
}

// FuzzDecodeRecord feeds arbitrary bytes to the header parser and the payload decoder:
// neither may panic, a fresh decoder may allocate no more than allocBound of the payload,
// and what decodes re-encodes to something that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	var e encoder
	for i := range 6 {
		b := testBatch(i, time.Unix(int64(i), 0))
		if i == 5 {
			b = relayedBatch(time.Unix(1_700_000_000, 0))
		}
		p := e.appendPayload(make([]byte, headerSize), b)
		header{length: uint32(len(p) - headerSize), datapoints: uint32(len(b.Samples)), time: b.Time.UnixNano(), crc: crcOf(p[headerSize:])}.put(p)
		f.Add(p)
	}
	f.Add([]byte{})
	// The warm-up record is relayed, so that a decoder reusing its samples must reset
	// their origins and times.
	warmup := e.appendPayload(nil, relayedBatch(time.Unix(7, 0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, ok := parseHeader(data)
		var payload []byte
		if len(data) >= headerSize {
			payload = data[headerSize:]
		}
		if !ok {
			// Not a record: take the count the payload declares, so that its samples get
			// decoded rather than refused for a count the fuzzer could hardly guess.
			h.datapoints = declaredSamples(payload)
		}
		var d decoder
		var b metric.Batch
		var err error
		if a := allocated(func() { err = d.decode(payload, h, &b) }); a > allocBound(len(payload)) {
			t.Fatalf("decoder allocated %d bytes for a %d-byte payload", a, len(payload))
		}
		if err != nil {
			if !errors.Is(err, errPayload) {
				t.Fatalf("error %v is not errPayload", err)
			}
			return
		}
		var e encoder
		// The batch's time, as the iterator sets it: the samples' own are relative to it.
		b.Time = time.Unix(0, h.time)
		p := e.appendPayload(nil, &b)
		var d2 decoder
		b2 := metric.Batch{Time: b.Time}
		if err := d2.decode(p, headerOf(&b), &b2); err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		if diff := sameBatch(&b, &b2); diff != "" {
			t.Fatal(diff)
		}
		// A warm decoder, which has seen this table or another one, decodes it the same.
		if err := d.decode(payload, h, &b); err != nil {
			t.Fatalf("second decode: %v", err)
		}
		if diff := sameBatch(&b, &b2); diff != "" {
			t.Fatal("second decode: " + diff)
		}
		var d3 decoder
		b3 := metric.Batch{Time: b.Time}
		if err := d3.decode(warmup, headerOf(relayedBatch(time.Unix(7, 0))), &b3); err != nil {
			t.Fatal(err)
		}
		if err := d3.decode(payload, h, &b3); err != nil {
			t.Fatalf("after another record: %v", err)
		}
		if diff := sameBatch(&b3, &b2); diff != "" {
			t.Fatal("after another record: " + diff)
		}
	})
}

// declaredSamples returns the sample count payload p declares after its string table, 0
// if it declares none.
func declaredSamples(p []byte) uint32 {
	if len(p) == 0 {
		return 0
	}
	r := payloadReader{b: p[1:]}
	for range min(r.uvarint(), uint64(len(p))) {
		n := r.uvarint()
		if n > uint64(len(r.b)) {
			return 0
		}
		r.b = r.b[n:]
	}
	return uint32(r.uvarint())
}

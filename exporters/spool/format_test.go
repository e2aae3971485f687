package spool

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

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
		if x.Collector != y.Collector || x.Field != y.Field || x.Kind != y.Kind ||
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
			if err := d.decode(p, uint32(len(tt.b.Samples)), &got); err != nil {
				t.Fatal(err)
			}
			got.Time = tt.b.Time
			if diff := sameBatch(tt.b, &got); diff != "" {
				t.Fatal(diff)
			}
		})
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
	tests := []struct {
		name string
		p    []byte
		n    uint32
	}{
		{"empty", nil, 0},
		{"truncated", good[:len(good)-1], n},
		{"trailing byte", append(append([]byte{}, good...), 0), n},
		{"garbage", []byte("carbon.agents.host.cpu 1 2\n"), 1},
		{"wrong version", append([]byte{9}, good[1:]...), n},
		{"count differs from header", good, n + 1},
		{"huge string count", []byte{payloadVersion, 0xff, 0xff, 0xff, 0xff, 0x0f}, 0},
		{"huge sample count", []byte{payloadVersion, 0, 0xff, 0xff, 0xff, 0x0f}, 0xffffffff},
		{"string index out of range", []byte{payloadVersion, 0, 1, 0, 5, 0, 0, 0}, 1},
		{"first sample same as previous", []byte{payloadVersion, 1, 0, 1, flagSame | flagInt, 0, 0}, 1},
		{"unknown flag", []byte{payloadVersion, 1, 0, 1, 0x80, 0, 0, 0, 0}, 1},
		{"huge label count", []byte{payloadVersion, 1, 0, 1, flagInt, 0, 0x7f, 0, 0}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d decoder
			var b metric.Batch
			if err := d.decode(tt.p, tt.n, &b); err == nil {
				t.Fatal("decoded")
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

// footprint is what a decoder holds, in bytes.
func (d *decoder) footprint() int {
	return cap(d.samples)*72 + cap(d.ranges)*8 + cap(d.labels)*40 + cap(d.strs)*16 + d.internedBytes
}

// FuzzDecodeRecord feeds arbitrary bytes to the header parser and the payload decoder:
// neither may panic, the decoder may hold no more than a fixed multiple of the payload,
// and what decodes re-encodes to something that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	var e encoder
	for i := range 5 {
		b := testBatch(i, time.Unix(int64(i), 0))
		p := e.appendPayload(make([]byte, headerSize), b)
		header{length: uint32(len(p) - headerSize), datapoints: uint32(len(b.Samples)), crc: crcOf(p[headerSize:])}.put(p)
		f.Add(p)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, ok := parseHeader(data)
		var payload []byte
		if len(data) >= headerSize {
			payload = data[headerSize:]
		}
		if !ok {
			h.datapoints = uint32(len(payload) / minSampleBytes)
		}
		var d decoder
		var b metric.Batch
		err := d.decode(payload, h.datapoints, &b)
		if fp := d.footprint(); fp > 128*len(payload)+4096 {
			t.Fatalf("decoder holds %d bytes for a %d-byte payload", fp, len(payload))
		}
		if err != nil {
			return
		}
		var e encoder
		p := e.appendPayload(nil, &b)
		var d2 decoder
		var b2 metric.Batch
		if err := d2.decode(p, uint32(len(b.Samples)), &b2); err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		if diff := sameBatch(&b, &b2); diff != "" {
			t.Fatal(diff)
		}
	})
}

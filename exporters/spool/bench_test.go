package spool

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
)

// hostBatch returns a 2,000-sample tick shaped like a real host's: per-CPU times in
// fractional seconds, byte and packet counters, gauges in bytes, per-cgroup histograms
// with Named labels. tick moves the values on, as successive ticks do.
func hostBatch(tick int) *metric.Batch {
	b := &metric.Batch{Time: time.Unix(1_700_000_000+int64(tick)*10, 0), Samples: make([]metric.Sample, 0, 2000)}
	add := func(collector string, labels []metric.Label, k metric.Kind, fields []string, v func(j int) float64) {
		for j, f := range fields {
			b.Samples = append(b.Samples, metric.Sample{Collector: collector, Labels: labels, Field: f, Value: v(j), Kind: k})
		}
	}
	names := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = prefix + strconv.Itoa(i)
		}
		return out
	}
	t := float64(tick)
	modes := []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"}
	for cpu := range 16 {
		l := []metric.Label{{Key: "cpu", Value: strconv.Itoa(cpu)}}
		add("cpu", l, metric.Counter, modes, func(j int) float64 { return 12345.67 + t*1.37 + float64(cpu*j)/100 })
	}
	add("cpu", []metric.Label{{Key: "cpu", Value: "total"}}, metric.Counter, modes, func(j int) float64 { return 197530.72 + t*21.9 + float64(j) })
	add("memory", nil, metric.Gauge, names("field_", 60), func(j int) float64 { return float64(16<<30 - j*4096 - tick*8192) })
	add("vmstat", nil, metric.Counter, names("counter_", 180), func(j int) float64 { return float64(j*1_000_003 + tick*17) })
	for i := range 16 {
		l := []metric.Label{{Key: "iface", Value: "veth" + strconv.Itoa(i)}}
		add("net", l, metric.Counter, names("rx_tx_", 16), func(j int) float64 { return float64(i*1<<33 + j*1<<20 + tick*150_000) })
	}
	for i := range 24 {
		l := []metric.Label{{Key: "dev", Value: "nvme" + strconv.Itoa(i) + "n1"}}
		add("disk", l, metric.Counter, names("stat_", 17), func(j int) float64 {
			if j == 16 {
				return 1234.567 + t*0.01 // io_time_seconds
			}
			return float64(j*1<<30 + tick*4096)
		})
	}
	for i := range 40 {
		l := []metric.Label{{Key: "mount", Value: "/var/lib/kubelet/pods/" + strconv.Itoa(i*7919) + "/volumes"}}
		add("fs", l, metric.Gauge, []string{"size_bytes", "free_bytes", "avail_bytes", "files", "files_free"}, func(j int) float64 { return float64(100<<30 - j*1<<28 - tick*4096) })
	}
	add("pressure", nil, metric.Counter, names("stall_", 6), func(j int) float64 { return 812.345678 + t*0.123 + float64(j) })
	add("stat", nil, metric.Counter, names("stat_", 6), func(j int) float64 { return float64(1_700_000_000 + j + tick*1000) })
	buckets := names("le_", 26)
	buckets = append(buckets, "count", "sum_us")
	for i := range 20 {
		l := []metric.Label{{Key: "cgroup", Value: "/kubepods.slice/pod" + strconv.Itoa(i*104729), Named: true}}
		add("runqlat", l, metric.Counter, buckets, func(j int) float64 { return float64(j*j*1000 + tick*j) })
	}
	add("netstat", nil, metric.Counter, names("tcp_ext_", 2000-len(b.Samples)), func(j int) float64 { return float64(j * tick) })
	return b
}

func TestHostBatch(t *testing.T) {
	t.Parallel()
	if n := len(hostBatch(0).Samples); n != 2000 {
		t.Fatalf("%d samples, want 2000", n)
	}
}

func BenchmarkAppend(b *testing.B) {
	s := openSpool(b, Options{Dir: b.TempDir(), MaxBytes: 4 << 30})
	batches := [2]*metric.Batch{hostBatch(0), hostBatch(1)}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := s.Append(batches[n%2]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(s.Stats().Bytes)/float64(n), "disk-bytes/tick")
}

// BenchmarkEncode is Append's CPU part: the payload without the write and fdatasync.
func BenchmarkEncode(b *testing.B) {
	var e encoder
	batch := hostBatch(0)
	buf := e.appendPayload(nil, batch)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.appendPayload(buf[:0], batch)
	}
	b.ReportMetric(float64(len(buf)+headerSize), "disk-bytes/tick")
}

// BenchmarkDecode is Next's CPU part: payload to batch, without the read and the CRC.
// "steady" is a reader that has seen the host's strings, decoding successive ticks;
// "fresh" is a new decoder each time, so B/op is what one record makes a decoder allocate.
func BenchmarkDecode(b *testing.B) {
	var e encoder
	var payloads [2][]byte
	for i := range payloads {
		payloads[i] = e.appendPayload(nil, hostBatch(i))
	}
	const n = 2000
	b.Run("steady", func(b *testing.B) {
		var d decoder
		var batch metric.Batch
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := d.decode(payloads[i%2], header{datapoints: n}, &batch); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("fresh", func(b *testing.B) {
		var batch metric.Batch
		b.ReportAllocs()
		for b.Loop() {
			var d decoder
			if err := d.decode(payloads[0], header{datapoints: n}, &batch); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReplay reads back a backlog of spooled datapoints. heap-peak-bytes is the most
// live heap seen while reading: it must not grow with the backlog.
func BenchmarkReplay(b *testing.B) {
	for _, datapoints := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("datapoints=%d", datapoints), func(b *testing.B) {
			s := openSpool(b, Options{Dir: b.TempDir(), MaxBytes: 4 << 30})
			c := mustCursor(b, s, "graphite")
			start := c.Position()
			for i := range datapoints / 2000 {
				if err := s.Append(hostBatch(i)); err != nil {
					b.Fatal(err)
				}
			}
			sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
			heap := func() uint64 {
				metrics.Read(sample)
				return sample[0].Value.Uint64()
			}
			runtime.GC()
			var peak uint64
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				it := c.Iterator(start)
				read := 0
				for read < datapoints {
					r, err := it.Next(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					read += len(r.Batch.Samples)
					peak = max(peak, heap())
				}
				it.Close()
			}
			b.ReportMetric(float64(datapoints)*float64(b.N)/b.Elapsed().Seconds(), "datapoints/s")
			b.ReportMetric(float64(peak), "heap-peak-bytes")
		})
	}
}

// Reading a record allocates nothing once the iterator has seen the host's strings, so
// memory does not grow with the backlog read.
func TestReplayAllocs(t *testing.T) {
	s := openSpool(t, Options{Dir: t.TempDir()})
	c := mustCursor(t, s, "graphite")
	it := c.Iterator(c.Position())
	defer it.Close()
	for i := range 40 {
		if err := s.Append(hostBatch(i)); err != nil {
			t.Fatal(err)
		}
	}
	next := func() {
		if _, err := it.next(context.Background(), false); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		next()
	}
	if a := testing.AllocsPerRun(30, next); a != 0 {
		t.Fatalf("%v allocations per record read", a)
	}
}

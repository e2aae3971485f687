package graphite

import (
	"testing"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/agent/metric/metrictest"
)

func BenchmarkAppendPlain(b *testing.B) {
	metrictest.Benchmark(b, func(dst []byte, s *metric.Sample) []byte {
		dst, _ = AppendPlain(dst, "0123abcd.hosts", "web1", s, 1700000000)
		return dst
	})
}

func BenchmarkAppendTagged(b *testing.B) {
	metrictest.Benchmark(b, func(dst []byte, s *metric.Sample) []byte {
		dst, _ = AppendTagged(dst, "web1", s, 1700000000)
		return dst
	})
}

// BenchmarkAppendRelayed is BenchmarkAppendPlain's batch as relayed lines: Graphite lines
// written back verbatim, and Influx fields turned into paths or tagged names.
func BenchmarkAppendRelayed(b *testing.B) {
	for _, bc := range []struct {
		name   string
		origin metric.Origin
		tagged bool
	}{
		{"graphite", metric.Graphite, false},
		{"influx", metric.InfluxFloat, false},
		{"influx-tagged", metric.InfluxFloat, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			samples := relayedSamples(bc.origin)
			buf := make([]byte, 0, 128*len(samples))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				buf = buf[:0]
				for i := range samples {
					buf, _ = AppendRelayed(buf, "0123abcd", bc.tagged, &samples[i], 1700000000)
				}
				n += len(samples)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "datapoints/s")
		})
	}
}

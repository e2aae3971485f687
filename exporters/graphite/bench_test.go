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

package influx

import (
	"testing"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/agent/metric/metrictest"
)

func BenchmarkInflux(b *testing.B) {
	var e Encoder
	metrictest.Benchmark(b, func(dst []byte, s *metric.Sample) []byte {
		dst, _ = e.Append(dst, "web1", s, tick)
		return dst
	})
}

// BenchmarkInfluxChecked encodes the batch of BenchmarkInflux through lineprotocol alone,
// as Append does for samples with names that need escaping.
func BenchmarkInfluxChecked(b *testing.B) {
	var e Encoder
	metrictest.Benchmark(b, func(dst []byte, s *metric.Sample) []byte {
		e.order = sortLabels(e.order[:0], s.Labels)
		fv, _ := lineprotocol.FloatValue(s.Value)
		dst, _ = e.appendChecked(dst, "web1", s, fv, tick)
		return dst
	})
}

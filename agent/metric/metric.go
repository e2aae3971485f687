// Package metric holds the sample type that collectors produce and exporters encode.
// It is a leaf: it imports nothing of picket, so every other package can import it.
package metric

import (
	"math"
	"slices"
	"strconv"
	"time"
)

// Kind says how a sample's value behaves over time.
type Kind uint8

const (
	// Gauge is a value that goes up and down (free memory, load average).
	Gauge Kind = iota
	// Counter is the kernel's own monotonic count, in base units. picket never turns it into
	// a rate: rates are derived at query time.
	Counter
)

// String returns "gauge" or "counter".
func (k Kind) String() string {
	if k == Counter {
		return "counter"
	}
	return "gauge"
}

// Label names one instance of a collector's source: a CPU, an interface, a mount.
type Label struct {
	Key   string
	Value string
	// Named labels are written into a Graphite path as two nodes, the key then the value
	// (oom.cgroup.<cgroup>.kills); other labels as their value alone (net.<iface>.rx_bytes).
	Named bool
}

// Origin says where a sample came from: picket's own collectors, or a line an application
// sent to the relay. A relayed sample keeps the name, tags and time its application gave,
// and Origin says how they map to each wire format.
type Origin uint8

const (
	// Collected is picket's own sample, named <collector>.<labels…>.<field>.
	Collected Origin = iota
	// Graphite is a line in Graphite's plaintext form. Collector holds its path, Labels its
	// tags when it came in the tagged form, and Field is empty.
	Graphite
	// InfluxFloat, InfluxInt and InfluxUint are one field of a line of Influx line protocol:
	// Collector holds the measurement, Labels the tags, Field the field key. The type is the
	// field's (a float, an integer with the 'i' suffix, an unsigned one with 'u'), kept so
	// that the value goes back to InfluxDB as the type it came as. Value holds integers
	// exactly: the relay refuses those beyond ±2^53.
	InfluxFloat
	InfluxInt
	InfluxUint
)

// Relayed reports whether the sample came through the relay.
func (o Origin) Relayed() bool { return o != Collected }

// Sample is one datapoint: <collector>.<labels…>.<field> = value.
type Sample struct {
	Collector string
	Labels    []Label
	Field     string
	Value     float64
	Kind      Kind
	Origin    Origin
	// Time is the sample's own time in Unix nanoseconds, or 0 for the batch's Time. Relayed
	// samples carry the time their line gave, or the time it arrived.
	Time int64
}

// UnixNano returns the sample's time in Unix nanoseconds: its own, or else batch's.
func (s *Sample) UnixNano(batch time.Time) int64 {
	if s.Time != 0 {
		return s.Time
	}
	return batch.UnixNano()
}

// Finite reports whether the value can be sent at all: NaN and ±Inf cannot.
func (s *Sample) Finite() bool {
	return !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0)
}

// maxExactInt is 2^53: every integer of smaller magnitude is exactly representable as a
// float64, so printing it as an integer loses nothing.
const maxExactInt = 1 << 53

// AppendValue appends v as every picket output writes a value: an integer where v is one
// below 2^53 (negative zero as "0"), otherwise strconv's shortest 'g' form that parses
// back to the same float64 ("0.25", "1.5e-07", "1e+21", and "NaN", "+Inf", "-Inf", which
// the wire encoders refuse before they get here). Carbon's Python float(), the strtod of
// C relays, go-carbon's strconv.ParseFloat and InfluxDB's line protocol (where a number
// without suffix is a float) all read it back exactly; strconv.AppendInt is also about
// three times as fast as the shortest float formatting.
func AppendValue(dst []byte, v float64) []byte {
	if v > -maxExactInt && v < maxExactInt && v == math.Trunc(v) {
		return strconv.AppendInt(dst, int64(v), 10)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

// Batch is everything collected in one tick. Every sample carries the tick's timestamp.
type Batch struct {
	Time    time.Time
	Samples []Sample
}

// Sink receives the samples of one collector run. It is not safe for concurrent use: a
// collector that reads sources in parallel gives each goroutine its own Sink and merges.
type Sink struct {
	collector string
	samples   []Sample
}

// NewSink returns an empty Sink whose samples belong to collector.
func NewSink(collector string) *Sink {
	return &Sink{collector: collector}
}

// Grow makes room for n more samples, so a collector whose size is known from its last run
// fills its Sink without reallocating.
func (s *Sink) Grow(n int) {
	s.samples = slices.Grow(s.samples, n)
}

// Counter adds a counter sample. labels is kept, not copied: a collector may share one
// labels slice between all fields of an instance, but must not modify it afterwards.
func (s *Sink) Counter(field string, v float64, labels ...Label) {
	s.samples = append(s.samples, Sample{Collector: s.collector, Labels: labels, Field: field, Value: v, Kind: Counter})
}

// Gauge adds a gauge sample; labels as for Counter.
func (s *Sink) Gauge(field string, v float64, labels ...Label) {
	s.samples = append(s.samples, Sample{Collector: s.collector, Labels: labels, Field: field, Value: v, Kind: Gauge})
}

// Samples returns what was added so far.
func (s *Sink) Samples() []Sample {
	return s.samples
}

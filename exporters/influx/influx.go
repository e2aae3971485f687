// Package influx encodes samples as InfluxDB line protocol, one point per sample:
// measurement <collector>, tags host and the sample's labels, one float field <field>, and
// the tick's timestamp (in nanoseconds unless told otherwise), and sends the spool to
// InfluxDB over HTTP (see Exporter). InfluxDB and VictoriaMetrics both accept it. A sample
// that an application sent to picket's relay goes out as the application named it, with
// no host tag, its field typed as it came (float, integer or unsigned) and at its own time.
package influx

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/picket-agent/picket/agent/metric"
)

// ErrNonFinite is returned, unwrapped and without allocating, for a NaN or infinite
// value, which line protocol cannot carry. The caller counts the datapoint as dropped.
var ErrNonFinite = errors.New("influx: value is NaN or infinite")

// Encoder appends samples to a caller-owned buffer. Its zero value is ready to use. It keeps
// scratch space between calls so that steady-state encoding allocates nothing, and so it is
// not safe for concurrent use: give each goroutine its own.
//
// A sample whose names need no escaping, which is nearly every sample, is written
// directly; any other goes through lineprotocol.Encoder, which escapes it or refuses it.
// The tests check that both ways write the same point.
type Encoder struct {
	// Precision is the unit of the timestamps written; the zero value is nanoseconds.
	// Coarser ones truncate, as lineprotocol does, and the receiver must be told the
	// same precision (the precision parameter of /write).
	Precision lineprotocol.Precision

	lp lineprotocol.Encoder
	// order holds the indexes of the sample's labels sorted by key: line protocol wants
	// tags in key order, and sorting indexes leaves the sample, which collectors share,
	// untouched.
	order []int
	// stamp is the text of the timestamp last written, for the time in nanoseconds
	// stampNanos at precision stampPrec: every sample of a batch carries the same one, so
	// its digits are formatted once per batch rather than once per sample.
	stamp      []byte
	stampNanos int64
	stampPrec  lineprotocol.Precision
}

// Append appends s to dst as one line of line protocol, ending in a newline:
//
//	<collector>,host=<host>,<key>=<value>… <field>=<value> <unix-time in Precision>
//
// Tags are sorted by key, as line protocol requires; the Named flag of a label plays no
// part. The value of picket's own sample is always a float in line protocol (no 'i'
// suffix); integral values print without a decimal point, negative zero as 0. ts is the
// batch's time: a sample with a Time of its own is written at that instead.
//
// A relayed sample (s.Origin.Relayed) is written as its application named it, without
// host, so that it lands where the application's own writes to InfluxDB would:
//
//	<collector>,<key>=<value>… <field>=<value> <unix-time in Precision>
//
// Its labels are the line's tags, and may include one keyed "host". A Graphite line's
// field is "value". An Influx field keeps its type: InfluxInt is written as an integer
// ("42i"), InfluxUint as an unsigned one ("42u"), InfluxFloat as a float.
//
// A NaN or infinite value returns dst unchanged and ErrNonFinite. A sample that line
// protocol cannot represent (an empty name, key or tag value, invalid UTF-8, a control
// character, a trailing backslash, two tags with the same key, a label keyed "host" on a
// sample of picket's own, a measurement starting with '#', a zero or out-of-range
// timestamp, an integer field whose value is not an integer of its type) returns dst
// unchanged and an error naming the sample. dst never receives part of a line.
func (e *Encoder) Append(dst []byte, host string, s *metric.Sample, ts time.Time) ([]byte, error) {
	if !s.Finite() {
		return dst, ErrNonFinite
	}
	if s.Time != 0 {
		ts = time.Unix(0, s.Time)
	}
	if ts.IsZero() {
		// lineprotocol would leave the timestamp out and let the server stamp the point
		// on arrival; a replayed point would then land twice at different times.
		return dst, sampleError(s, errors.New("zero timestamp"))
	}
	if strings.HasPrefix(s.Collector, "#") {
		// lineprotocol encodes it, but a line starting with '#' is read back as a comment.
		return dst, sampleError(s, fmt.Errorf("invalid measurement %q: starts with '#'", s.Collector))
	}
	fv, err := sampleValue(s)
	if err != nil {
		return dst, sampleError(s, err)
	}
	e.order = sortLabels(e.order[:0], s.Labels)
	if plainSample(host, s, e.order, ts) {
		return e.appendPlain(dst, host, s, fv, ts), nil
	}
	return e.appendChecked(dst, host, s, fv, ts)
}

// sampleValue returns s's finite value as the type its line protocol field has: a float
// (negative zero as 0, printed "0" as the Graphite encoders do), or for a relayed integer
// field the integer, which must be one of its type.
func sampleValue(s *metric.Sample) (lineprotocol.Value, error) {
	v := s.Value
	switch s.Origin {
	case metric.InfluxInt:
		if v != math.Trunc(v) || v < -(1<<63) || v >= 1<<63 {
			return lineprotocol.Value{}, fmt.Errorf("integer field value %v is not a 64-bit integer", v)
		}
		return lineprotocol.IntValue(int64(v)), nil
	case metric.InfluxUint:
		if v != math.Trunc(v) || v < 0 || v >= 1<<64 {
			return lineprotocol.Value{}, fmt.Errorf("unsigned field value %v is not a 64-bit unsigned integer", v)
		}
		return lineprotocol.UintValue(uint64(v)), nil
	}
	if v == 0 {
		v = 0 // negative zero
	}
	fv, _ := lineprotocol.FloatValue(v) // finite: Append checked
	return fv, nil
}

// sampleFieldKey returns the key of s's field: a Graphite line has none, and its value is
// "value", as Telegraf and InfluxDB's own Graphite listener name it.
func sampleFieldKey(s *metric.Sample) string {
	if s.Origin == metric.Graphite {
		return "value"
	}
	return s.Field
}

// appendChecked is Append through lineprotocol.Encoder, which escapes what needs it and
// refuses what line protocol cannot carry. e.order must hold the sorted label indexes.
func (e *Encoder) appendChecked(dst []byte, host string, s *metric.Sample, fv lineprotocol.Value, ts time.Time) ([]byte, error) {
	// SetBuffer resets the encoder's state from any previous call. On an error
	// lineprotocol truncates its buffer back to where the line started; returning dst
	// itself, not that buffer, keeps dst unchanged even if the encoder had to grow it.
	e.lp.SetBuffer(dst)
	e.lp.SetPrecision(e.Precision)
	e.lp.StartLine(s.Collector)
	hostDone := s.Origin.Relayed() // a relayed sample has no host tag
	for _, i := range e.order {
		l := &s.Labels[i]
		if !hostDone && l.Key >= "host" {
			e.lp.AddTag("host", host)
			hostDone = true
		}
		e.lp.AddTag(l.Key, l.Value)
	}
	if !hostDone {
		e.lp.AddTag("host", host)
	}
	e.lp.AddField(sampleFieldKey(s), fv)
	e.lp.EndLine(ts)
	out, err := e.lp.Bytes(), e.lp.Err()
	e.lp.SetBuffer(nil) // let go of the caller's buffer
	if err != nil {
		return dst, sampleError(s, err)
	}
	return out, nil
}

// plainByte marks the bytes that need neither escaping nor checking anywhere in a line:
// printable ASCII other than space, comma, equals sign and backslash.
var plainByte = func() (t [256]uint8) {
	for c := 0x21; c < 0x7f; c++ {
		if c != ',' && c != '=' && c != '\\' {
			t[c] = 1
		}
	}
	return t
}()

// isPlain reports whether s is not empty and made of plain bytes only. The loop has no
// early exit: names are short, and a loop without one runs faster over them.
func isPlain(s string) bool {
	ok := uint8(1)
	for i := 0; i < len(s); i++ {
		ok &= plainByte[s[i]]
	}
	return ok == 1 && s != ""
}

// The range of time that line protocol's nanosecond timestamps can hold.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// plainSample reports whether appendPlain can write s: every name plain, the tag keys
// strictly increasing in the given order, the time in range. Then lineprotocol would
// accept the sample and escape nothing, and writing the line directly is three times as
// fast; lineprotocol, which counts every escapable character of every string, handles
// the rest. The Graphite-style names collectors produce (eth0.100, /var/lib/docker) are
// plain.
func plainSample(host string, s *metric.Sample, order []int, ts time.Time) bool {
	relayed := s.Origin.Relayed()
	if !isPlain(s.Collector) || !isPlain(sampleFieldKey(s)) || !relayed && !isPlain(host) || ts.Before(minTime) || ts.After(maxTime) {
		return false
	}
	prev, hostDone := "", relayed
	for _, i := range order {
		l := &s.Labels[i]
		if !hostDone && l.Key >= "host" {
			prev, hostDone = "host", true
		}
		if l.Key <= prev || !isPlain(l.Key) || !isPlain(l.Value) {
			return false
		}
		prev = l.Key
	}
	return true
}

// appendPlain writes what lineprotocol would for a sample that plainSample accepts,
// except that a float value is spelled by metric.AppendValue, as in the Graphite encoders:
// an integral value as an integer ("16777216000", not lineprotocol's "1.6777216e+10"),
// which reads back as the same float and is faster to format.
func (e *Encoder) appendPlain(dst []byte, host string, s *metric.Sample, fv lineprotocol.Value, ts time.Time) []byte {
	dst = append(dst, s.Collector...)
	hostDone := s.Origin.Relayed()
	for _, i := range e.order {
		l := &s.Labels[i]
		if !hostDone && l.Key >= "host" {
			dst = append(dst, ",host="...)
			dst = append(dst, host...)
			hostDone = true
		}
		dst = append(dst, ',')
		dst = append(dst, l.Key...)
		dst = append(dst, '=')
		dst = append(dst, l.Value...)
	}
	if !hostDone {
		dst = append(dst, ",host="...)
		dst = append(dst, host...)
	}
	dst = append(dst, ' ')
	dst = append(dst, sampleFieldKey(s)...)
	dst = append(dst, '=')
	switch fv.Kind() {
	case lineprotocol.Int:
		dst = strconv.AppendInt(dst, fv.IntV(), 10)
		dst = append(dst, 'i')
	case lineprotocol.Uint:
		dst = strconv.AppendUint(dst, fv.UintV(), 10)
		dst = append(dst, 'u')
	default:
		dst = metric.AppendValue(dst, fv.FloatV())
	}
	dst = append(dst, ' ')
	if n := ts.UnixNano(); n != e.stampNanos || e.Precision != e.stampPrec || len(e.stamp) == 0 {
		// As lineprotocol does it: truncated towards zero.
		e.stamp = strconv.AppendInt(e.stamp[:0], n/int64(e.Precision.Duration()), 10)
		e.stampNanos, e.stampPrec = n, e.Precision
	}
	dst = append(dst, e.stamp...)
	return append(dst, '\n')
}

// sortLabels appends the indexes of labels to order, sorted by key. Insertion sort: a
// sample has a handful of labels at most, and most have none or one.
func sortLabels(order []int, labels []metric.Label) []int {
	for i := range labels {
		order = append(order, i)
		for j := len(order) - 1; j > 0 && labels[order[j]].Key < labels[order[j-1]].Key; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	return order
}

// sampleError wraps err with the sample's collector, labels and field, quoted, since they
// may hold the very bytes that made it fail.
func sampleError(s *metric.Sample, err error) error {
	var b strings.Builder
	b.WriteString(strconv.Quote(s.Collector))
	for _, l := range s.Labels {
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(l.Key))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
	}
	b.WriteByte(' ')
	b.WriteString(strconv.Quote(s.Field))
	return fmt.Errorf("influx: encoding sample %s: %w", b.String(), err)
}

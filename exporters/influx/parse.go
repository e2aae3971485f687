package influx

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/picket-agent/picket/agent/metric"
)

// Parser reads Influx line protocol as the relay receives it: the body of a write request,
// one point per line, each field of a point a sample.
//
// The relay takes hundreds of thousands of points a second from untrusted local clients,
// mostly the same few thousand series again and again. So a Parser remembers the names it
// has seen (measurements, tag keys and values, field keys) and the tag sets, and a line of
// a known series allocates nothing. That memory is bounded whatever a client sends: past
// maxCached entries or maxCachedBytes bytes, a cache forgets everything and starts again.
//
// The zero Parser is ready to use. A Parser is not safe for concurrent use.
type Parser struct {
	names   cache[string]
	tagSets cache[[]metric.Label]

	// data is the body being parsed, start the offset in it of the first of the current
	// point's tokens found there (-1 until one is).
	data  []byte
	start int

	// The point being parsed. The decoder's byte slices last only until its next call, and
	// names are interned only once the whole point is good, so that a refused one leaves
	// nothing in the caches.
	meas      []byte
	tags      []byte // key \x00 value \x00 …: a key or value cannot hold a control character
	tagKeys   [][]byte
	fieldKeys []byte
	fields    []parsedField
}

// parsedField is one field of the line being parsed; its key is fieldKeys[start:end].
type parsedField struct {
	start, end int
	value      float64
	origin     metric.Origin
}

// maxExact is 2^53: integers of greater magnitude have no exact float64, so the relay,
// which carries every value as a float64, refuses them.
const maxExact = 1 << 53

// Parse appends to dst one sample per field of each good line of data, and returns dst.
// For each line it refuses it calls reject(line, err), line counted from 1 within data,
// and appends nothing of that line.
//
// A sample is a gauge: Collector is the measurement, Labels the tags in the line's order,
// Field the field key, Origin InfluxFloat, InfluxInt or InfluxUint by the field's type,
// Value the field's value, and Time the line's timestamp in nanoseconds (read at
// precision), or now when the line has none. Collector, Labels and Field may be shared with
// other samples: they must not be modified.
//
// Blank lines and comments (#) are skipped. A line is refused whole when it does not
// parse, when a field is a string or a boolean, an integer is beyond ±2^53 (which a
// float64 does not hold exactly) or a float is not finite, when a tag key repeats, or when
// its timestamp is not after 1970 or not within what Unix nanoseconds hold (2262). An
// unknown precision refuses every line with a timestamp. The error names the measurement
// and the field or tag at fault, quoted and cut to maxQuote bytes; the line number is
// reject's.
//
// The line of a point that spans several lines (a string field with a newline in it) is
// the line it starts on. Line protocol's decoder tells lines only in its errors, so Parse
// finds a point's line by where the decoder's tokens lie in data. In the one case where
// none does (every name of the point escaped, and its first field a string with escapes),
// the line is the decoder's error's, or else the first after the previous point's that is
// not blank or a comment.
func (p *Parser) Parse(dst []metric.Sample, data []byte, precision lineprotocol.Precision, now int64, reject func(line int, err error)) []metric.Sample {
	dec := lineprotocol.NewDecoderWithBytes(data)
	p.data = data
	lines := lineCursor{data: data, line: 1}
	prev := 0    // the line of the previous point
	refused := 0 // the line last refused
	for dec.Next() {
		var err error
		dst, err = p.point(dst, dec, precision, now)
		switch decoded := decoderLine(err); {
		case p.start >= 0:
			prev = lines.lineAt(p.start)
		case decoded > 0:
			prev = decoded
			if len(p.meas) == 0 && lines.skippable(prev) {
				continue // a comment the decoder refused for a control character in it, or a line of blanks it does not skip
			}
		default:
			prev = lines.nextContent(prev)
		}
		// The decoder takes a lone '\r' after a point's fields for the end of the point,
		// and reads on from there: a line refused once is not refused again.
		if err != nil && prev != refused {
			reject(prev, err)
			refused = prev
		}
	}
	p.data = nil // the caller's, to reuse
	return dst
}

// point parses the point dec is at and appends its samples to dst; when it refuses it, it
// returns dst as it was.
func (p *Parser) point(dst []metric.Sample, dec *lineprotocol.Decoder, precision lineprotocol.Precision, now int64) ([]metric.Sample, error) {
	p.start = -1
	p.meas, p.tags, p.tagKeys, p.fieldKeys, p.fields = p.meas[:0], p.tags[:0], p.tagKeys[:0], p.fieldKeys[:0], p.fields[:0]
	m, err := dec.Measurement()
	if err != nil {
		return dst, syntaxError(nil, err)
	}
	p.found(m)
	p.meas = append(p.meas, m...)
	for {
		k, v, err := dec.NextTag()
		if err != nil {
			return dst, syntaxError(p.meas, err)
		}
		if k == nil {
			break
		}
		p.found(k)
		p.found(v)
		p.tags = append(append(append(append(p.tags, k...), 0), v...), 0)
	}
	for {
		k, kind, v, err := dec.NextFieldBytes()
		if err != nil {
			return dst, syntaxError(p.meas, err)
		}
		if k == nil {
			break
		}
		p.found(k)
		p.found(v)
		f := parsedField{start: len(p.fieldKeys)}
		p.fieldKeys = append(p.fieldKeys, k...)
		f.end = len(p.fieldKeys)
		if f.value, f.origin, err = numberValue(kind, v); err != nil {
			return dst, fmt.Errorf("measurement %s: field %s %w", quote(p.meas), quote(k), err)
		}
		p.fields = append(p.fields, f)
	}
	tb, err := dec.TimeBytes()
	if err != nil {
		return dst, syntaxError(p.meas, err)
	}
	p.found(tb)
	if len(p.fields) == 0 {
		return dst, fmt.Errorf("measurement %s has no field", quote(p.meas))
	}
	t := now
	if tb != nil {
		if t, err = timestamp(tb, precision); err != nil {
			return dst, fmt.Errorf("measurement %s: %w", quote(p.meas), err)
		}
	}
	labels, err := p.labels()
	if err != nil {
		return dst, fmt.Errorf("measurement %s: %w", quote(p.meas), err)
	}
	meas := p.intern(p.meas)
	for _, f := range p.fields {
		dst = append(dst, metric.Sample{
			Collector: meas, Labels: labels, Field: p.intern(p.fieldKeys[f.start:f.end]),
			Value: f.value, Kind: metric.Gauge, Origin: f.origin, Time: t,
		})
	}
	return dst, nil
}

// found notes where token b of the point lies in data, if it does and it is the first.
func (p *Parser) found(b []byte) {
	if p.start < 0 {
		p.start = offsetIn(p.data, b)
	}
}

// numberValue reads a field's value of the given kind. Its error follows "field <key>".
func numberValue(kind lineprotocol.ValueKind, b []byte) (float64, metric.Origin, error) {
	v, err := lineprotocol.NewValueFromBytes(kind, b)
	switch kind {
	case lineprotocol.Float:
		if err != nil {
			return 0, 0, fmt.Errorf("value %s is not a finite number", quote(b))
		}
		return v.FloatV(), metric.InfluxFloat, nil
	case lineprotocol.Int:
		if err == nil && v.IntV() >= -maxExact && v.IntV() <= maxExact {
			return float64(v.IntV()), metric.InfluxInt, nil
		}
	case lineprotocol.Uint:
		if err == nil && v.UintV() <= maxExact {
			return float64(v.UintV()), metric.InfluxUint, nil
		}
	case lineprotocol.String:
		return 0, 0, errors.New("is a string: the relay carries numbers only")
	case lineprotocol.Bool:
		if err != nil {
			return 0, 0, fmt.Errorf("value %s is not a boolean", quote(b))
		}
		return 0, 0, errors.New("is a boolean: the relay carries numbers only")
	default:
		return 0, 0, fmt.Errorf("value %s has no type", quote(b))
	}
	// An integer, signed or not.
	if err != nil && !errors.Is(err, lineprotocol.ErrValueOutOfRange) {
		return 0, 0, fmt.Errorf("value %s is not an integer", quote(b))
	}
	return 0, 0, fmt.Errorf("integer %s is beyond ±2^53, which a float64 does not hold exactly", quote(b))
}

// timestamp reads a line's timestamp, in units of precision, as Unix nanoseconds. Time 0 is
// no time of its own to a Sample, and nothing before 1970 is a metric's; the last time
// Unix nanoseconds hold is in 2262.
func timestamp(b []byte, precision lineprotocol.Precision) (int64, error) {
	var scale int64
	switch precision {
	case lineprotocol.Nanosecond:
		scale = 1
	case lineprotocol.Microsecond:
		scale = 1e3
	case lineprotocol.Millisecond:
		scale = 1e6
	case lineprotocol.Second:
		scale = 1e9
	default:
		return 0, fmt.Errorf("precision %d is not one of line protocol's", precision)
	}
	t, err := strconv.ParseInt(string(b), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) || t > math.MaxInt64/scale:
		return 0, fmt.Errorf("timestamp %s is after 2262 at precision %s, past what Unix nanoseconds hold", quote(b), precision)
	case err != nil:
		return 0, fmt.Errorf("timestamp %s is not an integer", quote(b))
	case t <= 0:
		return 0, fmt.Errorf("timestamp %s is not after 1970", quote(b))
	}
	return t * scale, nil
}

// labels returns the line's tags as labels, the same slice each time for the same tags
// while the cache remembers them.
func (p *Parser) labels() ([]metric.Label, error) {
	if len(p.tags) == 0 {
		return nil, nil
	}
	if l, ok := p.tagSets.get(p.tags); ok {
		return l, nil
	}
	for rest := p.tags; len(rest) > 0; {
		k, r, _ := bytes.Cut(rest, []byte{0})
		_, rest, _ = bytes.Cut(r, []byte{0})
		p.tagKeys = append(p.tagKeys, k)
	}
	slices.SortFunc(p.tagKeys, bytes.Compare)
	for i := 1; i < len(p.tagKeys); i++ {
		if bytes.Equal(p.tagKeys[i], p.tagKeys[i-1]) {
			return nil, fmt.Errorf("tag key %s appears twice", quote(p.tagKeys[i]))
		}
	}
	labels := make([]metric.Label, 0, len(p.tagKeys))
	size := len(p.tags)
	for rest := p.tags; len(rest) > 0; {
		k, r, _ := bytes.Cut(rest, []byte{0})
		var v []byte
		v, rest, _ = bytes.Cut(r, []byte{0})
		labels = append(labels, metric.Label{Key: p.intern(k), Value: p.intern(v)})
		size += cacheOverhead
	}
	p.tagSets.put(string(p.tags), labels, size)
	return labels, nil
}

const (
	// maxCached bounds the entries of each of a Parser's caches: more names and tag sets
	// than a host's applications send in one interval.
	maxCached = 1 << 14
	// maxCachedBytes bounds the bytes each cache holds (an estimate: the strings, and
	// cacheOverhead for each entry and label), so that long names cannot make it big.
	maxCachedBytes = 4 << 20
	cacheOverhead  = 64
)

// cache is a map from strings, bounded: when an entry would take it past maxCached entries
// or maxCachedBytes bytes, it forgets every entry and starts again.
type cache[V any] struct {
	m     map[string]V
	bytes int
}

// get looks b up; indexing the map with string(b) does not allocate.
func (c *cache[V]) get(b []byte) (V, bool) {
	v, ok := c.m[string(b)]
	return v, ok
}

// put remembers v for k, counting size bytes.
func (c *cache[V]) put(k string, v V, size int) {
	if c.m == nil {
		c.m = make(map[string]V)
	}
	if len(c.m) >= maxCached || c.bytes+size > maxCachedBytes {
		clear(c.m)
		c.bytes = 0
	}
	c.m[k] = v
	c.bytes += size
}

// intern returns b as a string, the same string each time while p.names remembers it.
func (p *Parser) intern(b []byte) string {
	if s, ok := p.names.get(b); ok {
		return s
	}
	s := string(b)
	p.names.put(s, s, len(s)+cacheOverhead)
	return s
}

// offsetIn returns where b starts in data, or -1 if b is not a part of data. The decoder of
// NewDecoderWithBytes slices its tokens from data itself, except one it had to unescape,
// which it builds in a buffer of its own.
func offsetIn(data, b []byte) int {
	if cap(b) == 0 || cap(b) > cap(data) {
		return -1
	}
	o := cap(data) - cap(b)
	if &data[:cap(data)][o] != &b[:1][0] {
		return -1
	}
	return o
}

// lineCursor tells the lines of offsets in data. Points come in order, so it moves
// forward a little each time, and counting the newlines of all of data costs one pass.
type lineCursor struct {
	data []byte
	off  int // an offset in data
	line int // the line of data[off]
}

// lineAt returns the line of data[off].
func (c *lineCursor) lineAt(off int) int {
	if off >= c.off {
		c.line += bytes.Count(c.data[c.off:off], []byte{'\n'})
	} else {
		c.line -= bytes.Count(c.data[off:c.off], []byte{'\n'})
	}
	c.off = off
	return c.line
}

// seek moves to the start of a line, and reports whether data has that line.
func (c *lineCursor) seek(line int) bool {
	if line < 1 {
		return false
	}
	c.off = bytes.LastIndexByte(c.data[:c.off], '\n') + 1
	for c.line > line { // so there is a newline before c.off
		c.off = bytes.LastIndexByte(c.data[:c.off-1], '\n') + 1
		c.line--
	}
	for c.line < line {
		i := bytes.IndexByte(c.data[c.off:], '\n')
		if i < 0 {
			return false
		}
		c.off += i + 1
		c.line++
	}
	return true
}

// skippable reports whether a line is blank or a comment: only blanks, or a '#' after them.
// It reads no further than that, so that asking of a long line costs little.
func (c *lineCursor) skippable(line int) bool {
	if !c.seek(line) {
		return false
	}
	for _, b := range c.data[c.off:] {
		switch b {
		case ' ', '\t', '\r', '\v', '\f':
		case '\n', '#':
			return true
		default:
			return false
		}
	}
	return true
}

// nextContent returns the first line after the given one that is not blank or a comment.
func (c *lineCursor) nextContent(line int) int {
	for {
		line++
		if !c.skippable(line) {
			return line
		}
	}
}

// decoderLine returns the line of the decoder's error in err, or 0 if err is none of its.
func decoderLine(err error) int {
	if err == nil {
		return 0 // before de, which escapes: a good line allocates nothing
	}
	var de *lineprotocol.DecodeError
	if errors.As(err, &de) {
		return int(de.Line)
	}
	return 0
}

// syntaxError makes an error of the decoder's: without the line, which is reject's, and
// with the measurement when the decoder got that far.
func syntaxError(meas []byte, err error) error {
	var de *lineprotocol.DecodeError
	if !errors.As(err, &de) {
		return err
	}
	msg := fmt.Sprintf("column %d: %s", de.Column, cut(de.Err.Error(), 2*maxQuote))
	if meas != nil {
		msg = fmt.Sprintf("measurement %s: %s", quote(meas), msg)
	}
	return &syntaxErr{de: de, msg: msg}
}

// syntaxErr is an error of the decoder's, with a message of its own. It unwraps to the
// decoder's error, so that Parse finds the line in it.
type syntaxErr struct {
	de  *lineprotocol.DecodeError
	msg string
}

func (e *syntaxErr) Error() string { return e.msg }
func (e *syntaxErr) Unwrap() error { return e.de }

// maxQuote is how much of a line's offending part an error quotes: enough to recognise it,
// short enough to keep a log line short whatever a client sends.
const maxQuote = 64

// quote returns s quoted with %q, cut to maxQuote bytes and marked "..." when longer.
func quote[T ~string | ~[]byte](s T) string {
	if len(s) <= maxQuote {
		return strconv.Quote(string(s))
	}
	return strconv.Quote(string(s[:cutAt(s, maxQuote)])) + "..."
}

// cut returns s cut to n bytes and marked "..." when longer.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:cutAt(s, n)] + "..."
}

// cutAt returns where to cut s, longer than n bytes, to keep at most n of them without
// splitting a character: n, or the start of the character that s[n] is in.
func cutAt[T ~string | ~[]byte](s T, n int) int {
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return i
		}
	}
	return n
}

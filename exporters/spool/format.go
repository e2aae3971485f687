package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"

	"github.com/picket-agent/picket/agent/metric"
)

// A record is a fixed header followed by its payload. All integers are little-endian.
//
//	0  magic       uint32  recordMagic: where a reader resynchronises after damage
//	4  length      uint32  payload bytes
//	8  datapoints  uint32  samples in the batch
//	12 time        int64   tick time, unix nanoseconds
//	20 payload CRC uint32  crc32c of the payload
//	24 header CRC  uint32  crc32c of bytes 0..23
//
// The header carries everything the spool's bookkeeping needs (sizes, counts, times), so
// opening a spool and charging drops read headers only and seek over payloads.
const (
	headerSize  = 28
	recordMagic = 0x74_6b_70_9d // "\x9dpkt" on disk; 0x9d is not ASCII, so label text rarely holds it

	// maxPayload bounds one record. A 2,000-sample tick encodes to about 23 KiB, so this
	// leaves room for hosts hundreds of times bigger. It is also the most a damaged length
	// field can make a reader buffer, and the decoder's allocations are a fixed multiple of
	// it (see decoder).
	maxPayload = 8 << 20
	// maxDatapoints bounds the samples of one record, independently of their size.
	maxDatapoints = 1 << 20

	// minSampleBytes is the smallest encoded sample: flags, field index, a one-byte value.
	// Counts are checked against it before anything is allocated for them.
	minSampleBytes = 3
	// payloadVersion is the payload's first byte, so the encoding can change without a
	// new header.
	payloadVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is a record header's content.
type header struct {
	length     uint32
	datapoints uint32
	time       int64
	crc        uint32
}

// put writes h into b[:headerSize].
func (h header) put(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], recordMagic)
	binary.LittleEndian.PutUint32(b[4:], h.length)
	binary.LittleEndian.PutUint32(b[8:], h.datapoints)
	binary.LittleEndian.PutUint64(b[12:], uint64(h.time))
	binary.LittleEndian.PutUint32(b[20:], h.crc)
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
}

// parseHeader reads a header from b. ok is false unless b holds the magic, a matching
// header CRC and plausible sizes: a length within maxPayload and a datapoint count the
// length could hold. b shorter than headerSize is not a header.
func parseHeader(b []byte) (h header, ok bool) {
	if len(b) < headerSize || binary.LittleEndian.Uint32(b) != recordMagic ||
		binary.LittleEndian.Uint32(b[24:]) != crc32.Checksum(b[:24], castagnoli) {
		return header{}, false
	}
	h = header{
		length:     binary.LittleEndian.Uint32(b[4:]),
		datapoints: binary.LittleEndian.Uint32(b[8:]),
		time:       int64(binary.LittleEndian.Uint64(b[12:])),
		crc:        binary.LittleEndian.Uint32(b[20:]),
	}
	if h.length > maxPayload || h.datapoints > maxDatapoints || uint64(h.datapoints)*minSampleBytes > uint64(h.length) {
		return header{}, false
	}
	return h, true
}

// Sample flags, one byte per sample.
const (
	flagCounter = 1 << iota // Kind is Counter
	// flagInt: the value is integral and small enough that a zigzag varint is shorter
	// than its 8 float bytes. Most datapoints are kernel counters (bytes, packets, pages)
	// and come out at 2-6 bytes instead of 8.
	flagInt
	// flagSame: collector and labels as the sample before, so a collector's fields for one
	// instance (a CPU, a disk) cost only their field index and value.
	flagSame
	flagMask = flagCounter | flagInt | flagSame
)

// intLimit bounds the integers written as varints: in [-2^48, 2^48) a zigzag varint
// takes at most 7 bytes, less than the float's 8.
const intLimit = 1 << 48

// encoder turns batches into payloads. It keeps its string index between calls, so that
// encoding a tick allocates nothing once its strings have been seen.
type encoder struct {
	index map[string]uint64
	strs  []string
	// refs holds the string references of the samples in the order they are written,
	// so that each string is looked up once: the table must precede the samples.
	refs []uint64
}

// errTooLarge is returned for a batch whose record would exceed maxPayload or
// maxDatapoints.
var errTooLarge = errors.New("batch too large for one spool record")

// appendPayload appends b's payload to dst.
//
// Layout: version byte; uvarint string count, then each string as uvarint length and
// bytes; uvarint sample count; per sample the flags byte, then unless flagSame the
// collector's string index, a uvarint label count and per label uvarint key<<1|named and
// the value's string index; then the field's string index and the value (zigzag varint
// with flagInt, else float64 bits).
func (e *encoder) appendPayload(dst []byte, b *metric.Batch) []byte {
	if e.index == nil {
		e.index = make(map[string]uint64)
	}
	clear(e.index)
	e.strs, e.refs = e.strs[:0], e.refs[:0]
	for i := range b.Samples {
		s := &b.Samples[i]
		if i == 0 || !sameSeries(s, &b.Samples[i-1]) {
			e.refs = append(e.refs, e.ref(s.Collector), uint64(len(s.Labels)))
			for _, l := range s.Labels {
				k := e.ref(l.Key) << 1
				if l.Named {
					k |= 1
				}
				e.refs = append(e.refs, k, e.ref(l.Value))
			}
		}
		e.refs = append(e.refs, e.ref(s.Field))
	}
	dst = append(dst, payloadVersion)
	dst = binary.AppendUvarint(dst, uint64(len(e.strs)))
	for _, s := range e.strs {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b.Samples)))
	refs := e.refs
	for i := range b.Samples {
		s := &b.Samples[i]
		var flags byte
		if s.Kind == metric.Counter {
			flags |= flagCounter
		}
		iv, isInt := integral(s.Value)
		if isInt {
			flags |= flagInt
		}
		same := i > 0 && sameSeries(s, &b.Samples[i-1])
		if same {
			flags |= flagSame
		}
		dst = append(dst, flags)
		if !same {
			n := 2 + 2*len(s.Labels) // collector, label count, the labels
			for _, r := range refs[:n] {
				dst = binary.AppendUvarint(dst, r)
			}
			refs = refs[n:]
		}
		dst = binary.AppendUvarint(dst, refs[0])
		refs = refs[1:]
		if isInt {
			dst = binary.AppendVarint(dst, iv)
		} else {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.Value))
		}
	}
	return dst
}

// ref returns the string table index of s, adding s if it is new.
func (e *encoder) ref(s string) uint64 {
	i, ok := e.index[s]
	if !ok {
		i = uint64(len(e.strs))
		e.index[s] = i
		e.strs = append(e.strs, s)
	}
	return i
}

// sameSeries reports whether a and b have the same collector and labels. Collectors pass
// one labels slice for all fields of an instance, so the comparison is usually of
// identical strings and cheap.
func sameSeries(a, b *metric.Sample) bool {
	if a.Collector != b.Collector || len(a.Labels) != len(b.Labels) {
		return false
	}
	for i := range a.Labels {
		if a.Labels[i] != b.Labels[i] {
			return false
		}
	}
	return true
}

// integral returns v as an integer when the varint form is exact and shorter. -0 is not
// integral: the varint would lose its sign.
func integral(v float64) (int64, bool) {
	if v < -intLimit || v >= intLimit {
		return 0, false
	}
	i := int64(v)
	if float64(i) != v || (i == 0 && math.Signbit(v)) {
		return 0, false
	}
	return i, true
}

// errPayload is returned for a payload that does not decode. With a matching CRC that
// means a bug or a deliberately crafted file; either way the record is skipped as corrupt.
var errPayload = errors.New("malformed record payload")

// Interned strings are kept across records up to these bounds, after which the table
// starts afresh: a host's few thousand names fit, a stream of unique label values does not
// make it grow without bound.
const (
	maxInterned      = 1 << 14
	maxInternedBytes = 1 << 20
)

// decoder turns payloads back into batches, reusing its buffers: the samples and labels
// it returns are valid until the next decode. Strings are real, immutable strings,
// interned across records, so a consumer may keep them (as map keys, say) and a steady
// stream of records allocates nothing.
//
// Every count read from a payload is checked against the bytes left before anything is
// allocated for it, so what a payload of n bytes makes the decoder hold is linear in n
// whatever the payload contains: a sample and its label range take 80 bytes and at least
// 3 payload bytes, a label 40 bytes (twice that while its slice grows) and at least 2, a
// string 16 bytes plus its length and at least 1 (FuzzDecodeRecord checks 128n). With
// maxPayload that bounds a crafted record; a real tick's record is a few KiB.
type decoder struct {
	strs    []string
	samples []metric.Sample
	labels  []metric.Label
	// ranges[i] is where sample i's labels lie in labels. Labels are collected first and
	// sliced at the end, because growing labels moves them.
	ranges        []labelRange
	interned      map[string]string
	internedBytes int
}

type labelRange struct{ lo, hi uint32 }

// payloadReader consumes a payload. A read past the end or a bad varint sets bad and
// yields zero, so the decoder checks once per sample instead of after every field.
type payloadReader struct {
	b   []byte
	bad bool
}

func (r *payloadReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *payloadReader) byte() byte {
	if len(r.b) == 0 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// str returns string i of the table.
func (d *decoder) str(r *payloadReader, i uint64) string {
	if i >= uint64(len(d.strs)) {
		r.bad = true
		return ""
	}
	return d.strs[i]
}

// decode decodes payload p of a record with the given datapoint count into dst. On error
// dst has no samples.
func (d *decoder) decode(p []byte, datapoints uint32, dst *metric.Batch) error {
	dst.Samples = nil
	r := payloadReader{b: p}
	if r.byte() != payloadVersion {
		return errPayload
	}
	nstr := r.uvarint()
	if r.bad || nstr > uint64(len(r.b)) { // every string takes at least its length byte
		return errPayload
	}
	if uint64(cap(d.strs)) < nstr {
		d.strs = make([]string, 0, nstr)
	}
	d.strs = d.strs[:0]
	for range nstr {
		n := r.uvarint()
		if r.bad || n > uint64(len(r.b)) {
			return errPayload
		}
		d.strs = append(d.strs, d.intern(r.b[:n]))
		r.b = r.b[n:]
	}
	ns := r.uvarint()
	if r.bad || ns != uint64(datapoints) || ns > uint64(len(r.b)/minSampleBytes) {
		return errPayload
	}
	if uint64(cap(d.samples)) < ns {
		d.samples = make([]metric.Sample, ns)
		d.ranges = make([]labelRange, ns)
	}
	samples, ranges := d.samples[:ns], d.ranges[:ns]
	d.labels = d.labels[:0]
	for i := range samples {
		s := &samples[i]
		flags := r.byte()
		if flags&^flagMask != 0 || (i == 0 && flags&flagSame != 0) {
			return errPayload
		}
		if flags&flagSame != 0 {
			s.Collector = samples[i-1].Collector
			ranges[i] = ranges[i-1]
		} else {
			s.Collector = d.str(&r, r.uvarint())
			nl := r.uvarint()
			if r.bad || nl > uint64(len(r.b)/2) { // a label takes at least two bytes
				return errPayload
			}
			lo := len(d.labels)
			for range nl {
				k := r.uvarint()
				d.labels = append(d.labels, metric.Label{Key: d.str(&r, k>>1), Named: k&1 == 1, Value: d.str(&r, r.uvarint())})
			}
			ranges[i] = labelRange{uint32(lo), uint32(len(d.labels))}
		}
		s.Field = d.str(&r, r.uvarint())
		s.Kind = metric.Gauge
		if flags&flagCounter != 0 {
			s.Kind = metric.Counter
		}
		if flags&flagInt != 0 {
			v, n := binary.Varint(r.b)
			if n <= 0 {
				return errPayload
			}
			r.b = r.b[n:]
			s.Value = float64(v)
		} else {
			if len(r.b) < 8 {
				return errPayload
			}
			s.Value = math.Float64frombits(binary.LittleEndian.Uint64(r.b))
			r.b = r.b[8:]
		}
		if r.bad {
			return errPayload
		}
	}
	if len(r.b) != 0 {
		return errPayload
	}
	for i := range samples {
		// The capacity is cut at the end of each range, so a consumer appending to one
		// sample's labels cannot overwrite the next sample's.
		lr := ranges[i]
		samples[i].Labels = nil
		if lr.hi > lr.lo {
			samples[i].Labels = d.labels[lr.lo:lr.hi:lr.hi]
		}
	}
	dst.Samples = samples
	return nil
}

// intern returns b as a string, the same one as for earlier equal bytes while the table
// has room.
func (d *decoder) intern(b []byte) string {
	if s, ok := d.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(s) > maxInternedBytes/16 {
		return s
	}
	if d.interned == nil || len(d.interned) >= maxInterned || d.internedBytes+len(s) > maxInternedBytes {
		d.interned = make(map[string]string)
		d.internedBytes = 0
	}
	d.interned[s] = s
	d.internedBytes += len(s)
	return s
}

package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/maphash"
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
	// The payload's first byte is its version, so the encoding can change without a new
	// header. Version 2 (payloadVersion) added flagTime and the origin bits. A batch that
	// needs neither (picket's own ticks) is still written as version 1, byte for byte as
	// before, and only records holding relayed samples are version 2: a picket from before
	// the relay, brought back on a host that spooled some, skips just those as corrupt
	// ("version 2, want 1") rather than misreading their flags.
	payloadVersion1 = 1
	payloadVersion  = 2
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
	// flagTime (version 2): the sample has its own Time, written after the value as a
	// zigzag varint of its difference from the record's time. Relayed lines mostly carry
	// times close to their arrival, so the difference takes a few bytes.
	flagTime

	// originShift places the sample's Origin in bits 4-6 (version 2).
	originShift = 4
	originMask  = 7 << originShift

	flagMaskV1 = flagCounter | flagInt | flagSame
	flagMask   = flagMaskV1 | flagTime | originMask
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

// appendPayload appends b's payload to dst. The record's header must carry b.Time, which
// the samples' own times are written relative to.
//
// Layout: version byte; uvarint string count, then each string as uvarint length and
// bytes; uvarint sample count; per sample the flags byte, then unless flagSame the
// collector's string index, a uvarint label count and per label uvarint key<<1|named and
// the value's string index; then the field's string index, the value (zigzag varint with
// flagInt, else float64 bits) and with flagTime the zigzag varint time difference.
func (e *encoder) appendPayload(dst []byte, b *metric.Batch) []byte {
	if e.index == nil {
		e.index = make(map[string]uint64)
	}
	clear(e.index)
	e.strs, e.refs = e.strs[:0], e.refs[:0]
	version := byte(payloadVersion1)
	for i := range b.Samples {
		s := &b.Samples[i]
		if s.Origin != metric.Collected || s.Time != 0 {
			version = payloadVersion
		}
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
	base := b.Time.UnixNano()
	dst = append(dst, version)
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
		if s.Time != 0 {
			flags |= flagTime
		}
		flags |= byte(s.Origin) << originShift
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
		if s.Time != 0 {
			// Wrapping arithmetic: the decoder adds it back to the same base, so any
			// two times round-trip, however far apart.
			dst = binary.AppendVarint(dst, s.Time-base)
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
// decode wraps it with what was wrong and where.
var errPayload = errors.New("malformed record payload")

func payloadError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errPayload}, args...)...)
}

// What a payload that ends early or holds a bad varint is, for payloadReader.
var (
	errTruncated = errors.New("truncated")
	errVarint    = errors.New("varint overflows 64 bits")
)

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
// Nothing is allocated for a count before the count is checked against the bytes left,
// and nothing grows by repeated appends, so what a payload of n bytes makes a fresh decoder
// allocate is at most a small multiple of n, whatever the payload holds. By part:
//   - samples: one array of exactly the header's count, 80 bytes for each sample, which
//     takes at least 3 bytes (flags, field index, one-byte value): under 27 per byte;
//   - labels: one array of exactly the payload's label total, 40 bytes for each label,
//     which takes at least 2 bytes (key and value index): 20 per byte. When the array the
//     decoder has is too small (the first record, a bigger host), a first pass over the
//     samples counts them;
//   - the string table: 16 bytes for each string, which takes at least 1 byte (its
//     length), and a copy of the table's bytes: 17 per byte; and for each string not seen
//     before, its bytes and its interner entry, at most 96 bytes (see interner). A
//     distinct non-empty string takes at least 3 bytes, but for the 256 one-byte ones:
//     (16+1 + 3 + 96) / 3, under 40 per byte.
//
// Every payload byte is in one part, so a fresh decoder allocates at most 40n, plus a
// constant for the 256 one-byte strings (30 KiB), the interner's first table and an
// error's text: allocBound(n) in the tests, 40n + 64 KiB, which FuzzDecodeRecord and
// TestDecodeAllocBound hold it to. The absolute worst is the labels of a crafted
// record of maxPayload: 160 MiB. A real 2,000-sample tick of 23 KiB costs a fresh decoder
// 230 KiB, and a warm one nothing.
type decoder struct {
	strs    []string
	table   []byte // the string table strs was decoded from
	samples []metric.Sample
	labels  []metric.Label

	interned interner
}

// payloadReader consumes a payload. A read past the end or a bad varint sets err and
// yields zero, so the decoder checks once per sample instead of after every field.
type payloadReader struct {
	b   []byte
	err error
}

func (r *payloadReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(n)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *payloadReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(n)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// fail records why a varint could not be read: n is binary.Uvarint's.
func (r *payloadReader) fail(n int) {
	if r.err == nil {
		r.err = errTruncated
		if n < 0 {
			r.err = errVarint
		}
	}
	r.b = nil
}

func (r *payloadReader) byte() byte {
	if len(r.b) == 0 {
		if r.err == nil {
			r.err = errTruncated
		}
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// str returns string i of the table.
func (d *decoder) str(r *payloadReader, i uint64) string {
	if i >= uint64(len(d.strs)) {
		if r.err == nil {
			r.err = fmt.Errorf("string index %d out of range (%d strings)", i, len(d.strs))
		}
		return ""
	}
	return d.strs[i]
}

// decode decodes payload p of the record with header h into dst's samples: h gives their
// number, and the time their own times are relative to. On error dst has no samples, and
// the error says what was wrong.
func (d *decoder) decode(p []byte, h header, dst *metric.Batch) error {
	dst.Samples = nil
	if len(p) == 0 {
		return payloadError("empty")
	}
	if p[0] != payloadVersion1 && p[0] != payloadVersion {
		return payloadError("version %d, want %d or %d", p[0], payloadVersion1, payloadVersion)
	}
	r := payloadReader{b: p[1:]}
	if err := d.readTable(&r); err != nil {
		return err
	}
	ns := r.uvarint()
	switch {
	case r.err != nil:
		return payloadError("sample count: %w", r.err)
	case ns != uint64(h.datapoints):
		return payloadError("%d samples, the record header says %d", ns, h.datapoints)
	case ns > uint64(len(r.b)/minSampleBytes):
		return payloadError("%d samples cannot fit in the %d bytes left", ns, len(r.b))
	}
	if uint64(cap(d.samples)) < ns {
		d.samples = make([]metric.Sample, ns)
	}
	samples := d.samples[:ns]
	nl, err := d.readSamples(r, p[0], h.time, samples)
	if err != nil {
		return err
	}
	if nl > cap(d.labels) {
		// The labels did not fit: now their number is known, and the payload is sound.
		d.labels = make([]metric.Label, nl)
		if _, err := d.readSamples(r, p[0], h.time, samples); err != nil {
			return err
		}
	}
	dst.Samples = samples
	return nil
}

// readTable reads the string table into d.strs.
func (d *decoder) readTable(r *payloadReader) error {
	nstr := r.uvarint()
	if r.err != nil {
		return payloadError("string count: %w", r.err)
	}
	if nstr > uint64(len(r.b)) { // every string takes at least its length byte
		return payloadError("%d strings cannot fit in the %d bytes left", nstr, len(r.b))
	}
	// A host's table is the same from one tick to the next, and the same bytes make the
	// same strings: one comparison instead of an interner lookup per string.
	if len(d.table) > 0 && nstr == uint64(len(d.strs)) && bytes.HasPrefix(r.b, d.table) {
		r.b = r.b[len(d.table):]
		return nil
	}
	d.table = d.table[:0]
	if uint64(cap(d.strs)) < nstr {
		d.strs = make([]string, 0, nstr)
	}
	d.strs = d.strs[:0]
	start := r.b
	for i := range nstr {
		n := r.uvarint()
		if r.err != nil {
			return payloadError("string %d of %d: %w", i, nstr, r.err)
		}
		if n > uint64(len(r.b)) {
			return payloadError("string %d of %d: length %d exceeds the %d bytes left", i, nstr, n, len(r.b))
		}
		d.strs = append(d.strs, d.interned.get(r.b[:n]))
		r.b = r.b[n:]
	}
	d.table = append(d.table, start[:len(start)-len(r.b)]...)
	return nil
}

// readSamples decodes the samples section that r holds, of a payload of the given version
// and a record whose time is base, into samples, their labels into d.labels as far as its
// capacity goes, and returns how many labels the section holds. When that is more than
// cap(d.labels), the samples' Labels are not set: the caller grows d.labels and reads the
// section again. So the labels never move while samples point into them, and are
// allocated once, at their exact number.
func (d *decoder) readSamples(r payloadReader, version byte, base int64, samples []metric.Sample) (int, error) {
	labels := d.labels[:cap(d.labels)]
	mask := byte(flagMask)
	if version == payloadVersion1 {
		mask = flagMaskV1
	}
	nl := 0
	for i := range samples {
		s := &samples[i]
		flags := r.byte()
		if flags&^mask != 0 {
			return 0, payloadError("sample %d: unknown flags %#x in a version %d payload", i, flags, version)
		}
		// Set for every sample, collected ones too: samples is reused from the last record.
		s.Origin = metric.Origin(flags&originMask) >> originShift
		if s.Origin > metric.InfluxUint {
			return 0, payloadError("sample %d: unknown origin %d", i, s.Origin)
		}
		if flags&flagSame != 0 {
			if i == 0 {
				return 0, payloadError("sample 0 continues a previous one")
			}
			s.Collector, s.Labels = samples[i-1].Collector, samples[i-1].Labels
		} else {
			s.Collector = d.str(&r, r.uvarint())
			n := r.uvarint()
			if r.err != nil {
				return 0, payloadError("sample %d of %d: %w", i, len(samples), r.err)
			}
			if n > uint64(len(r.b)/2) { // a label takes at least two bytes
				return 0, payloadError("sample %d: %d labels cannot fit in the %d bytes left", i, n, len(r.b))
			}
			lo := nl
			nl += int(n)
			s.Labels = nil
			if nl <= len(labels) {
				for j := lo; j < nl; j++ {
					k := r.uvarint()
					labels[j] = metric.Label{Key: d.str(&r, k>>1), Named: k&1 == 1, Value: d.str(&r, r.uvarint())}
				}
				if nl > lo {
					// The capacity is cut at the end of the range, so a consumer appending
					// to one sample's labels cannot overwrite the next sample's.
					s.Labels = labels[lo:nl:nl]
				}
			} else {
				for range 2 * n { // counting: the second pass checks the indices
					r.uvarint()
				}
			}
		}
		s.Field = d.str(&r, r.uvarint())
		s.Kind = metric.Gauge
		if flags&flagCounter != 0 {
			s.Kind = metric.Counter
		}
		if flags&flagInt != 0 {
			s.Value = float64(r.varint())
		} else if len(r.b) >= 8 {
			s.Value = math.Float64frombits(binary.LittleEndian.Uint64(r.b))
			r.b = r.b[8:]
		} else if r.err == nil {
			r.err = errTruncated
		}
		s.Time = 0
		if flags&flagTime != 0 {
			s.Time = base + r.varint()
		}
		if r.err != nil {
			return 0, payloadError("sample %d of %d: %w", i, len(samples), r.err)
		}
	}
	if len(r.b) != 0 {
		return 0, payloadError("%d bytes after the last sample", len(r.b))
	}
	return nl, nil
}

// interner hands out one string for each distinct value: a hash set of strings, with
// open addressing and linear probing. A map[string]string does the same, but as it grows
// it allocates about 200 bytes per entry, where this allocates 96 at most (24-48 held), and
// a payload of short distinct strings is what a crafted record would use to make the
// decoder allocate the most for its size.
type interner struct {
	seed maphash.Seed
	// strs are the strings by insertion; their capacity is half the slots, so the table
	// grows before it is more than half full.
	strs []string
	// slots index strs: 0 is empty, i is strs[i-1]. Their number is a power of two.
	slots []uint32
	bytes int
}

// get returns b as a string, the same one as for earlier equal bytes while the table has
// room. When it has none (maxInterned strings, or maxInternedBytes), it starts afresh in
// the same memory; the strings it handed out stay valid.
func (t *interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxInternedBytes/16 {
		return string(b)
	}
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
		t.grow(16)
	}
	h := maphash.Bytes(t.seed, b)
	i := t.find(h, b)
	if j := t.slots[i]; j != 0 {
		return t.strs[j-1]
	}
	switch {
	case len(t.strs) >= maxInterned || t.bytes+len(b) > maxInternedBytes:
		clear(t.slots)
		clear(t.strs) // let go of them: only their users keep them now
		t.strs, t.bytes = t.strs[:0], 0
		i = t.find(h, b)
	case len(t.strs) == cap(t.strs):
		t.grow(2 * len(t.slots))
		i = t.find(h, b)
	}
	s := string(b)
	t.strs = append(t.strs, s)
	t.slots[i] = uint32(len(t.strs))
	t.bytes += len(s)
	return s
}

// find returns the slot that holds b, or the empty one where b goes; h is b's hash.
func (t *interner) find(h uint64, b []byte) uint64 {
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for j := t.slots[i]; j != 0 && t.strs[j-1] != string(b); j = t.slots[i] {
		i = (i + 1) & mask
	}
	return i
}

// grow makes the table n slots long and places the strings again.
func (t *interner) grow(n int) {
	strs := make([]string, len(t.strs), n/2)
	copy(strs, t.strs)
	t.strs, t.slots = strs, make([]uint32, n)
	mask := uint64(n - 1)
	for k, s := range strs {
		i := maphash.String(t.seed, s) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = uint32(k + 1)
	}
}

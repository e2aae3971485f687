package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// segment is what the spool keeps in memory about one segment file: enough to enforce
// the bounds, charge drops, and answer Backlog without reading the file. It is rebuilt at
// Open from the record headers. Fields change under Spool.mu.
type segment struct {
	id   uint64
	size int64 // bytes of whole records and known gaps; readers never read beyond it
	// records and datapoints count the records whose headers are intact.
	records    uint64
	datapoints uint64
	// first and last are the tick times (unix ns) of the first and last records; newest
	// is the greatest, which decides expiry even if the clock stepped back.
	first, last, newest int64
	// lastOff is the offset of the last record and lastDatapoints its count, so a cursor
	// one record behind (the usual case) gets an exact Backlog.
	lastOff        int64
	lastDatapoints uint32
	// gaps are damaged regions already counted in Stats.CorruptBytes, so that readers
	// passing them again do not count them again. At most maxGaps are remembered.
	gaps []gap
}

// maxGaps bounds the damaged regions remembered per segment. A segment damaged in more
// places than that may have its later ones counted once per reader.
const maxGaps = 64

type gap struct{ from, to int64 }

// add accounts for the record with header h at off.
func (g *segment) add(off int64, h header) {
	if g.records == 0 {
		g.first, g.newest = h.time, h.time
	}
	g.records++
	g.datapoints += uint64(h.datapoints)
	g.last = h.time
	g.newest = max(g.newest, h.time)
	g.lastOff, g.lastDatapoints = off, h.datapoints
}

// knownGap reports whether [from, to) lies in a gap already counted.
func (g *segment) knownGap(from, to int64) bool {
	for _, k := range g.gaps {
		if k.from <= from && to <= k.to {
			return true
		}
	}
	return false
}

func segmentName(id uint64) string { return fmt.Sprintf("%016x.seg", id) }

// parseSegmentName returns the id of a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, ".seg")
	if !ok || len(hex) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 64)
	return id, err == nil
}

// reader reads a segment file through a buffer, so that scanning headers or streaming
// records costs one read call per buffer rather than one per record. The buffer grows to
// the largest record read (at most maxPayload plus a header): memory follows the record
// size, not the backlog.
type reader struct {
	f     *os.File
	buf   []byte
	start int64 // file offset of buf[0]
	n     int   // valid bytes in buf
	chunk int   // bytes read at a time
}

func newReader(chunk int) reader { return reader{chunk: chunk} }

// reset points r at f, forgetting what it buffered.
func (r *reader) reset(f *os.File) {
	r.f, r.start, r.n = f, 0, 0
}

// at returns the n bytes at off, valid until the next call. It never reads at or beyond
// limit, the end of the data the spool has finished writing.
func (r *reader) at(off int64, n int, limit int64) ([]byte, error) {
	if off >= r.start && off+int64(n) <= r.start+int64(r.n) {
		i := off - r.start
		return r.buf[i : i+int64(n)], nil
	}
	want := int64(max(n, r.chunk))
	if off+want > limit {
		want = limit - off
	}
	if want < int64(n) {
		return nil, io.ErrUnexpectedEOF
	}
	if int64(cap(r.buf)) < want {
		r.buf = make([]byte, want)
	}
	m, err := r.f.ReadAt(r.buf[:want], off)
	r.start, r.n = off, m
	if m < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return r.buf[:n], nil
}

var magicBytes = binary.LittleEndian.AppendUint32(nil, recordMagic)

// indexMagic returns the offset of the first magic at or after from that leaves room for
// a whole header before limit, or -1.
func (r *reader) indexMagic(from, limit int64) (int64, error) {
	for from+headerSize <= limit {
		n := min(int64(r.chunk), limit-from)
		b, err := r.at(from, int(n), limit)
		if err != nil {
			return -1, err
		}
		if i := bytes.Index(b, magicBytes); i >= 0 {
			if from+int64(i)+headerSize > limit {
				return -1, nil
			}
			return from + int64(i), nil
		}
		if from+n >= limit {
			break
		}
		from += n - int64(len(magicBytes)-1) // a magic may straddle two chunks
	}
	return -1, nil
}

// findHeader returns the first valid header at or after off whose record ends by limit.
// A damaged header is passed by scanning for the next magic that starts a valid header.
// ok is false, and at is limit, if there is none.
func (r *reader) findHeader(off, limit int64) (at int64, h header, ok bool, err error) {
	for off+headerSize <= limit {
		b, err := r.at(off, headerSize, limit)
		if err != nil {
			return off, header{}, false, err
		}
		if h, ok := parseHeader(b); ok && off+headerSize+int64(h.length) <= limit {
			return off, h, true, nil
		}
		next, err := r.indexMagic(off+1, limit)
		if err != nil {
			return off, header{}, false, err
		}
		if next < 0 {
			break
		}
		off = next
	}
	return limit, header{}, false, nil
}

// walk calls rec for each whole record in [off, limit), in order, until rec returns
// false, and gap for each damaged region between them (including one at the end).
func (r *reader) walk(off, limit int64, rec func(off int64, h header) bool, gap func(from, to int64)) error {
	for off < limit {
		at, h, ok, err := r.findHeader(off, limit)
		if err != nil {
			return err
		}
		if at > off && gap != nil {
			gap(off, at)
		}
		if !ok || !rec(at, h) {
			return nil
		}
		off = at + headerSize + int64(h.length)
	}
	return nil
}

// tornHeader returns the first intact header in [from, size) regardless of whether its
// payload fits: in a segment's damaged tail, that is the record a crash tore.
func (r *reader) tornHeader(from, size int64) (header, bool) {
	for off := from; off >= 0; {
		if b, err := r.at(off, headerSize, size); err == nil {
			if h, ok := parseHeader(b); ok {
				return h, true
			}
		}
		next, err := r.indexMagic(off+1, size)
		if err != nil {
			break
		}
		off = next
	}
	return header{}, false
}

package spool

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/picket-agent/picket/agent/metric"
)

// Record is one spooled batch, as returned by Iterator.Next.
type Record struct {
	// Pos is where the record starts; End is just after it, the position to commit once
	// the record is delivered.
	Pos, End Position
	// Batch is the decoded batch. Its Samples and their Labels are only valid until the
	// next call of Next on the same Iterator: the buffers are reused. The strings in them
	// stay valid.
	Batch metric.Batch
}

// Iterator reads records in order from a position, with its own file handle. It reads
// files without holding the spool's lock, so exporters do not slow Append down, and keeps
// one record in memory whatever the backlog. It is for one goroutine at a time.
type Iterator struct {
	s   *Spool
	c   *Cursor
	pos Position

	f    *os.File
	fseg uint64 // the segment f is
	r    reader
	dec  decoder
	rec  Record
}

// Next returns the record at the read position and moves past it. At the end of the
// spool it blocks until Append adds a record or ctx ends (then it returns ctx.Err()).
//
// It passes over what it cannot deliver: records older than MaxAge (charged to the
// cursor as expired), records whose payload fails its checksum (charged as corrupt, by
// their header's datapoint count), damaged headers (counted in Stats.CorruptBytes, as the
// datapoints are unknown) and deleted segments (charged when deleted). A record before
// the cursor is not charged again: it was delivered once.
func (it *Iterator) Next(ctx context.Context) (*Record, error) {
	return it.next(ctx, true)
}

// errPayloadCRC is why a record whose payload does not match its checksum is skipped.
var errPayloadCRC = errors.New("payload checksum mismatch")

// errAtEnd is what next returns at the end of the spool when it may not block.
var errAtEnd = errors.New("at the end of the spool")

func (it *Iterator) next(ctx context.Context, block bool) (*Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id, limit, cutoff, wait, err := it.locate()
		if err != nil {
			return nil, err
		}
		if wait != nil {
			if !block {
				return nil, errAtEnd
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-wait:
			}
			continue
		}
		if err := it.open(id); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since locate, which will now move past it
			}
			return nil, fmt.Errorf("spool: %w", err)
		}
		rec, err := it.read(id, limit, cutoff)
		if err != nil {
			// An unreadable segment is damage like any other: count the rest of it and
			// go on, rather than stall the exporter on the same bytes forever.
			it.s.log.Error("reading spool segment; skipping the rest of it", "segment", segmentName(id), "offset", it.pos.Offset, "err", err)
			it.s.noteGap(id, it.pos.Offset, limit)
			it.pos.Offset = limit
			continue
		}
		if rec != nil {
			return rec, nil
		}
	}
}

// locate settles the read position under the spool's lock: past the end of a finished
// segment it moves to the next one, before the oldest (deleted) segment to the oldest,
// beyond the end to the end, inside damage already found to its end. It returns the segment to read up to limit, or, at the end
// of the spool, a channel that Append closes.
func (it *Iterator) locate() (id uint64, limit, cutoff int64, wait <-chan struct{}, err error) {
	s := it.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, 0, nil, ErrClosed
	}
	for i, g := range s.segs {
		if g.id < it.pos.Segment {
			continue
		}
		if g.id > it.pos.Segment {
			it.pos = Position{g.id, 0}
		}
		for _, k := range g.gaps {
			// Known damage is jumped, not searched again: the search could now accept a
			// header whose record did not fit when the damage was found.
			if k.from <= it.pos.Offset && it.pos.Offset < k.to {
				it.pos.Offset = k.to
			}
		}
		if it.pos.Offset < g.size {
			return g.id, g.size, s.cutoff(), nil, nil
		}
		if i == len(s.segs)-1 {
			it.pos.Offset = g.size
			return 0, 0, 0, s.notify, nil
		}
	}
	it.pos = s.end()
	return 0, 0, 0, s.notify, nil
}

// open makes f segment id's file.
func (it *Iterator) open(id uint64) error {
	if it.f != nil && it.fseg == id {
		return nil
	}
	if it.f != nil {
		it.f.Close()
		it.f = nil
	}
	f, err := os.Open(filepath.Join(it.s.o.Dir, segmentName(id)))
	if err != nil {
		return err
	}
	it.f, it.fseg = f, id
	it.r.reset(f)
	return nil
}

// read reads the record at the position in segment id, which holds limit bytes. It
// returns nil, nil for something skipped.
func (it *Iterator) read(id uint64, limit, cutoff int64) (*Record, error) {
	off := it.pos.Offset
	at, h, ok, err := it.r.findHeader(off, limit)
	if err != nil {
		return nil, err
	}
	if at > off {
		it.s.noteGap(id, off, at)
	}
	if !ok {
		it.pos.Offset = limit
		return nil, nil
	}
	p, end := Position{id, at}, Position{id, at + headerSize + int64(h.length)}
	if h.time < cutoff {
		it.pos = end
		it.charge(p, end, h, reasonExpired)
		return nil, nil
	}
	payload, err := it.r.at(p.Offset+headerSize, int(h.length), limit)
	if err != nil {
		return nil, err
	}
	it.pos = end
	err = errPayloadCRC
	if crc32.Checksum(payload, castagnoli) == h.crc {
		err = it.dec.decode(payload, h, &it.rec.Batch)
	}
	if err != nil {
		if it.charge(p, end, h, reasonCorrupt) {
			it.s.log.Warn("corrupt spool record skipped", "exporter", it.c.name, "segment", segmentName(id), "offset", at, "datapoints", h.datapoints, "err", err)
		}
		return nil, nil
	}
	it.rec.Pos, it.rec.End = p, end
	it.rec.Batch.Time = time.Unix(0, h.time)
	return &it.rec, nil
}

func (it *Iterator) charge(p, end Position, h header, r reason) bool {
	it.s.mu.Lock()
	defer it.s.mu.Unlock()
	return it.c.charge(p, end, h.datapoints, r)
}

// Seek moves the read position to p, which should be a record boundary: a position
// from Record.Pos or End, Cursor.Position, Spool.End, Start or PositionAt.
func (it *Iterator) Seek(p Position) { it.pos = p }

// Pos returns the read position: the end of the record Next returned last, or where
// Seek put it.
func (it *Iterator) Pos() Position { return it.pos }

// Close releases the iterator's file. The iterator must not be used after.
func (it *Iterator) Close() error {
	if it.f == nil {
		return nil
	}
	err := it.f.Close()
	it.f = nil
	return err
}

// Package spool is picket's durable queue between the scheduler and the exporters.
//
// Every tick's batch is appended to segment files on disk, and fdatasync'ed, before any
// exporter sees it. Each exporter reads through its own Cursor, a durable position it
// advances only past data its peer has received, so a restart resumes where delivery
// stopped. The spool is bounded in bytes and in age; data it deletes undelivered, and
// data it finds damaged, is counted per cursor in datapoints with the reason. Reading
// streams from disk: memory follows the size of a record, not of the backlog.
//
// On disk, <dir>/<segment:016x>.seg holds records (see format.go), <dir>/cursor.<name>
// one cursor's position, and <dir>/LOCK keeps a second process out.
package spool

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/picket-agent/picket/agent/metric"
)

// Options configures a Spool.
type Options struct {
	// Dir holds the segment and cursor files. It is created (0o750) if missing.
	Dir string
	// MaxBytes bounds all segment files together. Appending past it deletes the oldest
	// segments. The segment being written is never deleted, so the bound holds while one
	// segment plus one record fits in it, as it does with the default SegmentBytes.
	MaxBytes int64
	// MaxAge, if positive, drops records older than this (reason "expired"): whole
	// segments whose newest record is older, and older records met by an Iterator.
	MaxAge time.Duration
	// SegmentBytes is the size at which a segment is closed and a new one started, and so
	// the granularity of deletion. 0 means min(16 MiB, MaxBytes/8), at least 64 KiB.
	SegmentBytes int64
	// Logger receives one line per state change (damage found, data dropped).
	Logger *slog.Logger
	// Now is the clock for expiry; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Position is a place in the spool: a segment and a byte offset in it. Positions are
// comparable with == and ordered by Less. The position at the end of one segment and
// the start of the next denote the same place between two records.
type Position struct {
	Segment uint64
	Offset  int64
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	return p.Segment < q.Segment || p.Segment == q.Segment && p.Offset < q.Offset
}

// String returns p as segment:offset, the segment in hex as in its file name.
func (p Position) String() string { return fmt.Sprintf("%016x:%d", p.Segment, p.Offset) }

// Stats describes the spool's content.
type Stats struct {
	Bytes      int64  // all segment files together
	Segments   int    // segment files
	Records    uint64 // records with an intact header: one per tick
	Datapoints uint64 // datapoints in those records
	// CorruptBytes counts bytes found unreadable since Open: damaged headers and the
	// torn tail of the last segment found at Open, and damage found later by iterators.
	// Each damaged region is counted once.
	CorruptBytes uint64
}

// Drops counts the datapoints a cursor lost, by reason, since Open.
type Drops struct {
	SpoolFull uint64 // deleted undelivered to keep the spool within MaxBytes
	Expired   uint64 // older than MaxAge before they were delivered
	Corrupt   uint64 // in a record whose payload failed its checksum, or torn by a crash
}

type reason int

const (
	reasonFull reason = iota
	reasonExpired
	reasonCorrupt
)

func (r reason) String() string {
	return [...]string{"spool full", "expired", "corrupt"}[r]
}

func (d *Drops) add(r reason, n uint64) {
	switch r {
	case reasonFull:
		d.SpoolFull += n
	case reasonExpired:
		d.Expired += n
	case reasonCorrupt:
		d.Corrupt += n
	}
}

func (d Drops) total() uint64 { return d.SpoolFull + d.Expired + d.Corrupt }

// ErrClosed is returned by operations on a closed Spool, and by Iterator.Next once the
// Spool closes.
var ErrClosed = errors.New("spool closed")

// Read sizes: streaming reads a record's worth and more at a time; scanning headers
// (at Open, to charge a deleted segment, to find a time) touches little of each record.
const (
	readChunk = 64 << 10
	scanChunk = 4 << 10
)

// Spool is the on-disk queue. Append is meant for one goroutine (the scheduler's);
// cursors and iterators for the exporters' goroutines. All methods are safe for
// concurrent use.
type Spool struct {
	o   Options
	log *slog.Logger

	lock *os.File // holds the flock on <dir>/LOCK

	// appendMu serialises Append and Close. It is held across the write and the
	// fdatasync, which mu is not, so readers are never kept waiting for the disk.
	appendMu sync.Mutex
	enc      encoder
	wbuf     []byte

	mu           sync.Mutex
	closed       bool
	segs         []*segment // oldest first; never empty; the last one is written
	wf           *os.File   // the last segment, open for writing
	nextID       uint64     // above every segment file name seen, even unreadable ones
	bytes        int64
	corruptBytes uint64
	cursors      map[string]*Cursor
	// notify is closed and replaced by each Append, waking iterators at the end.
	notify chan struct{}
}

// Open opens the spool in o.Dir, creating it if needed. It scans the segments' record
// headers to rebuild what it keeps in memory and loads every cursor file there, so that
// drops are charged even to exporters not yet started. Damage does not stop it: a torn
// tail of the last segment (a crash mid-write) is truncated and counted as corrupt,
// damaged headers elsewhere are counted and skipped, a damaged cursor file restarts that
// cursor at the oldest record. Open fails only when the directory cannot be used.
func Open(o Options) (*Spool, error) {
	if o.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	if o.MaxBytes <= 0 {
		return nil, fmt.Errorf("spool: max bytes %d: must be positive", o.MaxBytes)
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = max(min(16<<20, o.MaxBytes/8), 64<<10)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{
		o: o, log: o.Logger.With("component", "spool"), lock: lock,
		cursors: make(map[string]*Cursor), notify: make(chan struct{}),
	}
	if err := s.load(); err != nil {
		lock.Close()
		return nil, err
	}
	st := s.Stats()
	s.log.Info("spool opened", "dir", o.Dir, "segments", st.Segments, "bytes", st.Bytes,
		"records", st.Records, "corrupt_bytes", st.CorruptBytes, "cursors", len(s.cursors))
	return s, nil
}

// lockDir takes an exclusive flock on <dir>/LOCK: two agents appending to one spool
// would interleave records and overwrite each other's cursors.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	rc, err := f.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			err = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
		})
		err = errors.Join(err, cerr)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool: %s is in use by another process", dir)
		}
		return nil, fmt.Errorf("spool: locking %s: %w", dir, err)
	}
	return f, nil
}

// load reads the directory: cursors first, so that a torn record found while scanning
// the segments is charged to them.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.o.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		if id, ok := parseSegmentName(e.Name()); ok {
			s.nextID = max(s.nextID, id+1)
			if e.Type().IsRegular() {
				ids = append(ids, id)
			}
			continue
		}
		name, ok := strings.CutPrefix(e.Name(), "cursor.")
		if !ok {
			continue
		}
		if strings.HasSuffix(name, ".tmp") { // a save interrupted before its rename
			os.Remove(filepath.Join(s.o.Dir, e.Name()))
			continue
		}
		if validName(name) {
			s.cursors[name] = s.loadCursor(name)
		}
	}
	slices.Sort(ids)
	writable := true
	for i, id := range ids {
		g, err := s.scan(id, i == len(ids)-1)
		if errors.Is(err, errTruncate) {
			// Readers stop at g.size; appends go to a new segment.
			s.log.Error("cannot truncate the torn end of a spool segment; starting a new one", "segment", segmentName(id), "err", err)
			writable, err = false, nil
		}
		if err != nil {
			// An unreadable segment is left on disk but out of the spool: nothing in it
			// can be delivered or charged.
			s.log.Error("skipping unreadable spool segment", "segment", segmentName(id), "err", err)
			continue
		}
		s.segs = append(s.segs, g)
		s.bytes += g.size
	}
	if len(s.segs) > 0 && writable {
		last := s.segs[len(s.segs)-1]
		wf, err := os.OpenFile(filepath.Join(s.o.Dir, segmentName(last.id)), os.O_WRONLY, 0)
		if err != nil {
			s.log.Error("cannot append to the last spool segment; starting a new one", "segment", segmentName(last.id), "err", err)
		}
		s.wf = wf
	}
	if s.wf == nil {
		if err := s.create(s.nextID); err != nil {
			return err
		}
	}
	start, end := s.start(), s.end()
	for _, c := range s.cursors {
		switch {
		case c.pos.Less(start):
			c.pos = start
		case end.Less(c.pos):
			s.log.Warn("spool cursor is beyond the end of the spool; resuming at the end",
				"exporter", c.name, "cursor", c.pos, "end", end)
			c.pos = end
		}
	}
	return nil
}

// scan rebuilds the metadata of segment id from its headers. In the last segment, a
// damaged tail is where a crash interrupted a write: it is truncated, so appends continue
// after the last whole record, and the torn record's datapoints (if its header survived)
// are charged as corrupt.
func (s *Spool) scan(id uint64, last bool) (*segment, error) {
	path := filepath.Join(s.o.Dir, segmentName(id))
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	g := &segment{id: id, size: size, lastOff: -1}
	r := newReader(scanChunk)
	r.reset(f)
	tail := int64(-1)
	err = r.walk(0, size, func(off int64, h header) bool {
		g.add(off, h)
		return true
	}, func(from, to int64) {
		s.corruptBytes += uint64(to - from)
		if to == size && last {
			tail = from
			return
		}
		if len(g.gaps) < maxGaps {
			g.gaps = append(g.gaps, gap{from, to})
		}
		s.log.Warn("damaged spool records skipped", "segment", segmentName(id), "offset", from, "bytes", to-from)
	})
	if err != nil {
		return nil, err
	}
	if tail < 0 {
		return g, nil
	}
	h, torn := r.tornHeader(tail, size)
	g.size = tail
	var terr error
	if err := truncate(path, tail); err != nil {
		terr = fmt.Errorf("%w: %w", errTruncate, err)
	}
	attrs := []any{"segment", segmentName(id), "offset", tail, "bytes", size - tail}
	if torn {
		// Charged directly, not as a span: appends will reuse these offsets.
		for _, c := range s.cursors {
			if !(Position{id, tail}).Less(c.pos) {
				c.drops.add(reasonCorrupt, uint64(h.datapoints))
			}
		}
		attrs = append(attrs, "datapoints", h.datapoints)
	}
	s.log.Warn("truncated a torn record at the end of the spool (interrupted write)", attrs...)
	return g, terr
}

var errTruncate = errors.New("truncating a torn tail")

// truncate cuts the file at path to size, durably.
func truncate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = fdatasync(f)
	}
	return errors.Join(err, f.Close())
}

// create starts segment id and makes it the one written. The directory is synced so
// that the new file's name survives a power loss along with the data fdatasync'ed into it.
func (s *Spool) create(id uint64) error {
	f, err := os.OpenFile(filepath.Join(s.o.Dir, segmentName(id)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(s.o.Dir); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("spool: %w", err)
	}
	s.mu.Lock()
	old := s.wf
	s.wf = f
	s.segs = append(s.segs, &segment{id: id, lastOff: -1})
	s.nextID = id + 1
	s.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Append writes b as one record and returns once it is on disk (written and
// fdatasync'ed), then wakes the iterators waiting for it. It starts a new segment when
// the current one would pass SegmentBytes, and first deletes the oldest segments that
// have expired or that would keep the spool over MaxBytes, charging their undelivered
// datapoints to each cursor. On error nothing of b is in the spool.
func (s *Spool) Append(b *metric.Batch) error {
	if len(b.Samples) > maxDatapoints {
		return fmt.Errorf("spool: %d samples: %w", len(b.Samples), errTooLarge)
	}
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	buf := slices.Grow(s.wbuf[:0], headerSize)[:headerSize]
	buf = s.enc.appendPayload(buf, b)
	s.wbuf = buf
	if len(buf)-headerSize > maxPayload {
		return fmt.Errorf("spool: %d payload bytes: %w", len(buf)-headerSize, errTooLarge)
	}
	h := header{
		length:     uint32(len(buf) - headerSize),
		datapoints: uint32(len(b.Samples)),
		time:       b.Time.UnixNano(),
		crc:        crc32.Checksum(buf[headerSize:], castagnoli),
	}
	h.put(buf)
	n := int64(len(buf))

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	active := s.segs[len(s.segs)-1]
	roll := active.size > 0 && active.size+n > s.o.SegmentBytes
	s.mu.Unlock()
	if roll {
		if err := s.create(s.nextID); err != nil {
			return err
		}
	}

	s.mu.Lock()
	s.enforce(n)
	active = s.segs[len(s.segs)-1]
	off, wf := active.size, s.wf
	s.mu.Unlock()

	if _, err := wf.WriteAt(buf, off); err != nil {
		// Cut off whatever part was written, so the next record follows the last whole one.
		wf.Truncate(off)
		return fmt.Errorf("spool: %w", err)
	}
	if err := fdatasync(wf); err != nil {
		// After a failed fdatasync the page cache cannot be trusted to hold the record:
		// take it out and report the batch as not spooled.
		wf.Truncate(off)
		return fmt.Errorf("spool: %s: fdatasync: %w", wf.Name(), err)
	}

	s.mu.Lock()
	active.add(off, h)
	active.size = off + n
	s.bytes += n
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// enforce deletes the oldest segments, never the one being written, while they have
// expired or the spool plus n more bytes would exceed MaxBytes. Expiry goes first, so
// data that is both too old and over the bound is counted as expired. Called with mu held.
func (s *Spool) enforce(n int64) {
	cutoff := s.cutoff()
	for len(s.segs) > 1 {
		g := s.segs[0]
		switch {
		case s.o.MaxAge > 0 && (g.records == 0 || g.newest < cutoff):
			s.drop(reasonExpired)
		case s.bytes+n > s.o.MaxBytes:
			s.drop(reasonFull)
		default:
			return
		}
	}
}

// cutoff returns the tick time before which records have expired. Called with mu held.
func (s *Spool) cutoff() int64 {
	if s.o.MaxAge <= 0 {
		return math.MinInt64
	}
	return s.o.Now().Add(-s.o.MaxAge).UnixNano()
}

// drop deletes the oldest segment, charging each cursor the datapoints in it that the
// cursor had neither passed nor already been charged for, and moves such cursors to the
// next segment. A cursor before the segment is charged its whole count from memory; one
// inside it (or with charges in it) needs the segment's headers, read here once for all.
// Called with mu held.
func (s *Spool) drop(r reason) {
	g := s.segs[0]
	next := Position{s.segs[1].id, 0}
	path := filepath.Join(s.o.Dir, segmentName(g.id))
	before := make(map[*Cursor]uint64, len(s.cursors))
	var inside []*Cursor
	for _, c := range s.cursors {
		if !c.pos.Less(next) {
			continue
		}
		before[c] = c.drops.total()
		switch {
		case c.pos.Segment == g.id && c.pos.Offset >= g.size:
			// Passed its last record.
		case (c.pos.Segment < g.id || c.pos == Position{g.id, 0}) && !c.chargedIn(g.id):
			c.drops.add(r, g.datapoints)
		default:
			inside = append(inside, c)
		}
	}
	if len(inside) > 0 {
		err := s.walkSegment(g, func(off int64, h header) bool {
			p, end := Position{g.id, off}, Position{g.id, off + headerSize + int64(h.length)}
			for _, c := range inside {
				c.charge(p, end, h.datapoints, r)
			}
			return true
		})
		if err != nil {
			// Unreadable now: charge by the share of the segment's bytes after the cursor.
			s.log.Error("reading a spool segment before deleting it; drops estimated", "segment", segmentName(g.id), "err", err)
			for _, c := range inside {
				if c.drops.total() == before[c] && c.pos.Offset < g.size {
					c.drops.add(r, g.datapoints*uint64(g.size-c.pos.Offset)/uint64(max(g.size, 1)))
				}
			}
		}
	}
	attrs := []any{"reason", r.String(), "segment", segmentName(g.id), "bytes", g.size, "datapoints", g.datapoints}
	lost := false
	for c, b := range before {
		if n := c.drops.total() - b; n > 0 {
			attrs = append(attrs, "dropped_"+c.name, n)
			lost = true
		}
		c.pos = next
		c.prune()
		c.scheduleFlush(time.Second)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("deleting a spool segment", "segment", segmentName(g.id), "err", err)
	}
	s.segs = s.segs[1:]
	s.bytes -= g.size
	if lost {
		s.log.Warn("dropped the oldest spool segment with undelivered data", attrs...)
	} else {
		s.log.Debug("deleted the oldest spool segment", attrs...)
	}
}

// walkSegment calls rec for each record header of g, up to its current size.
func (s *Spool) walkSegment(g *segment, rec func(off int64, h header) bool) error {
	f, err := os.Open(filepath.Join(s.o.Dir, segmentName(g.id)))
	if err != nil {
		return err
	}
	defer f.Close()
	r := newReader(scanChunk)
	r.reset(f)
	return r.walk(0, g.size, rec, nil)
}

// Close persists every cursor and closes the files. Iterators waiting in Next return
// ErrClosed. An Append in progress finishes first.
func (s *Spool) Close() error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.notify)
	cursors := make([]*Cursor, 0, len(s.cursors))
	for _, c := range s.cursors {
		if c.timer != nil {
			c.timer.Stop()
			c.timer = nil
		}
		cursors = append(cursors, c)
	}
	s.mu.Unlock()
	var errs []error
	for _, c := range cursors {
		errs = append(errs, c.Flush())
	}
	errs = append(errs, s.wf.Close(), s.lock.Close())
	return errors.Join(errs...)
}

// End returns where the next record will be appended.
func (s *Spool) End() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end()
}

func (s *Spool) end() Position {
	g := s.segs[len(s.segs)-1]
	return Position{g.id, g.size}
}

// Start returns the position of the oldest record in the spool.
func (s *Spool) Start() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.start()
}

func (s *Spool) start() Position { return Position{s.segs[0].id, 0} }

// PositionAt returns the position of the first record whose tick time is t or later:
// Start if no record is older, End if all are. It finds the segment from memory and reads
// at most that segment's headers.
func (s *Spool) PositionAt(t time.Time) Position {
	tn := t.UnixNano()
	s.mu.Lock()
	var g *segment
	for _, x := range s.segs {
		if x.records > 0 && x.newest >= tn {
			g = x
			break
		}
	}
	switch {
	case g == nil:
		defer s.mu.Unlock()
		return s.end()
	case g.first >= tn:
		s.mu.Unlock()
		return Position{g.id, 0}
	}
	snap := *g
	s.mu.Unlock()
	at := Position{snap.id, snap.size}
	err := s.walkSegment(&snap, func(off int64, h header) bool {
		if h.time >= tn {
			at.Offset = off
			return false
		}
		return true
	})
	if err != nil {
		// Deleted (or unreadable) meanwhile: its successor is the best answer left.
		return s.Start()
	}
	return at
}

// Stats returns the spool's current size and damage counts.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Bytes: s.bytes, Segments: len(s.segs), CorruptBytes: s.corruptBytes}
	for _, g := range s.segs {
		st.Records += g.records
		st.Datapoints += g.datapoints
	}
	return st
}

// noteGap counts damage an iterator found in [from, to) of segment id, unless it was
// counted before.
func (s *Spool) noteGap(id uint64, from, to int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := slices.BinarySearchFunc(s.segs, id, func(g *segment, id uint64) int {
		return cmp.Compare(g.id, id)
	})
	if !ok {
		return
	}
	g := s.segs[i]
	if g.knownGap(from, to) {
		return
	}
	s.corruptBytes += uint64(to - from)
	if len(g.gaps) < maxGaps {
		g.gaps = append(g.gaps, gap{from, to})
	}
	s.log.Warn("damaged spool records skipped", "segment", segmentName(id), "offset", from, "bytes", to-from)
}

// fdatasync flushes f's data and size, not its timestamps: what a reader after a crash
// needs, at less cost than fsync.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// syncDir makes the directory's entries (a new segment, a renamed cursor file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

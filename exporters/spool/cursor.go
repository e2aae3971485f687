package spool

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Cursor is one exporter's durable position in the spool: everything before it has been
// delivered. It also counts the datapoints the exporter lost, by reason. Its methods are
// safe for concurrent use.
type Cursor struct {
	s    *Spool
	name string

	// Guarded by s.mu, because Append charges drops and moves cursors while deleting.
	pos   Position
	drops Drops
	// charged lists ranges at or after pos already charged as dropped (skipped by an
	// iterator as expired or corrupt), so that neither another iterator nor the deletion
	// of their segment charges them again. Adjacent ranges merge; ranges the cursor passes
	// are forgotten.
	charged   []span
	timer     *time.Timer // a pending save, when Commit came too soon after the last
	lastFlush time.Time

	// fileMu serialises saves; written is the position in the file once fileOK.
	fileMu  sync.Mutex
	written Position
	fileOK  bool
}

type span struct{ from, to Position }

// maxSpans bounds the charged ranges remembered per cursor. It is only reached when an
// exporter skips many separate damaged or expired records without committing past them;
// forgetting the oldest range then risks counting it twice, never not at all.
const maxSpans = 64

// flushInterval is the most often Commit writes the cursor file: a position lost in a
// crash is replayed, which is harmless, so the file need not follow every commit.
const flushInterval = time.Second

// Cursor returns the cursor called name, stored in <dir>/cursor.<name>. A name never
// seen starts at End, so a newly added exporter does not replay old history; its file is
// written at once, so a restart resumes from there too. The name is 1 to 64 characters
// of [A-Za-z0-9_-]. Calls with the same name return the same Cursor.
func (s *Spool) Cursor(name string) (*Cursor, error) {
	if !validName(name) {
		return nil, fmt.Errorf("spool: cursor name %q: want 1-64 of [A-Za-z0-9_-]", name)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if c, ok := s.cursors[name]; ok {
		s.mu.Unlock()
		return c, nil
	}
	c := &Cursor{s: s, name: name, pos: s.end()}
	s.cursors[name] = c
	s.mu.Unlock()
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return c, nil
}

func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// loadCursor reads cursor name's file. A file that cannot be read or parsed restarts
// the cursor at the oldest record: replaying is safe, skipping is loss.
func (s *Spool) loadCursor(name string) *Cursor {
	c := &Cursor{s: s, name: name}
	path := filepath.Join(s.o.Dir, "cursor."+name)
	b, err := os.ReadFile(path)
	if err == nil {
		c.pos, err = parseCursor(b)
	}
	if err != nil {
		s.log.Warn("spool cursor file unreadable; replaying from the oldest record", "exporter", name, "file", path, "err", err)
		return c // the zero Position is before every segment: Open moves it to Start
	}
	c.written, c.fileOK = c.pos, true
	return c
}

// The cursor file is one line of text, readable with cat:
//
//	spool-cursor 1 <segment:016x> <offset:016x> <crc32c of the text before it:08x>
const cursorTag = "spool-cursor 1"

func formatCursor(p Position) []byte {
	line := fmt.Sprintf("%s %016x %016x", cursorTag, p.Segment, p.Offset)
	return fmt.Appendf(nil, "%s %08x\n", line, crc32.Checksum([]byte(line), castagnoli))
}

var errCursorFile = errors.New("not a spool cursor file")

func parseCursor(b []byte) (Position, error) {
	text, ok := strings.CutSuffix(string(b), "\n")
	i := strings.LastIndexByte(text, ' ')
	if !ok || i < 0 {
		return Position{}, errCursorFile
	}
	line, sum := text[:i], text[i+1:]
	crc, err := strconv.ParseUint(sum, 16, 32)
	if err != nil || uint32(crc) != crc32.Checksum([]byte(line), castagnoli) {
		return Position{}, fmt.Errorf("%w: checksum mismatch", errCursorFile)
	}
	f := strings.Fields(strings.TrimPrefix(line, cursorTag))
	if !strings.HasPrefix(line, cursorTag+" ") || len(f) != 2 {
		return Position{}, errCursorFile
	}
	seg, err1 := strconv.ParseUint(f[0], 16, 64)
	off, err2 := strconv.ParseInt(f[1], 16, 64)
	if err1 != nil || err2 != nil || off < 0 {
		return Position{}, errCursorFile
	}
	return Position{seg, off}, nil
}

// Position returns the cursor: everything before it has been delivered.
func (c *Cursor) Position() Position {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.pos
}

// Commit records that everything before p has been delivered. An older p than the
// cursor is ignored, so commits from several goroutines cannot move it back; a p beyond
// End is an error. The file is saved at most once per second, the latest position
// winning: at once if the last save is older than that, otherwise by a timer. A crash
// can so replay up to a second of commits, never skip data.
func (c *Cursor) Commit(p Position) error {
	s := c.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if !c.pos.Less(p) {
		s.mu.Unlock()
		return nil
	}
	if end := s.end(); end.Less(p) {
		s.mu.Unlock()
		return fmt.Errorf("spool: cursor %s: commit at %v, beyond the end %v", c.name, p, end)
	}
	c.pos = p
	c.prune()
	if wait := flushInterval - time.Since(c.lastFlush); wait > 0 {
		c.scheduleFlush(wait)
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	return c.Flush()
}

// scheduleFlush saves the cursor after d unless a save is already pending. Called with
// s.mu held.
func (c *Cursor) scheduleFlush(d time.Duration) {
	if c.timer == nil && !c.s.closed {
		c.timer = time.AfterFunc(d, c.timedFlush)
	}
}

func (c *Cursor) timedFlush() {
	c.s.mu.Lock()
	closed := c.s.closed
	c.s.mu.Unlock()
	if closed {
		return // Close saved it
	}
	if err := c.Flush(); err != nil {
		c.s.log.Error("saving spool cursor", "exporter", c.name, "err", err)
	}
}

// Flush saves the cursor now, if it moved since the last save: written to a temporary
// file, fsync'ed, renamed over the old one and the directory fsync'ed, so that after a
// crash the file holds either the old position or the new one.
func (c *Cursor) Flush() error {
	c.fileMu.Lock()
	defer c.fileMu.Unlock()
	s := c.s
	s.mu.Lock()
	p := c.pos
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.lastFlush = time.Now()
	s.mu.Unlock()
	if c.fileOK && c.written == p {
		return nil
	}
	if err := writeFileAtomic(filepath.Join(s.o.Dir, "cursor."+c.name), formatCursor(p)); err != nil {
		return fmt.Errorf("spool: saving cursor %s: %w", c.name, err)
	}
	c.written, c.fileOK = p, true
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// Drops returns the datapoints dropped for this cursor since Open, by reason.
func (c *Cursor) Drops() Drops {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.drops
}

// Backlog returns the datapoints not yet committed, and the tick time of the record at
// the cursor (zero if there is none). It is computed from the per-segment counts kept in
// memory, without reading the disk: exact when the cursor is at a segment's start, at its
// last record or at the end, and pro rata by bytes inside a segment otherwise.
func (c *Cursor) Backlog() (datapoints uint64, oldest time.Time) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p := c.pos
	if !p.Less(s.end()) {
		return 0, time.Time{}
	}
	var first int64
	found := false
	for _, g := range s.segs {
		if g.id < p.Segment || g.records == 0 {
			continue
		}
		n, t := g.datapoints, g.first
		if g.id == p.Segment && p.Offset > 0 {
			switch {
			case p.Offset >= g.size:
				continue
			case p.Offset == g.lastOff:
				n, t = uint64(g.lastDatapoints), g.last
			case p.Offset > g.lastOff:
				continue
			default:
				rest := float64(g.size-p.Offset) / float64(g.size)
				n = uint64(float64(g.datapoints) * rest)
				t = g.last - int64(float64(g.last-g.first)*rest)
			}
		}
		datapoints += n
		if !found {
			first, found = t, true
		}
	}
	if !found {
		return 0, time.Time{}
	}
	return datapoints, time.Unix(0, first)
}

// charge counts the n datapoints of the record [p, end) as dropped for reason, unless
// the cursor passed it or it was charged before. Called with s.mu held.
func (c *Cursor) charge(p, end Position, n uint32, r reason) bool {
	if p.Less(c.pos) {
		return false
	}
	for _, sp := range c.charged {
		if !p.Less(sp.from) && !sp.to.Less(end) {
			return false
		}
	}
	c.drops.add(r, uint64(n))
	for i := range c.charged {
		switch {
		case c.charged[i].to == p:
			c.charged[i].to = end
			return true
		case c.charged[i].from == end:
			c.charged[i].from = p
			return true
		}
	}
	if len(c.charged) == maxSpans {
		c.charged = c.charged[:copy(c.charged, c.charged[1:])]
	}
	c.charged = append(c.charged, span{p, end})
	return true
}

// chargedIn reports whether any charged range lies in segment id. Called with s.mu held.
func (c *Cursor) chargedIn(id uint64) bool {
	for _, sp := range c.charged {
		if sp.from.Segment == id {
			return true
		}
	}
	return false
}

// prune forgets the charged ranges the cursor has passed. Called with s.mu held.
func (c *Cursor) prune() {
	keep := c.charged[:0]
	for _, sp := range c.charged {
		if c.pos.Less(sp.to) {
			keep = append(keep, sp)
		}
	}
	c.charged = keep
}

// Iterator returns a reader starting at from, with its own file handle, that charges
// what it skips to c. An exporter may hold several (live data and backlog).
func (c *Cursor) Iterator(from Position) *Iterator {
	return &Iterator{s: c.s, c: c, pos: from, r: newReader(readChunk)}
}

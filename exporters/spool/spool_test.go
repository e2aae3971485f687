package spool

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
)

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// logBuffer collects log output for tests that check a line was written.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fakeClock is a settable Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func openSpool(t testing.TB, o Options) *Spool {
	t.Helper()
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 30
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCursor(t testing.TB, s *Spool, name string) *Cursor {
	t.Helper()
	c, err := s.Cursor(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// spooled is what a test appended: the batch and where it went.
type spooled struct {
	b        *metric.Batch
	pos, end Position
}

// appendAll appends n test batches, one second apart from t0, and returns them with
// their positions (read back through an iterator, before anything can be deleted).
func appendAll(t testing.TB, s *Spool, first, n int, t0 time.Time) []spooled {
	t.Helper()
	c := mustCursor(t, s, "appendall")
	it := c.Iterator(s.End())
	defer it.Close()
	var out []spooled
	for i := first; i < first+n; i++ {
		b := testBatch(i, t0.Add(time.Duration(i)*time.Second))
		if err := s.Append(b); err != nil {
			t.Fatal(err)
		}
		r, err := it.next(context.Background(), false)
		if err != nil {
			t.Fatalf("reading back record %d: %v", i, err)
		}
		out = append(out, spooled{b, r.Pos, r.End})
	}
	return out
}

// readAll reads from it until the end of the spool, without blocking.
func readAll(t testing.TB, it *Iterator) []spooled {
	t.Helper()
	var out []spooled
	for {
		r, err := it.next(context.Background(), false)
		if errors.Is(err, errAtEnd) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b := r.Batch
		b.Samples = append([]metric.Sample(nil), b.Samples...)
		for i := range b.Samples {
			b.Samples[i].Labels = append([]metric.Label(nil), b.Samples[i].Labels...)
		}
		out = append(out, spooled{&b, r.Pos, r.End})
	}
}

// checkSame fails unless got holds want's batches at want's positions.
func checkSame(t *testing.T, got, want []spooled) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].pos != want[i].pos || got[i].end != want[i].end {
			t.Fatalf("record %d at %v-%v, want %v-%v", i, got[i].pos, got[i].end, want[i].pos, want[i].end)
		}
		if diff := sameBatch(want[i].b, got[i].b); diff != "" {
			t.Fatalf("record %d: %s", i, diff)
		}
	}
}

func datapoints(recs []spooled) (n uint64) {
	for _, r := range recs {
		n += uint64(len(r.b.Samples))
	}
	return n
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1700000000, 0)
	tests := []struct {
		name         string
		segmentBytes int64
		n            int
		reopenAfter  int // Close and Open after this many appends; 0: never
	}{
		{"one segment", 1 << 20, 50, 0},
		{"segment rolls", 2000, 200, 0},
		{"record larger than a segment", 100, 20, 0},
		{"reopened", 1 << 20, 50, 20},
		{"reopened across rolls", 2000, 200, 77},
		{"nothing", 1 << 20, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o := Options{Dir: dir, SegmentBytes: tt.segmentBytes, MaxBytes: 1 << 30}
			s := openSpool(t, o)
			start := s.Start()
			var want []spooled
			if tt.reopenAfter > 0 {
				want = appendAll(t, s, 0, tt.reopenAfter, t0)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = openSpool(t, o)
			}
			want = append(want, appendAll(t, s, len(want), tt.n-len(want), t0)...)
			if tt.segmentBytes <= 2000 && tt.n > 0 && s.Stats().Segments < 2 {
				t.Fatal("no segment roll")
			}
			got := readAll(t, mustCursor(t, s, "a").Iterator(start))
			checkSame(t, got, want)
			st := s.Stats()
			if st.Records != uint64(tt.n) || st.Datapoints != datapoints(want) || st.CorruptBytes != 0 {
				t.Fatalf("stats %+v, want %d records, %d datapoints", st, tt.n, datapoints(want))
			}
		})
	}
}

func TestCursorDurability(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := Options{Dir: dir, SegmentBytes: 3000}
	s := openSpool(t, o)
	c := mustCursor(t, s, "graphite")
	if c.Position() != s.End() {
		t.Fatalf("new cursor at %v, want the end %v", c.Position(), s.End())
	}
	recs := appendAll(t, s, 0, 40, time.Unix(1e9, 0))
	if err := c.Commit(recs[22].end); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(recs[10].end); err != nil { // older: ignored
		t.Fatal(err)
	}
	if err := c.Commit(Position{s.End().Segment, s.End().Offset + 1}); err == nil {
		t.Fatal("commit beyond the end accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSpool(t, o)
	c = mustCursor(t, s, "graphite")
	if c.Position() != recs[22].end {
		t.Fatalf("reopened cursor at %v, want %v", c.Position(), recs[22].end)
	}
	checkSame(t, readAll(t, c.Iterator(c.Position())), recs[23:])
	if d := c.Drops(); d != (Drops{}) {
		t.Fatalf("drops %+v", d)
	}
}

// A cursor added to a spool with history starts at the end, and its file is written at
// once: appends before a restart are not skipped after it.
func TestNewCursorStartsAtEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := Options{Dir: dir}
	s := openSpool(t, o)
	appendAll(t, s, 0, 5, time.Unix(1e9, 0))
	c := mustCursor(t, s, "influx")
	at := c.Position()
	if at != s.End() {
		t.Fatalf("new cursor at %v, want the end %v", at, s.End())
	}
	appendAll(t, s, 5, 3, time.Unix(1e9, 0))
	s.Close()
	s = openSpool(t, o)
	if got := mustCursor(t, s, "influx").Position(); got != at {
		t.Fatalf("after restart at %v, want %v", got, at)
	}
}

func TestCursorFileDamaged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content []byte
	}{
		{"empty", nil},
		{"truncated", formatCursor(Position{0, 1234})[:20]},
		{"garbage", []byte("\x00\x01not a cursor at all\n")},
		{"checksum mismatch", bytes.Replace(formatCursor(Position{0, 1234}), []byte("04d2"), []byte("04d3"), 1)},
		{"no newline", bytes.TrimSuffix(formatCursor(Position{0, 1234}), []byte("\n"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o := Options{Dir: dir, SegmentBytes: 2000}
			s := openSpool(t, o)
			c := mustCursor(t, s, "graphite")
			recs := appendAll(t, s, 0, 30, time.Unix(1e9, 0))
			if err := c.Commit(recs[20].end); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if err := os.WriteFile(filepath.Join(dir, "cursor.graphite"), tt.content, 0o640); err != nil {
				t.Fatal(err)
			}
			var logs logBuffer
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			s = openSpool(t, o)
			c = mustCursor(t, s, "graphite")
			if c.Position() != s.Start() {
				t.Fatalf("cursor at %v, want the oldest record %v", c.Position(), s.Start())
			}
			if !bytes.Contains([]byte(logs.String()), []byte("cursor file unreadable; replaying from the oldest record")) {
				t.Fatalf("no log line; logs:\n%s", logs.String())
			}
			if d := c.Drops(); d != (Drops{}) {
				t.Fatalf("counted as loss: %+v", d)
			}
			checkSame(t, readAll(t, c.Iterator(c.Position())), recs)
		})
	}
}

func TestCursorFileRoundTrip(t *testing.T) {
	t.Parallel()
	for _, p := range []Position{{}, {1, 2}, {0xffff_ffff_ffff_ffff, 1<<63 - 1}} {
		got, err := parseCursor(formatCursor(p))
		if err != nil || got != p {
			t.Errorf("parseCursor(formatCursor(%v)) = %v, %v", p, got, err)
		}
	}
}

// Over MaxBytes, appends delete whole oldest segments, and each cursor is charged exactly
// the datapoints it had not passed in them.
func TestBound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, Options{Dir: dir, MaxBytes: 20000, SegmentBytes: 4000})
	behind := mustCursor(t, s, "behind")   // never commits
	partial := mustCursor(t, s, "partial") // commits into the first segment
	current := mustCursor(t, s, "current") // commits everything
	recs := appendAll(t, s, 0, 30, time.Unix(1e9, 0))
	if recs[29].pos.Segment == recs[0].pos.Segment {
		t.Fatal("want more than one segment before the bound bites")
	}
	mid := 0
	for recs[mid+1].pos.Segment == recs[0].pos.Segment {
		mid++
	}
	mid /= 2
	if err := partial.Commit(recs[mid].end); err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if err := current.Commit(recs[i].end); err != nil {
			t.Fatal(err)
		}
	}
	for i := 30; i < 330; i++ { // current keeps up
		recs = append(recs, appendAll(t, s, i, 1, time.Unix(1e9, 0))...)
		if err := current.Commit(recs[i].end); err != nil {
			t.Fatal(err)
		}
	}

	st := s.Stats()
	if st.Bytes > 20000 {
		t.Fatalf("spool holds %d bytes, over the bound", st.Bytes)
	}
	start := s.Start()
	var deleted, deletedAfterMid uint64
	for i, r := range recs {
		if r.pos.Segment < start.Segment {
			deleted += uint64(len(r.b.Samples))
			if i > mid {
				deletedAfterMid += uint64(len(r.b.Samples))
			}
		}
	}
	if deleted == 0 {
		t.Fatal("nothing deleted")
	}
	if got := behind.Drops(); got != (Drops{SpoolFull: deleted}) {
		t.Errorf("behind: drops %+v, want SpoolFull %d", got, deleted)
	}
	if got := partial.Drops(); got != (Drops{SpoolFull: deletedAfterMid}) {
		t.Errorf("partial: drops %+v, want SpoolFull %d", got, deletedAfterMid)
	}
	if got := current.Drops(); got != (Drops{}) {
		t.Errorf("current: drops %+v, want none", got)
	}
	if st.Datapoints+deleted != datapoints(recs) {
		t.Errorf("spool holds %d datapoints, deleted %d, appended %d", st.Datapoints, deleted, datapoints(recs))
	}
	// The cursors left behind now start at the oldest record, and read what is left.
	if behind.Position() != start {
		t.Errorf("behind at %v, want %v", behind.Position(), start)
	}
	got := readAll(t, behind.Iterator(behind.Position()))
	if len(got) == 0 || got[len(got)-1].end != recs[len(recs)-1].end {
		t.Fatal("iterator did not read to the end")
	}
	if d := behind.Drops(); d.SpoolFull != deleted || d.Corrupt != 0 || d.Expired != 0 {
		t.Fatalf("reading charged again: %+v", d)
	}
}

// An iterator holding a deleted segment open moves to the oldest live segment instead of
// reading the rest of the deleted file.
func TestIteratorOverDeletedSegment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, Options{Dir: dir, MaxBytes: 12000, SegmentBytes: 4000})
	c := mustCursor(t, s, "graphite")
	recs := appendAll(t, s, 0, 3, time.Unix(1e9, 0))
	it := c.Iterator(c.Position())
	defer it.Close()
	if _, err := it.next(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	first := recs[0].pos.Segment
	recs = append(recs, appendAll(t, s, 3, 100, time.Unix(1e9, 0))...)
	if s.Start().Segment == first {
		t.Fatal("first segment not deleted")
	}
	r, err := it.next(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Pos != s.Start() {
		t.Fatalf("after deletion read %v, want the oldest live record %v", r.Pos, s.Start())
	}
	var want uint64
	for _, r := range recs[1:] {
		if r.pos.Segment < s.Start().Segment {
			want += uint64(len(r.b.Samples))
		}
	}
	// The record read before deletion was not committed, so it is charged too.
	want += uint64(len(recs[0].b.Samples))
	if d := c.Drops(); d.SpoolFull != want {
		t.Fatalf("SpoolFull %d, want %d", d.SpoolFull, want)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{t: t0}
	dir := t.TempDir()
	const maxAge = 100 * time.Second
	// Records one second apart; about 10 to a segment.
	s := openSpool(t, Options{Dir: dir, MaxAge: maxAge, SegmentBytes: 3000, Now: clock.Now})
	c := mustCursor(t, s, "graphite")
	other := mustCursor(t, s, "other")
	recs := appendAll(t, s, 0, 60, t0)
	var expected func(cut time.Time, from Position) uint64 = func(cut time.Time, from Position) (n uint64) {
		for _, r := range recs {
			if r.b.Time.Before(cut) && !r.pos.Less(from) {
				n += uint64(len(r.b.Samples))
			}
		}
		return n
	}
	if err := other.Commit(recs[29].end); err != nil {
		t.Fatal(err)
	}
	// Records 0..24 expire: their segments (those whose newest record is among them) go
	// at the next append, the rest are skipped by an iterator.
	clock.Set(t0.Add(25*time.Second + maxAge))
	cut := clock.Now().Add(-maxAge)
	it := c.Iterator(c.Position())
	defer it.Close()
	got := readAll(t, it)
	if got[0].b.Time.Before(cut) || !got[0].pos.Less(recs[26].pos) {
		t.Fatalf("first record read is %v at %v, want record 25", got[0].b.Time, got[0].pos)
	}
	if d := c.Drops(); d != (Drops{Expired: expected(cut, Position{})}) {
		t.Fatalf("drops after reading %+v, want Expired %d", d, expected(cut, Position{}))
	}
	// Deleting the segments the iterator already charged charges nothing more.
	recs = append(recs, appendAll(t, s, 60, 1, t0.Add(125*time.Second))...)
	if s.Start().Segment == recs[0].pos.Segment {
		t.Fatal("no expired segment deleted")
	}
	if d := c.Drops(); d != (Drops{Expired: expected(cut, Position{})}) {
		t.Fatalf("drops after deletion %+v, want Expired %d", d, expected(cut, Position{}))
	}
	// The other cursor had passed everything that expired.
	if d := other.Drops(); d != (Drops{}) {
		t.Fatalf("other: drops %+v, want none", d)
	}
	// Much later, everything but the segment being written expires, and a cursor that
	// read nothing is charged at deletion for what it had not passed.
	clock.Set(t0.Add(1000 * time.Second))
	recs = append(recs, appendAll(t, s, 61, 1, t0.Add(1000*time.Second))...)
	if s.Stats().Segments != 1 {
		t.Fatalf("%d segments left, want 1", s.Stats().Segments)
	}
	var want uint64
	for _, r := range recs[30:] {
		if r.pos.Segment < s.Start().Segment {
			want += uint64(len(r.b.Samples))
		}
	}
	if d := other.Drops(); d.Expired != want {
		t.Fatalf("other: Expired %d, want %d", d.Expired, want)
	}
}

func TestPositionAt(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	s := openSpool(t, Options{Dir: t.TempDir(), SegmentBytes: 3000})
	recs := appendAll(t, s, 0, 50, t0) // record i at t0+i s
	tests := []struct {
		name string
		t    time.Time
		want Position
	}{
		{"before all", t0.Add(-time.Hour), s.Start()},
		{"first", t0, s.Start()},
		{"exact", t0.Add(17 * time.Second), recs[17].pos},
		{"between", t0.Add(17*time.Second + 1), recs[18].pos},
		{"last", t0.Add(49 * time.Second), recs[49].pos},
		{"after all", t0.Add(time.Hour), s.End()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.PositionAt(tt.t)
			if got != tt.want {
				t.Fatalf("PositionAt = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBacklog(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	s := openSpool(t, Options{Dir: t.TempDir(), SegmentBytes: 3000})
	c := mustCursor(t, s, "graphite")
	if n, oldest := c.Backlog(); n != 0 || !oldest.IsZero() {
		t.Fatalf("empty: %d, %v", n, oldest)
	}
	recs := appendAll(t, s, 0, 50, t0)
	check := func(name string, wantN uint64, wantT time.Time) {
		t.Helper()
		n, oldest := c.Backlog()
		if n != wantN || !oldest.Equal(wantT) {
			t.Errorf("%s: backlog %d, %v; want %d, %v", name, n, oldest, wantN, wantT)
		}
	}
	check("at the start", datapoints(recs), recs[0].b.Time)
	// At a segment start or at the last record of a segment it is exact.
	for i := 1; i < len(recs); i++ {
		if recs[i].pos.Segment != recs[i-1].pos.Segment {
			c.Commit(recs[i-1].pos)
			check("at a segment's last record", datapoints(recs[i-1:]), recs[i-1].b.Time)
			c.Commit(recs[i].pos)
			check("at a segment start", datapoints(recs[i:]), recs[i].b.Time)
		}
	}
	c.Commit(recs[49].pos)
	check("one record behind", uint64(len(recs[49].b.Samples)), recs[49].b.Time)
	c.Commit(recs[49].end)
	check("at the end", 0, time.Time{})
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	inUse := t.TempDir()
	openSpool(t, Options{Dir: inUse})
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no dir", Options{MaxBytes: 1}, "spool: no directory"},
		{"no bound", Options{Dir: t.TempDir()}, "spool: max bytes 0: must be positive"},
		{"dir is a file", Options{Dir: file, MaxBytes: 1}, "spool: mkdir " + file + ": not a directory"},
		{"in use", Options{Dir: inUse, MaxBytes: 1}, "spool: " + inUse + " is in use by another process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.o)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if err.Error() != tt.want {
				t.Fatalf("error %q, want %q", err, tt.want)
			}
		})
	}
}

// Stray files do not stop Open: foreign names are ignored, an interrupted cursor save
// is removed, a directory with a segment's name is passed over.
func TestOpenStrayFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{"notes.txt", "zz.seg", "cursor.x.tmp", "cursor.bad name"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, segmentName(7)), 0o750); err != nil {
		t.Fatal(err)
	}
	s := openSpool(t, Options{Dir: dir})
	if _, err := os.Stat(filepath.Join(dir, "cursor.x.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("interrupted cursor save left: %v", err)
	}
	// New segments are numbered after every segment name seen.
	if s.End().Segment != 8 {
		t.Fatalf("writing segment %d, want 8", s.End().Segment)
	}
	recs := appendAll(t, s, 0, 3, time.Unix(1e9, 0))
	checkSame(t, readAll(t, mustCursor(t, s, "a").Iterator(s.Start())), recs)
	if _, err := s.Cursor("bad name"); err == nil {
		t.Fatal("cursor name with a space accepted")
	}
}

// Cursor files are loaded at Open, so data deleted before the exporter asks for its
// cursor is still charged to it.
func TestDropsBeforeCursorCall(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := Options{Dir: dir, MaxBytes: 12000, SegmentBytes: 4000}
	s := openSpool(t, o)
	mustCursor(t, s, "graphite")
	s.Close()
	s = openSpool(t, o)
	recs := appendAll(t, s, 0, 100, time.Unix(1e9, 0))
	var deleted uint64
	for _, r := range recs {
		if r.pos.Segment < s.Start().Segment {
			deleted += uint64(len(r.b.Samples))
		}
	}
	if got := mustCursor(t, s, "graphite").Drops(); deleted == 0 || got != (Drops{SpoolFull: deleted}) {
		t.Fatalf("drops %+v, want SpoolFull %d", got, deleted)
	}
}

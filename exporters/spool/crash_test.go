package spool

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A crash mid-write leaves the last record torn at any byte. Open must truncate it,
// keep every earlier record, count the torn bytes, and charge the torn record's
// datapoints when its header survived.
func TestTornTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, Options{Dir: dir})
	mustCursor(t, s, "graphite")
	recs := appendAll(t, s, 0, 8, time.Unix(1e9, 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	segFile := segmentName(last.pos.Segment)
	seg, err := os.ReadFile(filepath.Join(dir, segFile))
	if err != nil {
		t.Fatal(err)
	}
	cursorFile, err := os.ReadFile(filepath.Join(dir, "cursor.graphite"))
	if err != nil {
		t.Fatal(err)
	}
	for cut := last.pos.Offset; cut < last.end.Offset; cut++ {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, segFile), seg[:cut], 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "cursor.graphite"), cursorFile, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Options{Dir: d, MaxBytes: 1 << 30})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		c := mustCursor(t, s, "graphite")
		torn := uint64(cut - last.pos.Offset)
		var wantCorrupt uint64
		if torn >= headerSize {
			wantCorrupt = uint64(len(last.b.Samples))
		}
		if st := s.Stats(); st.CorruptBytes != torn || st.Records != uint64(len(recs)-1) {
			t.Fatalf("cut at %d: stats %+v, want %d corrupt bytes", cut, st, torn)
		}
		if got := c.Drops(); got != (Drops{Corrupt: wantCorrupt}) {
			t.Fatalf("cut at %d: drops %+v, want Corrupt %d", cut, got, wantCorrupt)
		}
		if s.End() != last.pos {
			t.Fatalf("cut at %d: end %v, want the torn record's start %v", cut, s.End(), last.pos)
		}
		checkSame(t, readAll(t, c.Iterator(c.Position())), recs[:len(recs)-1])
		// Appends continue after the last whole record.
		more := appendAll(t, s, 100, 1, time.Unix(2e9, 0))
		checkSame(t, readAll(t, c.Iterator(last.pos)), more)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Damage in the middle: a damaged header costs its record's bytes (counted once, at
// Open), a damaged payload its record's datapoints (charged once per cursor); every other
// record is read.
func TestBitFlip(t *testing.T) {
	t.Parallel()
	const headerRec, payloadRec = 3, 6
	tests := []struct {
		name       string
		headerByte int // offset in record headerRec's header
		payloadPos int // in record payloadRec's payload: 0 first, 1 middle, 2 last
	}{
		{"magic", 0, 0},
		{"length", 5, 1},
		{"datapoints", 8, 2},
		{"time", 15, 0},
		{"payload crc", 21, 1},
		{"header crc", 27, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o := Options{Dir: dir, SegmentBytes: 2500}
			s := openSpool(t, o)
			mustCursor(t, s, "graphite")
			recs := appendAll(t, s, 0, 12, time.Unix(1e9, 0))
			if recs[0].pos.Segment == recs[11].pos.Segment {
				t.Fatal("want several segments")
			}
			s.Close()

			flip := func(r spooled, off int64) {
				path := filepath.Join(dir, segmentName(r.pos.Segment))
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				b[r.pos.Offset+off] ^= 0x10
				if err := os.WriteFile(path, b, 0o640); err != nil {
					t.Fatal(err)
				}
			}
			flip(recs[headerRec], int64(tt.headerByte))
			pr := recs[payloadRec]
			plen := pr.end.Offset - pr.pos.Offset - headerSize
			flip(pr, headerSize+[]int64{0, plen / 2, plen - 1}[tt.payloadPos])

			s = openSpool(t, o)
			damaged := uint64(recs[headerRec].end.Offset - recs[headerRec].pos.Offset)
			if st := s.Stats(); st.CorruptBytes != damaged {
				t.Fatalf("corrupt bytes %d, want %d", st.CorruptBytes, damaged)
			}
			var want []spooled
			for i, r := range recs {
				if i != headerRec && i != payloadRec {
					want = append(want, r)
				}
			}
			c := mustCursor(t, s, "graphite")
			wantDrops := Drops{Corrupt: uint64(len(pr.b.Samples))}
			for range 2 { // reading again charges nothing more
				checkSame(t, readAll(t, c.Iterator(c.Position())), want)
				if got := c.Drops(); got != wantDrops {
					t.Fatalf("drops %+v, want %+v", got, wantDrops)
				}
				if st := s.Stats(); st.CorruptBytes != damaged {
					t.Fatalf("corrupt bytes %d after reading, want %d", st.CorruptBytes, damaged)
				}
			}
			// Another exporter is charged on its own.
			other := mustCursor(t, s, "other")
			checkSame(t, readAll(t, other.Iterator(s.Start())), want)
			if got := other.Drops(); got != (Drops{}) {
				t.Fatalf("other, created at the end, charged for records before it: %+v", got)
			}
			// A record the cursor already passed is not charged when read again.
			if err := c.Commit(s.End()); err != nil {
				t.Fatal(err)
			}
			readAll(t, c.Iterator(s.Start()))
			if got := c.Drops(); got != wantDrops {
				t.Fatalf("drops %+v after replay, want %+v", got, wantDrops)
			}
		})
	}
}

// FuzzSegment opens a spool whose only segment holds arbitrary bytes and reads it all:
// Open must succeed, reading must end, and what is read must lie within the spool.
func FuzzSegment(f *testing.F) {
	seed := f.TempDir()
	s, err := Open(Options{Dir: seed, MaxBytes: 1 << 30})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 4 {
		if err := s.Append(testBatch(i, time.Unix(int64(i), 0))); err != nil {
			f.Fatal(err)
		}
	}
	s.Close()
	good, err := os.ReadFile(filepath.Join(seed, segmentName(0)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-7])
	f.Add(append(append([]byte("garbage"), good...), good[3:40]...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(0)), data, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cursor.a"), formatCursor(Position{}), 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Options{Dir: dir, MaxBytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st := s.Stats()
		if st.Bytes > int64(len(data)) || st.CorruptBytes > uint64(len(data)) {
			t.Fatalf("stats %+v for %d bytes", st, len(data))
		}
		c := mustCursor(t, s, "a")
		atOpen := c.Drops() // a torn tail, no longer in the spool
		recs := readAll(t, c.Iterator(s.Start()))
		if uint64(len(recs)) > st.Records {
			t.Fatalf("read %d records, Open found %d", len(recs), st.Records)
		}
		end := s.End()
		var dp uint64
		for _, r := range recs {
			if end.Less(r.end) || !r.pos.Less(r.end) {
				t.Fatalf("record %v-%v outside the spool ending at %v", r.pos, r.end, end)
			}
			dp += uint64(len(r.b.Samples))
		}
		if d := c.Drops(); dp+d.Corrupt-atOpen.Corrupt > st.Datapoints {
			t.Fatalf("read %d datapoints and charged %d, Open counted %d", dp, d.Corrupt-atOpen.Corrupt, st.Datapoints)
		}
		if s.Stats().CorruptBytes != st.CorruptBytes {
			t.Fatalf("reading counted damage Open had counted: %d then %d", st.CorruptBytes, s.Stats().CorruptBytes)
		}
	})
}

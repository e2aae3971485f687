package spool

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type nextResult struct {
	pos Position
	err error
}

// startNext calls it.Next(ctx) in a goroutine and returns where its result will arrive.
func startNext(ctx context.Context, it *Iterator) <-chan nextResult {
	out := make(chan nextResult, 1)
	go func() {
		r, err := it.Next(ctx)
		var res nextResult
		res.err = err
		if r != nil {
			res.pos = r.Pos
		}
		out <- res
	}()
	return out
}

// Next at the end blocks until Append, and Append wakes it at once: in a synctest bubble
// the fake clock would have to move for a polling reader to see the record.
func TestNextBlocksUntilAppend(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := openSpool(t, Options{Dir: t.TempDir()})
		c := mustCursor(t, s, "graphite")
		it := c.Iterator(c.Position())
		defer it.Close()
		for i := range 3 {
			at := s.End()
			res := startNext(t.Context(), it)
			synctest.Wait()
			select {
			case r := <-res:
				t.Fatalf("Next returned %+v before the append", r)
			default:
			}
			before := time.Now()
			if err := s.Append(testBatch(i, before)); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			select {
			case r := <-res:
				if r.err != nil || r.pos != at {
					t.Fatalf("Next = %+v, want the record at %v", r, at)
				}
			default:
				t.Fatal("Next still blocked after the append")
			}
			if waited := time.Since(before); waited != 0 {
				t.Fatalf("woke after %v of (fake) time: polling", waited)
			}
		}
	})
}

func TestNextUnblocks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		unblock func(s *Spool, cancel context.CancelFunc)
		want    error
	}{
		{"context cancelled", func(_ *Spool, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"spool closed", func(s *Spool, _ context.CancelFunc) { s.Close() }, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := openSpool(t, Options{Dir: t.TempDir()})
				c := mustCursor(t, s, "graphite")
				it := c.Iterator(c.Position())
				defer it.Close()
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				res := startNext(ctx, it)
				synctest.Wait()
				tt.unblock(s, cancel)
				synctest.Wait()
				select {
				case r := <-res:
					if !errors.Is(r.err, tt.want) {
						t.Fatalf("Next error %v, want %v", r.err, tt.want)
					}
				default:
					t.Fatal("Next still blocked")
				}
			})
		})
	}
}

// Commits are saved at most once a second, the latest winning.
func TestCommitThrottled(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		s := openSpool(t, Options{Dir: dir})
		c := mustCursor(t, s, "graphite") // saved now
		recs := appendAll(t, s, 0, 3, time.Now())
		saved := func() Position {
			b, err := os.ReadFile(filepath.Join(dir, "cursor.graphite"))
			if err != nil {
				t.Fatal(err)
			}
			p, err := parseCursor(b)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		created := saved()
		for _, r := range recs {
			if err := c.Commit(r.end); err != nil {
				t.Fatal(err)
			}
		}
		if got := saved(); got != created {
			t.Fatalf("saved %v within a second of the last save", got)
		}
		time.Sleep(flushInterval)
		synctest.Wait()
		if got := saved(); got != recs[2].end {
			t.Fatalf("saved %v after a second, want the latest commit %v", got, recs[2].end)
		}
	})
}

// Append, two exporters' iterators, commits and deletions all at once, for the race
// detector; each iterator must see records in order, intact.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	s := openSpool(t, Options{Dir: t.TempDir(), MaxBytes: 40000, SegmentBytes: 5000})
	const n = 400
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, name := range []string{"graphite", "influx"} {
		c := mustCursor(t, s, name)
		for _, from := range []Position{c.Position(), s.Start()} {
			it := c.Iterator(from)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer it.Close()
				last := -1
				for last < n-1 {
					r, err := it.Next(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					i := int(math.Round(r.Batch.Samples[0].Value * 100))
					if i <= last {
						t.Errorf("%s: record %d after %d", name, i, last)
						return
					}
					if diff := sameBatch(testBatch(i, r.Batch.Time), &r.Batch); diff != "" {
						t.Errorf("%s: record %d: %s", name, i, diff)
						return
					}
					last = i
					c.Commit(r.End)
					c.Backlog()
					c.Drops()
				}
			}()
		}
	}
	for i := range n {
		if err := s.Append(testBatch(i, time.Unix(int64(i), 0))); err != nil {
			t.Fatal(err)
		}
		s.Stats()
	}
	wg.Wait()
}

package feed

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/spool"
)

func openSpool(t *testing.T, ticks, samples int) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), MaxBytes: 64 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	for i := range ticks {
		b := &metric.Batch{Time: time.Unix(1700000000+int64(i)*10, 0)}
		for j := range samples {
			b.Samples = append(b.Samples, metric.Sample{Collector: "c", Field: "f" + strconv.Itoa(j), Value: float64(i)})
		}
		if err := sp.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	return sp
}

// encodeTimes writes one line per batch: its time and sample count.
func encodeTimes(dst []byte, b *metric.Batch) ([]byte, uint64) {
	dst = strconv.AppendInt(dst, b.Time.Unix(), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(len(b.Samples)), 10)
	return append(dst, '\n'), uint64(len(b.Samples))
}

// TestBacklogStopsAndPaces: the backlog ends where it was told to, in order, no faster
// than the rate, and the chunks say where to commit.
func TestBacklogStopsAndPaces(t *testing.T) {
	t.Parallel()
	const ticks, samples, rate = 6, 100, 1000 // 600 datapoints at 1,000/s: the last goes after 0.5 s
	sp := openSpool(t, ticks, samples)
	c, err := sp.Cursor("test")
	if err != nil {
		t.Fatal(err)
	}
	stop := sp.End()
	// One more record after stop: the backlog must not read it.
	if err := sp.Append(&metric.Batch{Time: time.Unix(1800000000, 0), Samples: []metric.Sample{{Collector: "c", Field: "f"}}}); err != nil {
		t.Fatal(err)
	}
	p := &Producer{Log: slog.New(slog.DiscardHandler), Encode: encodeTimes, Rate: rate}
	out := make(chan *Chunk)
	free := make(chan []byte, 1)
	start := time.Now()
	go p.Run(context.Background(), c.Iterator(sp.Start()), &stop, out, free)
	var got []*Chunk
	for ch := range out {
		got = append(got, ch)
	}
	took := time.Since(start)
	if len(got) != ticks {
		t.Fatalf("%d chunks, want %d", len(got), ticks)
	}
	for i, ch := range got {
		if want := strconv.Itoa(1700000000+i*10) + " 100\n"; string(ch.Data) != want || ch.Count != samples || !ch.Backlog {
			t.Errorf("chunk %d = %q count %d backlog %v, want %q 100 true", i, ch.Data, ch.Count, ch.Backlog, want)
		}
	}
	if got[ticks-1].End != stop {
		t.Errorf("the last chunk ends at %v, want %v", got[ticks-1].End, stop)
	}
	// The first chunk goes at once; each one after waits for the one before it.
	if floor := time.Duration((ticks - 1) * samples * int(time.Second) / rate); took < floor {
		t.Errorf("backlog took %s, faster than the rate allows (%s)", took, floor)
	}
}

// TestLiveWaitsAndStops: live reading waits for appends and ends with ctx, closing out.
func TestLiveWaitsAndStops(t *testing.T) {
	t.Parallel()
	sp := openSpool(t, 1, 1)
	c, err := sp.Cursor("test")
	if err != nil {
		t.Fatal(err)
	}
	p := &Producer{Log: slog.New(slog.DiscardHandler), Encode: encodeTimes, Rate: 1} // live is never paced
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan *Chunk)
	go p.Run(ctx, c.Iterator(sp.End()), nil, out, make(chan []byte))
	for i := range 3 {
		b := &metric.Batch{Time: time.Unix(1800000000+int64(i), 0), Samples: make([]metric.Sample, 50)}
		if err := sp.Append(b); err != nil {
			t.Fatal(err)
		}
		ch := <-out
		if want := strconv.Itoa(1800000000+i) + " 50\n"; string(ch.Data) != want || ch.Backlog || ch.End != sp.End() {
			t.Errorf("live chunk %d = %q backlog %v end %v, want %q false %v", i, ch.Data, ch.Backlog, ch.End, want, sp.End())
		}
	}
	cancel()
	if _, ok := <-out; ok {
		t.Error("out not closed after ctx ended")
	}
}

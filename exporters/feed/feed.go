// Package feed reads an exporter's spool records and hands them over encoded for the wire:
// live records as they are appended, and a backlog (from the exporter's cursor up to where
// live reading began) behind them at a bounded pace, so a recovering endpoint is not
// flattened. Each exporter runs one Producer per source and decides itself what goes
// first and when a record counts as delivered.
package feed

import (
	"context"
	"log/slog"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/spool"
)

// Chunk is one spool record encoded for the wire.
type Chunk struct {
	// Data is the record in the exporter's wire format.
	Data []byte
	// Start is the record's position, End the position to commit once Data is delivered.
	Start, End spool.Position
	// Count is the number of datapoints in Data.
	Count uint64
	// Time is the record's tick time.
	Time time.Time
	// Backlog says the chunk came from the backlog, not from live reading.
	Backlog bool
}

// EncodeFunc appends b to dst in an exporter's wire format and returns the result with
// the number of datapoints written. It counts what it leaves out itself.
type EncodeFunc func(dst []byte, b *metric.Batch) ([]byte, uint64)

// Producer reads records from the spool and encodes them into Chunks.
type Producer struct {
	Log    *slog.Logger
	Encode EncodeFunc
	// Rate paces the backlog, in datapoints per second; 0 means unpaced. Live reading is
	// never paced.
	Rate float64
}

// Run reads records from it, encodes them and hands them over on out, until ctx ends
// or, for the backlog (stop not nil), the read position reaches stop. Backlog chunks
// are paced to Rate. Buffers come back through free, so memory stays bounded by a few
// records whatever the backlog. Run closes it and out when it returns.
func (p *Producer) Run(ctx context.Context, it *spool.Iterator, stop *spool.Position, out chan<- *Chunk, free chan []byte) {
	defer it.Close()
	defer close(out)
	var next time.Time // pacing: when the next backlog chunk may go
	for {
		if stop != nil && !it.Pos().Less(*stop) {
			return
		}
		rec, err := it.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				p.Log.Error("reading the spool", "err", err)
			}
			return
		}
		var buf []byte
		select {
		case buf = <-free:
		default:
		}
		c := &Chunk{Start: rec.Pos, End: rec.End, Time: rec.Batch.Time, Backlog: stop != nil}
		c.Data, c.Count = p.Encode(buf[:0], &rec.Batch)
		if stop != nil && p.Rate > 0 {
			now := time.Now()
			if next.After(now) {
				t := time.NewTimer(next.Sub(now))
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			if next.Before(now) {
				next = now
			}
			next = next.Add(time.Duration(float64(c.Count) / p.Rate * float64(time.Second)))
		}
		select {
		case out <- c:
		case <-ctx.Done():
			return
		}
	}
}

// Counts are an exporter's own counters, as Report shows them.
type Counts struct {
	Sent, Acked, Replayed, NonFinite, Reconnects uint64
	// Active is the index of the endpoint in use, -1 when none.
	Active int64
}

// Report adds the self-metrics every exporter has: its counts, and from its cursor the
// datapoints dropped by reason and the backlog.
func Report(s *metric.Sink, c Counts, cur *spool.Cursor, l ...metric.Label) {
	s.Counter("sent", float64(c.Sent), l...)
	s.Counter("acked", float64(c.Acked), l...)
	s.Counter("replayed", float64(c.Replayed), l...)
	d := cur.Drops()
	s.Counter("dropped_spool_full", float64(d.SpoolFull), l...)
	s.Counter("dropped_expired", float64(d.Expired), l...)
	s.Counter("dropped_corrupt", float64(d.Corrupt), l...)
	s.Counter("dropped_nonfinite", float64(c.NonFinite), l...)
	n, oldest := cur.Backlog()
	s.Gauge("backlog_datapoints", float64(n), l...)
	age := 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Seconds()
	}
	s.Gauge("backlog_age_seconds", age, l...)
	s.Counter("reconnects", float64(c.Reconnects), l...)
	s.Gauge("endpoint", float64(c.Active), l...)
}

package graphite

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/spool"
)

// TestSplayFor: a host always gets the same offset, inside the interval, and a fleet
// spreads over the whole interval.
func TestSplayFor(t *testing.T) {
	const interval, hosts, slots = 10 * time.Second, 10000, 10
	// Pinned: a new hash would move every host of a fleet at once on upgrade.
	if got, want := SplayFor("web-1", interval), 7264849439*time.Nanosecond; got != want {
		t.Errorf("web-1 got offset %s, want %s", got, want)
	}
	var perSlot [slots]int
	for i := range hosts {
		d := SplayFor(fmt.Sprintf("web-%d.dc1", i), interval)
		if d < 0 || d >= interval {
			t.Fatalf("offset %s outside [0, %s)", d, interval)
		}
		perSlot[d*slots/interval]++
	}
	// A uniform spread puts 1,000 hosts in each second; allow a wide margin.
	for i, n := range perSlot {
		if n < hosts/slots*8/10 || n > hosts/slots*12/10 {
			t.Errorf("second %d of the interval has %d of %d hosts: %v", i, n, hosts, perSlot)
		}
	}
}

// TestSplay: a live tick is sent no earlier than its tick time plus the splay.
func TestSplay(t *testing.T) {
	sink := newLineSink(t, true)
	e, sp := testExporter(t, sink.l.Addr().String())
	tick := batches(1, 10)[0]
	tick.Time = time.Now().Truncate(time.Second)
	// Half a second from now, whatever the fraction of the second now is.
	e.o.Splay = time.Since(tick.Time) + 500*time.Millisecond
	stop := run(e)
	defer stop()
	// Wait for the connection, so the tick below is live, not backlog.
	waitFor(t, "a connection", func() bool { return e.active.Load() == 0 })
	appendAll(t, sp, []*metric.Batch{tick})
	waitFor(t, "the tick", func() bool { return sink.count() == 10 })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if got := sink.first[strconv.FormatInt(tick.Time.Unix(), 10)]; got.Before(tick.Time.Add(e.o.Splay)) {
		t.Errorf("tick %s arrived at %s, before its splay of %s", tick.Time.Format(time.TimeOnly), got.Format(time.StampMilli), e.o.Splay)
	}
}

// TestLiveFirstAndPaced: a backlog replays at --graphite.replay-rate, and a live tick that
// comes in meanwhile goes out ahead of the rest of the backlog.
func TestLiveFirstAndPaced(t *testing.T) {
	const k, backlog, rate = 100, 40, 2000 // 4,000 datapoints at 2,000/s: about 2 s
	sink := newLineSink(t, true)
	e, sp := testExporter(t, sink.l.Addr().String())
	e.o.ReplayRate = rate
	appendAll(t, sp, batches(backlog, k))
	start := time.Now()
	stop := run(e)
	defer stop()
	waitFor(t, "the backlog started", func() bool { return e.active.Load() == 0 && e.sent.Load() > 0 })
	live := batches(1, k)[0]
	live.Time = time.Now().Truncate(time.Second)
	appendAll(t, sp, []*metric.Batch{live})
	waitFor(t, "everything", func() bool { return sink.count() == (backlog+1)*k })
	took := time.Since(start)

	sink.mu.Lock()
	defer sink.mu.Unlock()
	pos := -1
	for i, ts := range sink.order {
		if ts == strconv.FormatInt(live.Time.Unix(), 10) {
			pos = i
		}
	}
	// The live tick must not wait behind the backlog: it arrives in the first half.
	if pos < 0 || pos > backlog/2 {
		t.Errorf("the live tick arrived %d of %d ticks: it waited behind the backlog", pos+1, backlog+1)
	}
	// Pacing is a floor: the backlog cannot have gone faster than the rate allows, less
	// the first chunk, which goes at once.
	if floor := time.Duration(float64((backlog-1)*k) / rate * float64(time.Second)); took < floor {
		t.Errorf("%d datapoints replayed in %s, faster than %v/s allows (%s)", backlog*k, took, rate, floor)
	}
}

// TestShutdown: Run returns after ctx ends with the cursor saved: what the peer read is
// not sent again by the next run, and what it did not read is.
func TestShutdown(t *testing.T) {
	for _, read := range []bool{true, false} {
		t.Run(fmt.Sprintf("peer-reads=%v", read), func(t *testing.T) {
			sink := newLineSink(t, read)
			dir := t.TempDir()
			open := func() (*Exporter, *spool.Spool) {
				sp := openSpool(t, dir)
				return exporterOn(t, sp, sink.l.Addr().String()), sp
			}
			e, sp := open()
			appendAll(t, sp, batches(10, 100))
			stop := run(e)
			waitFor(t, "everything sent", func() bool { return e.sent.Load() == 1000 })
			if read {
				waitFor(t, "everything confirmed", func() bool { return e.acked.Load() == 1000 })
			}
			stop() // with a peer that does not read, this waits out DrainTimeout
			if err := sp.Close(); err != nil {
				t.Fatal(err)
			}

			e, sp = open()
			defer sp.Close()
			n, _ := e.cursor.Backlog()
			want := uint64(1000)
			if read {
				want = 0
			}
			if n != want {
				t.Errorf("after a restart the backlog is %d datapoints, want %d", n, want)
			}
		})
	}
}

// TestReport: the self-metrics say what happened, by name.
func TestReport(t *testing.T) {
	sink := newLineSink(t, true)
	e, sp := testExporter(t, sink.l.Addr().String())
	tick := batches(3, 10)
	tick[1].Samples[0].Value = 1 / zero() // non-finite: not sent, counted
	appendAll(t, sp, tick)
	stop := run(e)
	waitFor(t, "29 points", func() bool { return sink.count() == 29 })
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	s := metric.NewSink("graphite")
	e.Report(s)
	stop()
	got := map[string]float64{}
	for _, m := range s.Samples() {
		if len(m.Labels) != 1 || m.Labels[0] != (metric.Label{Key: "exporter", Value: "graphite"}) {
			t.Errorf("%s has labels %v, want exporter=graphite", m.Field, m.Labels)
		}
		got[m.Field] = m.Value
	}
	for field, want := range map[string]float64{
		"sent": 29, "acked": 29, "replayed": 29, "dropped_nonfinite": 1,
		"dropped_spool_full": 0, "dropped_expired": 0, "dropped_corrupt": 0,
		"backlog_datapoints": 0, "backlog_age_seconds": 0, "reconnects": 0, "endpoint": 0,
	} {
		if v, ok := got[field]; !ok || v != want {
			t.Errorf("%s = %v (reported: %v), want %v", field, v, ok, want)
		}
	}
}

func zero() float64 { return 0 }

// TestBacklogEndsInDamage: a backlog whose last record is damaged on disk while picket
// runs (skipped by the reader, charged as corrupt) still lets the cursor pass on to the
// live data confirmed after it.
func TestBacklogEndsInDamage(t *testing.T) {
	sink := newLineSink(t, true)
	dir := t.TempDir()
	sp := openSpool(t, dir)
	e := exporterOn(t, sp, sink.l.Addr().String()) // the cursor starts here
	appendAll(t, sp, batches(5, 10))
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments %v (%v)", segs, err)
	}
	// The last byte of the last segment is in the payload of its last record.
	f, err := os.OpenFile(segs[len(segs)-1], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, st.Size()-1); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, st.Size()-1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	stop := run(e)
	defer stop()
	waitFor(t, "the backlog's 4 good records", func() bool { return sink.count() == 40 })
	live := batches(1, 10)[0]
	live.Time = time.Now().Truncate(time.Second)
	appendAll(t, sp, []*metric.Batch{live})
	waitFor(t, "the live tick", func() bool { return sink.count() == 50 })
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	if d := e.cursor.Drops(); d.Corrupt != 10 {
		t.Errorf("corrupt %d, want the damaged record's 10", d.Corrupt)
	}
}

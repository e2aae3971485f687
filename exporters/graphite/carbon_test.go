package graphite

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/carbontest"
	"github.com/picket-agent/picket/exporters/faultproxy"
	"github.com/picket-agent/picket/exporters/spool"
)

// The tests in this file send through real faults to real carbon-caches and read back what
// reached their whisper files. Each checks delivery exactly (see rig.check): every
// datapoint the spool holds, read back from the spool itself, is in whisper with its value
// on one carbon or another, and the carbons hold nothing else; nothing is counted dropped;
// the cursor is at the end; and the counters add up.

const (
	// carbonSeries is the number of series per tick: about 2.8 KB of plaintext, so that the
	// few KB a fresh connection takes in unread (see deliveryProbe) are a tick or two.
	carbonSeries = 50
	// carbonAckTimeout is short so that a peer that stopped reading fails within seconds.
	carbonAckTimeout = 2 * time.Second
	// carbonReplay is the replay window, in tick time, as long as the agent's default. Ticks
	// are fed several times faster than their timestamps advance, so it spans several
	// seconds of wall time: longer than carbon keeps points in its cache, and than it takes
	// to notice a peer that stopped reading.
	carbonReplay = 30 * time.Second
	// carbonReplayRate is the agent's default backlog pace, datapoints per second.
	carbonReplayRate = 50000
	// carbonWait bounds each wait for carbon to write what it was sent.
	carbonWait = 30 * time.Second
)

// rig is one exporter sending a spool of synthetic ticks to real carbons.
type rig struct {
	t       *testing.T
	e       *Exporter
	sp      *spool.Spool
	carbons []*carbontest.Carbon
	log     *sessionLog
	// base is the timestamp of tick 0. Ticks are a second apart and come faster than
	// that, so base is well in the past: whisper keeps nothing older than its retention,
	// and the exporter holds a tick from the future back until its time.
	base  time.Time
	ticks int
	stop  func()
}

// newRig makes an exporter to endpoints (most preferred first) that end up at carbons,
// with the timeouts short enough for a test; start runs it.
func newRig(t *testing.T, carbons []*carbontest.Carbon, endpoints ...string) *rig {
	t.Helper()
	e, sp := testExporter(t, endpoints...)
	e.o.AckTimeout = carbonAckTimeout
	e.o.BackoffMin, e.o.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
	e.o.ReplayWindow, e.o.ReplayRate = carbonReplay, carbonReplayRate
	r := &rig{
		t: t, e: e, sp: sp, carbons: carbons,
		base: time.Now().Truncate(time.Second).Add(-15 * time.Minute),
		log:  &sessionLog{e: e},
	}
	e.log = slog.New(r.log).With("exporter", e.o.Name)
	t.Cleanup(func() {
		if r.stop != nil {
			r.stop()
		}
		if t.Failed() {
			t.Logf("exporter log:\n%s", r.log)
		}
	})
	return r
}

// start runs the exporter until the test ends.
func (r *rig) start() { r.stop = run(r.e) }

// tick returns tick i: carbonSeries samples, each value unique to its series and tick.
func (r *rig) tick(i int) *metric.Batch {
	b := &metric.Batch{Time: r.base.Add(time.Duration(i) * time.Second)}
	for j := range carbonSeries {
		b.Samples = append(b.Samples, metric.Sample{
			Collector: "carbon", Labels: []metric.Label{{Key: "n", Value: strconv.Itoa(j)}},
			Field: "value", Value: float64(i)*1000 + float64(j) + 0.25, Kind: metric.Gauge,
		})
	}
	return b
}

// feed appends n ticks to the spool, one every every (all at once if zero).
func (r *rig) feed(n int, every time.Duration) {
	r.t.Helper()
	for k := range n {
		if k > 0 && every > 0 {
			time.Sleep(every)
		}
		if err := r.sp.Append(r.tick(r.ticks)); err != nil {
			r.t.Fatal(err)
		}
		r.ticks++
	}
}

// delivered reports whether the cursor is at the end of the spool.
func (r *rig) delivered() bool { return r.e.cursor.Position() == r.sp.End() }

// waitDelivered waits until the cursor is at the end of the spool.
func (r *rig) waitDelivered() {
	r.t.Helper()
	waitFor(r.t, "the cursor at the end of the spool", r.delivered)
}

// healthy starts the exporter and has it deliver a few ticks, so that the fault that
// follows meets an established connection.
func (r *rig) healthy() {
	r.t.Helper()
	r.start()
	r.feed(3, 0)
	r.waitDelivered()
}

// point is one datapoint as carbon keys it.
type point struct {
	series string
	ts     int64
}

// spooled is what a spool holds, read back from it: its records, and the datapoints of
// their lines as sent.
type spooled struct {
	records []spooledRecord
	points  map[point]float64
}

type spooledRecord struct {
	pos        spool.Position
	time       time.Time
	datapoints uint64
}

// readSpool reads every record of sp from its start, with a fresh cursor's iterator, and
// the datapoints of the lines encode makes of each.
func readSpool(t testing.TB, sp *spool.Spool, encode func(dst []byte, b *metric.Batch) []byte) *spooled {
	t.Helper()
	c, err := sp.Cursor("check")
	if err != nil {
		t.Fatal(err)
	}
	s := &spooled{points: map[point]float64{}}
	it := c.Iterator(sp.Start())
	defer it.Close()
	end := sp.End()
	var buf []byte
	for it.Pos().Less(end) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rec, err := it.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("reading the spool at %v (end %v): %v", it.Pos(), end, err)
		}
		buf = encode(buf[:0], &rec.Batch)
		r := spooledRecord{pos: rec.Pos, time: rec.Batch.Time}
		for l := range strings.Lines(string(buf)) {
			f := strings.Fields(l)
			if len(f) != 3 {
				t.Fatalf("encoded line %q", l)
			}
			v, err1 := strconv.ParseFloat(f[1], 64)
			ts, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("encoded line %q", l)
			}
			p := point{f[0], ts}
			if _, dup := s.points[p]; dup {
				t.Fatalf("the spool holds %v twice", p)
			}
			s.points[p] = v
			r.datapoints++
		}
		s.records = append(s.records, r)
	}
	return s
}

// bySeries returns the datapoints as carbontest.Expect takes them.
func (s *spooled) bySeries() map[string]map[int64]float64 {
	m := map[string]map[int64]float64{}
	for p, v := range s.points {
		if m[p.series] == nil {
			m[p.series] = map[int64]float64{}
		}
		m[p.series][p.ts] = v
	}
	return m
}

// datapoints returns the datapoints of the records from p on.
func (s *spooled) datapoints(from spool.Position) uint64 {
	var n uint64
	for _, r := range s.records {
		if !r.pos.Less(from) {
			n += r.datapoints
		}
	}
	return n
}

// check asserts exact delivery, once the test has stopped feeding and the faults are
// over. It waits for the cursor to reach the end of the spool and for every spooled
// datapoint to be in whisper on one of the carbons (which must hold nothing else), and
// checks that nothing was counted dropped, and that the counters add up:
//
//   - The session that finished the delivery sent each record from where it started to
//     the end once, and all were confirmed: sent and acked grew by the datapoints from
//     there. It started where the delivery contract says, at the cursor or up to the
//     replay window before it (from the oldest record not delivered yet).
//   - Over the test, acked counts every datapoint at least once, and what it counts more
//     than once was replayed: N ≤ acked ≤ N + replayed. It counts confirmations, so
//     a datapoint sent again after a failure and confirmed again counts twice.
//
// It returns when the cursor reached the end and when the datapoints were all in whisper.
func (r *rig) check() (delivered, stored time.Time) {
	t := r.t
	t.Helper()
	r.waitDelivered()
	delivered = time.Now()
	want := readSpool(t, r.sp, r.encode)
	n := uint64(len(want.points))
	if n != uint64(r.ticks*carbonSeries) {
		t.Fatalf("the spool holds %d datapoints, %d ticks of %d were appended", n, r.ticks, carbonSeries)
	}
	stored = delivered.Add(carbontest.Expect(t, carbonWait, want.bySeries(), r.carbons...))

	if d := r.e.cursor.Drops(); d != (spool.Drops{}) {
		t.Errorf("drops %+v, want none", d)
	}
	if n, oldest := r.e.cursor.Backlog(); n != 0 || !oldest.IsZero() {
		t.Errorf("backlog of %d datapoints from %v once delivered, want none", n, oldest)
	}
	sent, acked, replayed := r.e.sent.Load(), r.e.acked.Load(), r.e.replayed.Load()
	if acked < n || acked > n+replayed {
		t.Errorf("acked %d, want from the %d datapoints spooled to those plus the %d replayed", acked, n, replayed)
	}
	if nf := r.e.nonFinite.Load(); nf != 0 {
		t.Errorf("nonFinite %d, want 0", nf)
	}

	last, ok := r.log.last()
	if !ok {
		t.Fatal(`no "connected" log line: where the last session started is unknown`)
	}
	// The last session sent each record once and confirmed all it sent, starting at a
	// record at or before the cursor: at the cursor, or as far back as the replay window
	// took it (data confirmed within the window's wall-clock time, or ticks of the window
	// before the oldest unconfirmed one). A session to a peer that reads nothing (a hung
	// primary tried again after its backoff) confirms nothing and is not the one that
	// delivered.
	dSent, dAcked := sent-last.sent, acked-last.acked
	if dAcked == 0 && dSent > 0 {
		return delivered, stored
	}
	var starts []uint64
	for _, rec := range want.records {
		if !last.cursor.Less(rec.pos) {
			starts = append(starts, want.datapoints(rec.pos))
		}
	}
	if dSent != dAcked || !slices.Contains(starts, dAcked) {
		t.Errorf("last session (to %s from cursor %v): sent %d, acked %d; want both one of %v",
			last.endpoint, last.cursor, dSent, dAcked, starts)
	}
	return delivered, stored
}

// sessionLog is the exporter's log handler in these tests. It keeps the lines, to show
// when a test fails, and at each "connected" line, logged just before a session decides
// where to start, the exporter's cursor and counters.
type sessionLog struct {
	e        *Exporter
	mu       sync.Mutex
	buf      bytes.Buffer
	connects []connectState
}

type connectState struct {
	at          time.Time
	endpoint    string
	cursor      spool.Position
	sent, acked uint64
}

func (h *sessionLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *sessionLog) Handle(_ context.Context, rec slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(&h.buf, "%s %s %s", rec.Time.Format("15:04:05.000"), rec.Level, rec.Message)
	var endpoint string
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&h.buf, " %s=%v", a.Key, a.Value)
		if a.Key == "endpoint" {
			endpoint = a.Value.String()
		}
		return true
	})
	h.buf.WriteByte('\n')
	if rec.Message == "connected" {
		h.connects = append(h.connects, connectState{
			at: time.Now(), endpoint: endpoint, cursor: h.e.cursor.Position(), sent: h.e.sent.Load(), acked: h.e.acked.Load(),
		})
	}
	return nil
}

func (h *sessionLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *sessionLog) WithGroup(string) slog.Handler      { return h }

func (h *sessionLog) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.String()
}

func (h *sessionLog) last() (connectState, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.connects) == 0 {
		return connectState{}, false
	}
	return h.connects[len(h.connects)-1], true
}

func (h *sessionLog) sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.connects)
}

// faultCase is one scenario of TestCarbonFaults.
type faultCase struct {
	name string
	// carbons is how many carbon-caches there are. Each gets a faultproxy in front, and the
	// proxies are the exporter's endpoints, in order; with direct, the carbons are; with
	// relay, one carbon-c-relay in front of them all (a failover cluster) is.
	carbons       int
	direct, relay bool
	// primary configures the first carbon.
	primary []carbontest.Option
	// fault starts the exporter, feeds ticks, breaks things and mends them (or leaves them
	// broken, when other endpoints should take over); check follows. Recovery is measured
	// from its return.
	fault func(r *rig, px []*faultproxy.Proxy, relay *carbontest.Relay)
}

// Faults that last are made for longer than carbonAckTimeout, with a tick fed every
// feedEvery meanwhile.
const (
	faultTicks = 15
	feedEvery  = 200 * time.Millisecond
)

// bulkTicks is the size of a bulk of ticks, about 1.1 MB of plaintext: it takes carbon a
// few hundred milliseconds to read.
const bulkTicks = 400

// midStream returns a fault that appends a bulk of ticks and calls fault once a third of
// their bytes have gone through the proxy, while the rest is on its way. Should all have
// been delivered before fault came (the machine is busy), it tries again with another bulk.
func midStream(fault func(*faultproxy.Proxy)) func(*rig, []*faultproxy.Proxy, *carbontest.Relay) {
	return func(r *rig, px []*faultproxy.Proxy, _ *carbontest.Relay) {
		r.healthy()
		for attempt := 1; ; attempt++ {
			const lineBytes = 56
			third := px[0].Stats().ToTarget + bulkTicks*carbonSeries*lineBytes/3
			r.feed(bulkTicks, 0)
			waitFor(r.t, "a third of the bulk forwarded", func() bool { return px[0].Stats().ToTarget >= third })
			fault(px[0])
			if !r.delivered() {
				return
			}
			if attempt == 3 {
				r.t.Fatal("three times, all was delivered before the fault came")
			}
			r.t.Log("all was delivered before the fault came; again")
		}
	}
}

// lasting returns a fault that makes a healthy connection fail with fault while ticks come,
// waits until the exporter gave up on it, and ends the fault with Pass.
func lasting(fault func(*faultproxy.Proxy)) func(*rig, []*faultproxy.Proxy, *carbontest.Relay) {
	return func(r *rig, px []*faultproxy.Proxy, _ *carbontest.Relay) {
		r.healthy()
		fault(px[0])
		r.feed(faultTicks, feedEvery)
		waitFor(r.t, "a reconnect", func() bool { return r.e.reconnects.Load() > 0 })
		if r.delivered() {
			r.t.Error("all was confirmed while the peer read nothing")
		}
		px[0].Pass()
	}
}

func TestCarbonFaults(t *testing.T) {
	carbontest.Require(t, "carbon-cache")
	cases := []faultCase{
		{name: "FIN mid-stream", carbons: 1, fault: midStream((*faultproxy.Proxy).CloseFIN)},
		// The proxy cuts the first line of a bulk: the half line and a FIN go to carbon,
		// which must store nothing of it (Expect finds no stray series), and a reset to the
		// exporter.
		{name: "line cut in half", carbons: 1, fault: func(r *rig, px []*faultproxy.Proxy, _ *carbontest.Relay) {
			r.healthy()
			px[0].CutLine()
			r.feed(bulkTicks, 0)
			waitFor(r.t, "a line cut", func() bool { return px[0].Stats().Cuts == 1 })
		}},
		// A reset discards what the proxy read but had not passed on yet, as a carbon that
		// crashes loses what it read: the replay window brings it back. Ticks come as live
		// ones do, so the window covers the few the proxy holds. (Midway through a bulk of
		// 400 ticks, the proxy held hundreds more than the window: see "primary dead after
		// a backlog".)
		{name: "RST while ticks come", carbons: 1, fault: func(r *rig, px []*faultproxy.Proxy, _ *carbontest.Relay) {
			r.healthy()
			r.feed(faultTicks, feedEvery/4)
			px[0].CloseRST()
			r.feed(faultTicks, feedEvery/4)
		}},
		// The proxy accepts and stops reading: its window closes and stays closed.
		{name: "never read", carbons: 1, fault: lasting((*faultproxy.Proxy).StallRead)},
		{name: "never read, secondary takes over", carbons: 2,
			fault: func(r *rig, px []*faultproxy.Proxy, _ *carbontest.Relay) {
				r.healthy()
				px[0].StallRead() // for good
				r.feed(faultTicks, feedEvery)
			}},
		// Nothing comes back from the proxy, not even a TCP acknowledgement.
		{name: "black hole", carbons: 1, fault: lasting((*faultproxy.Proxy).BlackHole)},
		// A reader slower than the ticks come, but faster on average.
		{name: "slow reader", carbons: 1, fault: func(r *rig, px []*faultproxy.Proxy, _ *carbontest.Relay) {
			r.healthy()
			px[0].SlowRead(64 << 10)          // for good
			r.feed(faultTicks*2, feedEvery/2) // 28 KB/s, in 2.8 KB steps
		}},
		// The same reader meets a backlog: 280 KB of it, more than it reads in an ack
		// timeout.
		{name: "slow reader after an outage", carbons: 1,
			fault: func(r *rig, px []*faultproxy.Proxy, _ *carbontest.Relay) {
				r.healthy()
				px[0].Down()
				px[0].CloseFIN()
				r.feed(100, 0)
				px[0].SlowRead(64 << 10)
				px[0].Up()
			}},
		{name: "down at start", carbons: 1, fault: func(r *rig, px []*faultproxy.Proxy, _ *carbontest.Relay) {
			px[0].Down()
			r.start()
			r.feed(faultTicks, feedEvery)
			px[0].Up()
		}},
		// Connections are refused for faultTicks ticks: the one open ends with a FIN, as
		// when carbon stops.
		{name: "down for a while", carbons: 1, fault: func(r *rig, px []*faultproxy.Proxy, _ *carbontest.Relay) {
			r.healthy()
			px[0].Down()
			px[0].CloseFIN()
			r.feed(faultTicks, feedEvery)
			px[0].Up()
		}},
		{name: "primary dead, then back", carbons: 2, direct: true,
			fault: func(r *rig, _ []*faultproxy.Proxy, _ *carbontest.Relay) {
				// Recent ticks, as live ones are: the replay window, counted back from now
				// once all is confirmed, covers what the primary confirmed last. None may be
				// from the future, or the exporter would hold it back until its time.
				r.base = time.Now().Truncate(time.Second).Add(-25 * time.Second)
				r.start()
				r.feed(3, feedEvery/2)
				// Killed, the primary loses the points in its cache: the replay window must
				// bring them to the secondary.
				r.carbons[0].Kill()
				r.feed(faultTicks, feedEvery)
				waitFor(r.t, "the secondary in use", func() bool { return r.e.active.Load() == 1 })
				r.carbons[0].Restart()
				at := time.Now()
				waitFor(r.t, "the primary in use again", func() bool { return r.e.active.Load() == 0 })
				r.t.Logf("back on the primary %v after it restarted", time.Since(at).Round(time.Millisecond))
				// Traffic is back: the ticks from now on land on the primary, and only there.
				from := r.ticks
				r.feed(5, feedEvery/2)
				r.onlyOn(0, from)
			}},
		// The primary dies just after confirming a backlog, which is still in its cache: its
		// writer is slowed down to one series a second.
		{name: "primary dead after a backlog", carbons: 2, direct: true,
			primary: []carbontest.Option{carbontest.WithSetting("MAX_UPDATES_PER_SECOND", "1")},
			fault: func(r *rig, _ []*faultproxy.Proxy, _ *carbontest.Relay) {
				r.feed(100, 0)
				r.start()
				r.waitDelivered()
				r.carbons[0].Kill()
				r.feed(faultTicks, feedEvery)
			}},
		// The exporter's peer is a relay that fails over between two carbons. The relay reads
		// everything, so the exporter's confirmation ends there: points the relay loses are
		// beyond its sight. carbon-c-relay loses two kinds when a backend dies, which the
		// test keeps out of the way: the points in the dead carbon's cache (so the carbon
		// is killed once it has written all it got), and the lines of the relay's first
		// write after the death, which goes into a socket whose peer is gone and is only
		// answered by a reset (so a line of the test's, a repeat of a point already stored,
		// goes first).
		{name: "relay fails over", carbons: 2, relay: true,
			fault: func(r *rig, _ []*faultproxy.Proxy, relay *carbontest.Relay) {
				r.healthy()
				r.feed(5, feedEvery/2)
				r.waitDelivered()
				carbontest.Expect(r.t, carbonWait, readSpool(r.t, r.sp, r.encode).bySeries(), r.carbons[0])
				primary := r.carbons[0].Addr()
				r.carbons[0].Kill()
				at := time.Now()
				canary, _ := r.e.encode(nil, r.tick(0))
				canary = canary[:bytes.IndexByte(canary, '\n')+1]
				for !strings.Contains(relay.Log(), "failed to write() to "+primary) {
					if time.Since(at) > carbonWait {
						r.t.Fatalf("the relay did not notice %s died", primary)
					}
					c, err := net.Dial("tcp", relay.Addr())
					if err != nil {
						r.t.Fatal(err)
					}
					c.Write(canary)
					c.Close()
					time.Sleep(50 * time.Millisecond)
				}
				r.t.Logf("the relay noticed the death %v after it", time.Since(at).Round(time.Millisecond))
				from := r.ticks
				r.feed(faultTicks, feedEvery)
				r.onlyOn(1, from)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var carbons []*carbontest.Carbon
			var proxies []*faultproxy.Proxy
			var addrs []string
			for i := range tc.carbons {
				opts := []carbontest.Option{carbontest.WithRetentions("1s:1h")}
				if i == 0 {
					opts = append(opts, tc.primary...)
				}
				c := carbontest.Start(t, opts...)
				carbons = append(carbons, c)
				switch {
				case tc.relay:
				case tc.direct:
					addrs = append(addrs, c.Addr())
				default:
					p := faultproxy.New(t, c.Addr())
					proxies, addrs = append(proxies, p), append(addrs, p.Addr())
				}
			}
			var relay *carbontest.Relay
			if tc.relay {
				backends := make([]string, len(carbons))
				for i, c := range carbons {
					backends[i] = c.Addr()
				}
				relay = carbontest.StartRelay(t, backends...)
				addrs = []string{relay.Addr()}
			}
			r := newRig(t, carbons, addrs...)
			tc.fault(r, proxies, relay)
			end := time.Now()
			delivered, stored := r.check()
			t.Logf("all confirmed %v after the fault's end (or the last tick), all in whisper %v after; %d ticks, %d sessions, sent %d, acked %d, replayed %d",
				delivered.Sub(end).Round(time.Millisecond), stored.Sub(end).Round(time.Millisecond),
				r.ticks, r.log.sessions(), r.e.sent.Load(), r.e.acked.Load(), r.e.replayed.Load())
		})
	}
}

// encode is e.encode without the count.
func (r *rig) encode(dst []byte, b *metric.Batch) []byte {
	dst, _ = r.e.encode(dst, b)
	return dst
}

// onlyOn waits until the datapoints of the ticks from tick from on are in carbon idx's
// whisper, and checks that no other carbon has any of them.
func (r *rig) onlyOn(idx, from int) {
	r.t.Helper()
	want := map[string]map[int64]float64{}
	for i := from; i < r.ticks; i++ {
		for l := range strings.Lines(string(r.encode(nil, r.tick(i)))) {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[1], 64)
			ts, _ := strconv.ParseInt(f[2], 10, 64)
			if want[f[0]] == nil {
				want[f[0]] = map[int64]float64{}
			}
			want[f[0]][ts] = v
		}
	}
	// Expect on carbon idx alone would object to the points it had before.
	for deadline := time.Now().Add(carbonWait); ; {
		missing := 0
		for s, pts := range want {
			got := r.carbons[idx].Points(r.t, s)
			for ts, v := range pts {
				if g, ok := got[ts]; !ok || g != v {
					missing++
				}
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d datapoints of ticks %d-%d not on carbon %d after %v", missing, from, r.ticks-1, idx, carbonWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for j, c := range r.carbons {
		if j == idx {
			continue
		}
		for s, pts := range want {
			got := c.Points(r.t, s)
			for ts := range pts {
				if _, ok := got[ts]; ok {
					r.t.Errorf("%s@%d is on carbon %d, want it on carbon %d only", s, ts, j, idx)
				}
			}
		}
	}
}

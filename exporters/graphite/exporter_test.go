package graphite

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/spool"
)

// lineSink stands in for carbon: it reads plaintext lines on 127.0.0.1 and keeps the last
// value per series and timestamp, as carbon does, and how often each arrived. A sink that
// does not read accepts connections and leaves the bytes in its receive buffer, like a hung
// carbon.
type lineSink struct {
	l      net.Listener
	mu     sync.Mutex
	points map[string]string // "series ts" → value
	seen   map[string]int    // "series ts" → times received
	// first is when each timestamp's first line arrived, order the timestamps so.
	first map[string]time.Time
	order []string
	conns int
	open  map[net.Conn]struct{}
}

func newLineSink(t *testing.T, read bool) *lineSink {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveLines(t, l, read)
}

// serveLines runs a lineSink on l, which the test's cleanup closes.
func serveLines(t *testing.T, l net.Listener, read bool) *lineSink {
	s := &lineSink{l: l, points: map[string]string{}, seen: map[string]int{}, first: map[string]time.Time{}, open: map[net.Conn]struct{}{}}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.open[c] = struct{}{}
			s.mu.Unlock()
			t.Cleanup(func() { c.Close() })
			if !read {
				continue
			}
			go func() {
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					f := strings.Fields(sc.Text())
					if len(f) != 3 {
						continue
					}
					s.mu.Lock()
					s.points[f[0]+" "+f[2]] = f[1]
					s.seen[f[0]+" "+f[2]]++
					if _, ok := s.first[f[2]]; !ok {
						s.first[f[2]] = time.Now()
						s.order = append(s.order, f[2])
					}
					s.mu.Unlock()
				}
				s.mu.Lock()
				delete(s.open, c)
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

func (s *lineSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.points)
}

// kick closes the sink's open connections, as a carbon that restarts would.
func (s *lineSink) kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.open {
		c.Close()
	}
}

// batches makes n ticks of k samples each, ten seconds apart.
func batches(n, k int) []*metric.Batch {
	t0 := time.Unix(1700000000, 0)
	out := make([]*metric.Batch, n)
	for i := range out {
		b := &metric.Batch{Time: t0.Add(time.Duration(i) * 10 * time.Second)}
		for j := range k {
			b.Samples = append(b.Samples, metric.Sample{
				Collector: "test", Labels: []metric.Label{{Key: "n", Value: fmt.Sprint(j)}},
				Field: "value", Value: float64(i*k + j), Kind: metric.Counter,
			})
		}
		out[i] = b
	}
	return out
}

func testExporter(t testing.TB, endpoints ...string) (*Exporter, *spool.Spool) {
	t.Helper()
	sp := openSpool(t, t.TempDir())
	return exporterOn(t, sp, endpoints...), sp
}

// openSpool opens the spool in dir; the test's cleanup closes it.
func openSpool(t testing.TB, dir string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir, MaxBytes: 64 << 20, MaxAge: 100 * 365 * 24 * time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// exporterOn is an exporter named graphite reading sp, with short timeouts.
func exporterOn(t testing.TB, sp *spool.Spool, endpoints ...string) *Exporter {
	t.Helper()
	e, err := New(Options{
		Logger: slog.New(slog.DiscardHandler), Name: "graphite", Endpoints: endpoints,
		Prefix: "hosts", Host: "h", Spool: sp,
		DialTimeout: time.Second, WriteTimeout: time.Second, AckTimeout: 3 * time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, DrainTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run starts e and returns a function that stops it and waits for Run to return.
func run(e *Exporter) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		e.Run(ctx)
		close(done)
	}()
	return func() {
		cancel()
		<-done
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeliversAndCommits: every spooled datapoint arrives with its value and timestamp,
// and the cursor ends at the spool's end once the peer has read them.
func TestDeliversAndCommits(t *testing.T) {
	sink := newLineSink(t, true)
	e, sp := testExporter(t, sink.l.Addr().String())
	for _, b := range batches(20, 50) {
		if err := sp.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	stop := run(e)
	waitFor(t, "1000 points", func() bool { return sink.count() == 1000 })
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	stop()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if v := sink.points["hosts.h.test.7.value 1700000030"]; v != "157" {
		t.Errorf("point (test.7, tick 3) = %q, want 157", v)
	}
	if got := e.acked.Load(); got != 1000 {
		t.Errorf("acked %d, want 1000", got)
	}
}

// TestDeliversRelayed: relayed samples arrive under the relay's prefix, each at its own
// time, in whole seconds rounded down; picket's own samples of the same batch at its time.
func TestDeliversRelayed(t *testing.T) {
	sink := newLineSink(t, true)
	sp := openSpool(t, t.TempDir())
	e, err := New(Options{
		Logger: slog.New(slog.DiscardHandler), Name: "graphite", Endpoints: []string{sink.l.Addr().String()},
		Prefix: "hosts", Host: "h", RelayPrefix: "key", Spool: sp,
		DialTimeout: time.Second, WriteTimeout: time.Second, AckTimeout: 3 * time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, DrainTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1700000000, 0)
	b := &metric.Batch{Time: t0, Samples: []metric.Sample{
		{Collector: "load", Field: "load1", Value: 0.5},
		{Collector: "app.requests", Value: 17, Origin: metric.Graphite, Time: t0.Add(-20 * time.Second).UnixNano()},
		{Collector: "app.requests", Value: 18, Origin: metric.Graphite, Time: t0.Add(-10*time.Second + 999*time.Millisecond).UnixNano()},
		{Collector: "app.req", Labels: []metric.Label{{Key: "dc", Value: "eu"}}, Value: 3, Origin: metric.Graphite, Time: t0.UnixNano()},
		{Collector: "http", Labels: []metric.Label{{Key: "route", Value: "/api"}}, Field: "count", Value: 1 << 40, Origin: metric.InfluxInt, Time: t0.Add(1500 * time.Millisecond).UnixNano()},
		{Collector: "old", Field: "value", Value: 1, Origin: metric.InfluxFloat, Time: time.Unix(-2, 500).UnixNano()},
		{Collector: "late", Value: 2, Origin: metric.Graphite, Time: t0.Add(time.Hour).UnixNano()},
		{Collector: "nan", Value: math.NaN(), Origin: metric.Graphite, Time: t0.UnixNano()},
	}}
	if err := sp.Append(b); err != nil {
		t.Fatal(err)
	}
	stop := run(e)
	waitFor(t, "7 points", func() bool { return sink.count() == 7 })
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	stop()
	want := map[string]string{
		"hosts.h.load.load1 1700000000":        "0.5",
		"key.app.requests 1699999980":          "17",
		"key.app.requests 1699999990":          "18",
		"key.app.req;dc=eu 1700000000":         "3",
		"key.http.route._api.count 1700000001": "1099511627776",
		"key.old -2":                           "1",
		"key.late 1700003600":                  "2",
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if !maps.Equal(sink.points, want) {
		t.Errorf("received %v\nwant %v", sink.points, want)
	}
	if got := e.nonFinite.Load(); got != 1 {
		t.Errorf("%d non-finite counted, want 1", got)
	}
}

// TestStalledPeerFailsOver: a primary that accepts but never reads is detected by the
// missing quiet point, and everything goes to the secondary; nothing is confirmed while
// it sits unread in the stalled peer's buffer.
func TestStalledPeerFailsOver(t *testing.T) {
	stalled := newLineSink(t, false)
	good := newLineSink(t, true)
	e, sp := testExporter(t, stalled.l.Addr().String(), good.l.Addr().String())
	for _, b := range batches(10, 2000) {
		if err := sp.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	stop := run(e)
	defer stop()
	waitFor(t, "20000 points at the secondary", func() bool { return good.count() == 20000 })
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	if e.reconnects.Load() == 0 {
		t.Error("no reconnect counted: the stalled primary was never given up")
	}
	if e.acked.Load() != 20000 || e.sent.Load() <= e.acked.Load() {
		t.Errorf("sent %d acked %d: the bytes left unread in the stalled primary must not count as acknowledged", e.sent.Load(), e.acked.Load())
	}
}

// TestAppendLastLine: the nudge is always one whole line, the last one written.
func TestAppendLastLine(t *testing.T) {
	for _, tc := range []struct{ lines, want string }{
		{"", ""},
		{"a 1 10\n", "a 1 10\n"},
		{"a 1 10\nb 2 10\n", "b 2 10\n"},
		{"a 1 10\n\n", "\n"},
	} {
		if got := string(appendLastLine([]byte("x"), []byte(tc.lines))); got != "x"+tc.want {
			t.Errorf("appendLastLine(%q) = %q, want %q", tc.lines, got, "x"+tc.want)
		}
	}
}

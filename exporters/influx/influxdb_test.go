package influx

// Tests against a real InfluxDB 1.x (Debian's influxd, run by influxtest): what picket
// spooled is read back through the query API, point by point, with exact counts.

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/influxtest"
	"github.com/picket-agent/picket/exporters/spool"
)

// realWait bounds every wait for data to reach influxd.
const realWait = 60 * time.Second

// startInflux runs influxd with a database "picket".
func startInflux(t *testing.T, opts ...influxtest.Option) *influxtest.Server {
	t.Helper()
	s := influxtest.Start(t, opts...)
	s.CreateDatabase(t, "picket")
	return s
}

// realOptions are an exporter's options for a real influxd: database picket.
func realOptions(sp *spool.Spool, urls ...string) Options {
	o := testOptions(sp, urls...)
	o.Database = "picket"
	o.BackoffMax = 500 * time.Millisecond
	return o
}

// variedTick makes tick i of a varied batch: k samples over three measurements, with labels
// and values that exercise the float format (fractions, large, tiny, negative).
func variedTick(i, k int) *metric.Batch {
	b := &metric.Batch{Time: time.Unix(1700000000+int64(i)*10, 0)}
	for j := range k {
		s := metric.Sample{Collector: []string{"cpu", "net", "disk"}[j%3], Field: "value", Kind: metric.Counter}
		s.Labels = []metric.Label{{Key: "n", Value: fmt.Sprint(j)}}
		switch j % 5 {
		case 0:
			s.Value = float64(i*k+j) + 0.1
		case 1:
			s.Value = -float64(j) / 3
		case 2:
			s.Value = 123456789012345 + float64(i)
		case 3:
			s.Value = 1e-300 * float64(j+1)
		case 4:
			s.Value = math.MaxFloat64 / float64(i+2)
			s.Field = "other_field"
		}
		b.Samples = append(b.Samples, s)
	}
	return b
}

// expected reads the whole spool back, as the exporter would encode it for host h:
// point key (as influxtest.Point.Key makes it) to value.
func expected(t *testing.T, sp *spool.Spool) map[string]float64 {
	t.Helper()
	c, err := sp.Cursor("expected")
	if err != nil {
		t.Fatal(err)
	}
	it := c.Iterator(sp.Start())
	defer it.Close()
	want := map[string]float64{}
	end := sp.End()
	for it.Pos().Less(end) {
		rec, err := it.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range rec.Batch.Samples {
			tags := []string{"host=h"}
			for _, l := range s.Labels {
				tags = append(tags, l.Key+"="+l.Value)
			}
			slices.Sort(tags)
			p := influxtest.Point{Measurement: s.Collector, Tags: strings.Join(tags, ","), Field: s.Field,
				Time: rec.Batch.Time.Truncate(time.Second)}
			want[p.Key()] = s.Value
		}
	}
	return want
}

// checkStored waits for influxd to hold exactly as many points as want, then compares
// them point by point.
func checkStored(t *testing.T, s *influxtest.Server, want map[string]float64) {
	t.Helper()
	pts := s.WaitPoints(t, "picket", len(want), realWait)
	got := map[string]float64{}
	for _, p := range pts {
		v, ok := p.Value.(float64)
		if !ok {
			t.Errorf("%s: value %v is a %T", p.Key(), p.Value, p.Value)
		}
		got[p.Key()] = v
	}
	if maps.Equal(got, want) {
		return
	}
	n := 0
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			if n++; n <= 10 {
				t.Errorf("%s: stored %v (%v), want %v", k, g, ok, v)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if n++; n <= 10 {
				t.Errorf("%s stored, never spooled", k)
			}
		}
	}
	t.Errorf("%d of %d points differ", n, len(want))
}

// ticker appends ticks first, first+1, … every period until stopped.
type ticker struct {
	stopCh chan struct{}
	done   chan struct{}
	n      atomic.Int64
}

func startTicker(t *testing.T, sp *spool.Spool, first, k int, period time.Duration) *ticker {
	tk := &ticker{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tk.done)
		tm := time.NewTicker(period)
		defer tm.Stop()
		for i := first; ; i++ {
			if err := sp.Append(variedTick(i, k)); err != nil {
				t.Error(err)
				return
			}
			tk.n.Add(1)
			select {
			case <-tk.stopCh:
				return
			case <-tm.C:
			}
		}
	}()
	t.Cleanup(tk.stop)
	return tk
}

// waitTicks waits until n more ticks have been appended.
func (tk *ticker) waitTicks(t *testing.T, n int64) {
	t.Helper()
	want := tk.n.Load() + n
	waitFor(t, fmt.Sprintf("%d ticks", n), func() bool { return tk.n.Load() >= want })
}

func (tk *ticker) stop() {
	select {
	case <-tk.stopCh:
	default:
		close(tk.stopCh)
	}
	<-tk.done
}

// TestInfluxDB: everything spooled is stored in influxd with its value, timestamp and
// tags, each datapoint acknowledged once.
func TestInfluxDB(t *testing.T) {
	t.Parallel()
	s := startInflux(t)
	sp := openSpool(t, t.TempDir())
	e := newExporter(t, realOptions(sp, s.URL()))
	for i := range 50 {
		appendAll(t, sp, []*metric.Batch{variedTick(i, 200)})
	}
	want := expected(t, sp)
	stop := run(e)
	defer stop()
	checkStored(t, s, want)
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	if e.acked.Load() != 10000 || e.sent.Load() != 10000 || e.rejected.Load() != 0 {
		t.Errorf("sent %d acked %d rejected %d, want 10000 10000 0", e.sent.Load(), e.acked.Load(), e.rejected.Load())
	}
}

// TestInfluxDBOutages: influxd down at start, down for several ticks, killed mid-stream
// and restarted: every tick ends up stored, exactly.
func TestInfluxDBOutages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		outage func(t *testing.T, s *influxtest.Server, tk *ticker)
	}{
		{"down at start", nil},
		{"down for ticks", func(t *testing.T, s *influxtest.Server, tk *ticker) {
			s.Stop()
			tk.waitTicks(t, 10)
			s.Restart()
		}},
		{"killed mid-stream", func(t *testing.T, s *influxtest.Server, tk *ticker) {
			s.Kill()
			tk.waitTicks(t, 3)
			s.Restart()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startInflux(t)
			sp := openSpool(t, t.TempDir())
			e := newExporter(t, realOptions(sp, s.URL()))
			if tc.outage == nil {
				s.Stop()
			}
			stop := run(e)
			defer stop()
			tk := startTicker(t, sp, 0, 500, 50*time.Millisecond)
			if tc.outage == nil {
				tk.waitTicks(t, 10)
				if e.acked.Load() != 0 {
					t.Fatal("acknowledged with influxd down")
				}
				s.Restart()
			} else {
				tk.waitTicks(t, 10)
				tc.outage(t, s, tk)
			}
			tk.waitTicks(t, 10)
			tk.stop()
			checkStored(t, s, expected(t, sp))
			waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
			if e.reconnects.Load() == 0 {
				t.Error("no failed request counted")
			}
			if e.rejected.Load() != 0 {
				t.Errorf("rejected %d", e.rejected.Load())
			}
		})
	}
}

// front is a fault-injecting HTTP proxy before influxd.
type front struct {
	srv   *httptest.Server
	fail  atomic.Int32 // answer this many more requests with a 500, not forwarded
	delay atomic.Int64 // hold each answer this long after influxd gave it
	reqs  atomic.Int32
}

func newFront(t *testing.T, target string) *front {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &front{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.reqs.Add(1)
		if f.fail.Add(-1) >= 0 {
			http.Error(w, `{"error":"injected"}`, http.StatusInternalServerError)
			return
		}
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		// Written by influxd, answered late: a client that gives up sends it again.
		select {
		case <-time.After(time.Duration(f.delay.Load())):
		case <-r.Context().Done():
			return
		}
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// TestInfluxDBFaultyFront: 500s and answers slower than the timeout (the write done, the
// answer lost) cost retries, not data, and store nothing twice.
func TestInfluxDBFaultyFront(t *testing.T) {
	t.Parallel()
	s := startInflux(t)
	f := newFront(t, s.URL())
	sp := openSpool(t, t.TempDir())
	o := realOptions(sp, f.srv.URL)
	o.Timeout = 500 * time.Millisecond
	e := newExporter(t, o)
	stop := run(e)
	defer stop()
	tk := startTicker(t, sp, 0, 500, 50*time.Millisecond)
	tk.waitTicks(t, 5)
	f.fail.Store(5)
	waitFor(t, "five 500s", func() bool { return e.reconnects.Load() >= 5 })
	acked := e.acked.Load()
	waitFor(t, "delivery again", func() bool { return e.acked.Load() > acked })
	// Slower than the timeout: influxd writes, the answer is lost.
	f.delay.Store(int64(time.Second))
	failed := e.reconnects.Load()
	waitFor(t, "two timeouts", func() bool { return e.reconnects.Load() >= failed+2 })
	// Slow, within the timeout.
	f.delay.Store(int64(100 * time.Millisecond))
	acked = e.acked.Load()
	waitFor(t, "slow delivery", func() bool { return e.acked.Load() > acked })
	f.delay.Store(0)
	tk.waitTicks(t, 5)
	tk.stop()
	checkStored(t, s, expected(t, sp))
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	t.Logf("%d requests through the front, %d failed", f.reqs.Load(), e.reconnects.Load())
}

// TestInfluxDBPartialWrite: points whose field already exists in influxd with another
// type (a field type conflict made on purpose) are refused by influxd with a 400 partial
// write; exactly those are dropped and counted, and every other point of their batches
// is stored.
func TestInfluxDBPartialWrite(t *testing.T) {
	t.Parallel()
	s := startInflux(t)
	// disk.value becomes an integer field: picket's floats for it conflict.
	if code, msg := s.Write(t, "picket", "disk,host=other value=1i 1700000000\n"); code != http.StatusNoContent {
		t.Fatalf("write: %d %s", code, msg)
	}
	sp := openSpool(t, t.TempDir())
	var logs logBuffer
	o := realOptions(sp, s.URL())
	o.Logger = logs.logger()
	e := newExporter(t, o)
	const ticks, k = 20, 300
	for i := range ticks {
		appendAll(t, sp, []*metric.Batch{variedTick(i, k)})
	}
	want := expected(t, sp)
	conflicts := 0
	for key := range want {
		if strings.HasPrefix(key, "disk,") && strings.Contains(key, " value ") {
			delete(want, key)
			conflicts++
		}
	}
	want[influxtest.Point{Measurement: "disk", Tags: "host=other", Field: "value", Time: time.Unix(1700000000, 0)}.Key()] = 1
	stop := run(e)
	defer stop()
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	checkStored(t, s, want)
	if got := e.rejected.Load(); got != uint64(conflicts) {
		t.Errorf("dropped_rejected %d, want the %d conflicting points", got, conflicts)
	}
	if got, wantAcked := e.acked.Load(), uint64(ticks*k-conflicts); got != wantAcked {
		t.Errorf("acked %d, want %d", got, wantAcked)
	}
	if got := e.sent.Load(); got != ticks*k {
		t.Errorf("sent %d, want %d: a partial write needs no second request", got, ticks*k)
	}
	if n := strings.Count(logs.String(), "field type conflict"); n != 1 {
		t.Errorf("influxd's message logged %d times, want once:\n%s", n, logs.String())
	}
	t.Logf("%d conflicting points of %d dropped and counted; log: %s", conflicts, ticks*k, logs.String())
}

// TestInfluxDBAuth: with credentials influxd does not know (401) nothing is dropped and
// nothing is lost; once the user exists, everything arrives. The password is never
// logged.
func TestInfluxDBAuth(t *testing.T) {
	t.Parallel()
	const password = "Pw-9vKq2Lm"
	s := startInflux(t, influxtest.WithAuth("admin", "admin-pw"))
	sp := openSpool(t, t.TempDir())
	var logs logBuffer
	o := realOptions(sp, s.URL())
	o.Username, o.Password, o.Logger = "picket", password, logs.logger()
	e := newExporter(t, o)
	for i := range 10 {
		appendAll(t, sp, []*metric.Batch{variedTick(i, 100)})
	}
	want := expected(t, sp)
	stop := run(e)
	defer stop()
	waitFor(t, "the 401 logged", func() bool { return strings.Contains(logs.String(), "401 Unauthorized") })
	time.Sleep(time.Second) // a few retries
	if n, _ := e.cursor.Backlog(); n != 1000 || e.rejected.Load() != 0 || e.acked.Load() != 0 {
		t.Fatalf("backlog %d rejected %d acked %d: want everything kept", n, e.rejected.Load(), e.acked.Load())
	}
	s.Exec(t, "", fmt.Sprintf("CREATE USER picket WITH PASSWORD '%s'; GRANT WRITE ON picket TO picket", password))
	checkStored(t, s, want)
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	if text := logs.String(); strings.Contains(text, password) {
		t.Errorf("the password is in the log:\n%s", text)
	} else if !strings.Contains(text, "level=ERROR") || !strings.Contains(text, "endpoint recovered") {
		t.Errorf("the 401 is not logged as an error, or the recovery not at all:\n%s", text)
	}
}

// TestInfluxDBFailover: with the primary stopped the secondary gets everything; once the
// primary is back, traffic returns to it. Every point is in one or the other.
func TestInfluxDBFailover(t *testing.T) {
	t.Parallel()
	primary, secondary := startInflux(t), startInflux(t)
	sp := openSpool(t, t.TempDir())
	e := newExporter(t, realOptions(sp, primary.URL(), secondary.URL()))
	stop := run(e)
	defer stop()
	tk := startTicker(t, sp, 0, 100, 50*time.Millisecond)
	tk.waitTicks(t, 5)
	primary.Stop()
	tk.waitTicks(t, 10)
	waitFor(t, "the secondary in use", func() bool { return e.active.Load() == 1 })
	primary.Restart()
	waitFor(t, "the primary in use again", func() bool { return e.active.Load() == 0 })
	tk.waitTicks(t, 5)
	tk.stop()
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	want := expected(t, sp)
	got := map[string]float64{}
	var mu sync.Mutex
	for _, s := range []*influxtest.Server{primary, secondary} {
		pts, err := s.Points("picket")
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		for _, p := range pts {
			got[p.Key()] = p.Value.(float64)
		}
		mu.Unlock()
	}
	if !maps.Equal(got, want) {
		t.Errorf("%d points stored over both, want the %d spooled", len(got), len(want))
	}
	if n, _ := secondary.Points("picket"); len(n) == 0 {
		t.Error("the secondary got nothing")
	}
}

// BenchmarkInfluxDBReplay measures a backlog replayed, unpaced, into a real influxd: the
// datapoints per second stored and the size of the requests before and after gzip.
func BenchmarkInfluxDBReplay(b *testing.B) {
	influxtest.Require(b)
	const ticks, k = 100, 2000 // 200,000 datapoints
	for _, gz := range []bool{true, false} {
		b.Run(fmt.Sprintf("gzip=%v", gz), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				s := influxtest.Start(b)
				s.CreateDatabase(b, "picket")
				sp := openSpool(b, b.TempDir())
				var sizes sizeFront
				f := sizes.start(b, s.URL())
				o := realOptions(sp, f)
				o.Gzip, o.ReplayRate, o.Logger = gz, 0, slog.New(slog.DiscardHandler)
				o.BatchBytes = defaultBatchBytes
				e := newExporter(b, o) // before the appends: a new cursor starts at the end
				for i := range ticks {
					appendAll(b, sp, []*metric.Batch{variedTick(i, k)})
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				b.StartTimer()
				start := time.Now()
				go func() { e.Run(ctx); close(done) }()
				for e.cursor.Position() != sp.End() {
					time.Sleep(time.Millisecond)
				}
				took := time.Since(start)
				b.StopTimer()
				cancel()
				<-done
				b.ReportMetric(float64(ticks*k)/took.Seconds(), "datapoints/s")
				b.ReportMetric(float64(sizes.wire.Load())/float64(sizes.n.Load()), "wire-bytes/request")
				b.ReportMetric(float64(sizes.wire.Load())/float64(ticks*k), "wire-bytes/datapoint")
				b.ReportMetric(float64(sizes.n.Load()), "requests")
			}
		})
	}
}

// sizeFront is a pass-through proxy that counts requests and their bytes on the wire.
type sizeFront struct{ n, wire atomic.Int64 }

func (f *sizeFront) start(b *testing.B, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		b.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.n.Add(1)
		f.wire.Add(r.ContentLength)
		proxy.ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

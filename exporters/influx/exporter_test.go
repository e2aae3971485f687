package influx

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/spool"
)

// fakeInflux stands in for InfluxDB: it decodes the line protocol of each write and keeps
// the last value per point, as InfluxDB does, and how often each arrived. respond, when
// set, answers a request instead of the default 204: it sees the request's lines, may set
// response headers in h, and returns the status, the error message (sent as 1.x does,
// {"error": msg}) and which lines to store.
type fakeInflux struct {
	srv *httptest.Server
	mu  sync.Mutex
	// points maps "measurement,tags field ts" to the value, as influxtest.Point.Key does.
	points   map[string]float64
	seen     map[string]int
	requests []fakeRequest
	respond  func(h http.Header, lines []string) (status int, msg string, store []string)
}

// fakeRequest is what the fake saw of one request.
type fakeRequest struct {
	path, query, auth, encoding string
	lines                       int
	bytes                       int // the body as sent (compressed, if it was)
	at                          time.Time
}

func newFake(t *testing.T) *fakeInflux {
	t.Helper()
	f := &fakeInflux{points: map[string]float64{}, seen: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeInflux) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	body := raw
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body, _ = io.ReadAll(zr)
	}
	lines := strings.SplitAfter(string(body), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{path: r.URL.Path, query: r.URL.RawQuery, auth: r.Header.Get("Authorization"),
		encoding: r.Header.Get("Content-Encoding"), lines: len(lines), bytes: len(raw), at: time.Now()})
	respond := f.respond
	f.mu.Unlock()
	status, msg, store := http.StatusNoContent, "", lines
	if respond != nil {
		status, msg, store = respond(w.Header(), lines)
	}
	f.mu.Lock()
	for _, l := range store {
		k, v, err := decodeLine(l, r.URL.Query().Get("precision"))
		if err != nil {
			f.mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.points[k] = v
		f.seen[k]++
	}
	f.mu.Unlock()
	if msg != "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":%q}`, msg)
		return
	}
	w.WriteHeader(status)
}

func (f *fakeInflux) setRespond(fn func(h http.Header, lines []string) (int, string, []string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.respond = fn
}

func (f *fakeInflux) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.points)
}

func (f *fakeInflux) reqs() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

// decodeLine decodes one line into its point key and value.
func decodeLine(line, precision string) (string, float64, error) {
	if precision != "s" {
		return "", 0, fmt.Errorf("precision %q, want s", precision)
	}
	dec := lineprotocol.NewDecoderWithBytes([]byte(line))
	if !dec.Next() {
		return "", 0, fmt.Errorf("no point in %q", line)
	}
	m, err := dec.Measurement()
	if err != nil {
		return "", 0, err
	}
	var tags []string
	for {
		k, v, err := dec.NextTag()
		if err != nil {
			return "", 0, err
		}
		if k == nil {
			break
		}
		tags = append(tags, string(k)+"="+string(v))
	}
	k, v, err := dec.NextField()
	if err != nil {
		return "", 0, err
	}
	ts, err := dec.Time(lineprotocol.Second, time.Time{})
	if err != nil {
		return "", 0, err
	}
	return fmt.Sprintf("%s,%s %s %d", m, strings.Join(tags, ","), k, ts.UnixNano()), v.FloatV(), nil
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
				Field: "value", Value: float64(i*k+j) + 0.5, Kind: metric.Counter,
			})
		}
		out[i] = b
	}
	return out
}

// key is the fake's key of sample j of tick i made by batches.
func key(i, j int) string {
	return fmt.Sprintf("test,host=h,n=%d value %d", j, time.Unix(1700000000+int64(i)*10, 0).UnixNano())
}

func appendAll(t testing.TB, sp *spool.Spool, bs []*metric.Batch) {
	t.Helper()
	for _, b := range bs {
		if err := sp.Append(b); err != nil {
			t.Fatal(err)
		}
	}
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

// testOptions are an exporter's options for tests: database db, short timeouts.
func testOptions(sp *spool.Spool, urls ...string) Options {
	return Options{
		Logger: slog.New(slog.DiscardHandler), Name: "influx", URLs: urls, Database: "db",
		Host: "h", Spool: sp, Gzip: true, BatchBytes: 64 << 10, BatchInterval: 20 * time.Millisecond,
		Timeout: 2 * time.Second, BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		DrainTimeout: time.Second,
	}
}

func newExporter(t testing.TB, o Options) *Exporter {
	t.Helper()
	e, err := New(o)
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
		time.Sleep(5 * time.Millisecond)
	}
}

// logBuffer collects an exporter's log lines.
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

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestDelivers: every spooled datapoint arrives once, with its value and timestamp in
// seconds, in gzip'ed requests of several records no larger than BatchBytes, and the
// cursor ends at the spool's end.
func TestDelivers(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	sp := openSpool(t, t.TempDir())
	e := newExporter(t, testOptions(sp, f.srv.URL))
	appendAll(t, sp, batches(40, 100))
	stop := run(e)
	waitFor(t, "4000 points", func() bool { return f.count() == 4000 })
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	if v := f.points[key(3, 7)]; v != 307.5 {
		t.Errorf("point (tick 3, n 7) = %v, want 307.5", v)
	}
	for k, n := range f.seen {
		if n != 1 {
			t.Errorf("%s arrived %d times", k, n)
		}
	}
	if got := e.acked.Load(); got != 4000 {
		t.Errorf("acked %d, want 4000", got)
	}
	if len(f.requests) >= 40 {
		t.Errorf("%d requests for 40 records: records were not batched", len(f.requests))
	}
	for _, r := range f.requests {
		if r.path != "/write" || r.query != "db=db&precision=s" || r.encoding != "gzip" || r.auth != "" {
			t.Errorf("request %+v", r)
		}
	}
}

// TestBatchBytes: no request holds more than BatchBytes of lines, unless one record alone
// does; with gzip off the body is the lines themselves.
func TestBatchBytes(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	sp := openSpool(t, t.TempDir())
	o := testOptions(sp, f.srv.URL)
	o.Gzip, o.BatchBytes, o.BatchInterval = false, 10000, time.Hour
	e := newExporter(t, o)
	// A record of 10 samples is about 400 bytes: 25 fit; then one of 500 (20 kB) alone.
	bs := batches(100, 10)
	big := batches(1, 500)[0]
	big.Time = time.Unix(1750000000, 0)
	appendAll(t, sp, append(bs, big))
	stop := run(e)
	defer stop()
	waitFor(t, "1500 points", func() bool { return f.count() == 1500 })
	alone, short := 0, 0
	for _, r := range f.reqs() {
		if r.encoding != "" {
			t.Errorf("Content-Encoding %q with gzip off", r.encoding)
		}
		switch {
		case r.lines == 500:
			alone++
		case r.bytes > 10000:
			t.Errorf("a request of %d bytes (%d lines), over BatchBytes", r.bytes, r.lines)
		case r.bytes < 9000:
			short++ // only the last before the large record may be
		}
	}
	if short > 1 {
		t.Errorf("%d requests well under BatchBytes: batches did not fill", short)
	}
	if alone != 1 {
		t.Errorf("the record larger than BatchBytes went in %d requests of its own, want 1", alone)
	}
}

// TestBatchInterval: records appended within the interval go in one request; the
// request waits no longer than the interval.
func TestBatchInterval(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	sp := openSpool(t, t.TempDir())
	o := testOptions(sp, f.srv.URL)
	o.BatchInterval = 300 * time.Millisecond
	e := newExporter(t, o)
	stop := run(e)
	defer stop()
	waitFor(t, "the session", func() bool { return sessionStarted(e) })
	start := time.Now()
	bs := batches(3, 10)
	for _, b := range bs {
		appendAll(t, sp, []*metric.Batch{b})
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, "30 points", func() bool { return f.count() == 30 })
	reqs := f.reqs()
	if len(reqs) != 1 || reqs[0].lines != 30 {
		t.Fatalf("requests %+v, want one of 30 lines", reqs)
	}
	if d := reqs[0].at.Sub(start); d < o.BatchInterval {
		t.Errorf("the request went %s after the first record, before the batch interval %s", d, o.BatchInterval)
	}
}

// sessionStarted reports whether Run has begun reading the spool, so that what a test
// appends next is live data, not backlog.
func sessionStarted(e *Exporter) bool {
	return e.sessions.Load() > 0
}

// TestV2API: a bucket selects /api/v2/write with the org and the token.
func TestV2API(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	sp := openSpool(t, t.TempDir())
	o := testOptions(sp, f.srv.URL+"/prefix/")
	o.Database, o.Bucket, o.Org, o.Token = "", "b", "o", "tok"
	e := newExporter(t, o)
	appendAll(t, sp, batches(1, 10))
	stop := run(e)
	defer stop()
	waitFor(t, "10 points", func() bool { return f.count() == 10 })
	r := f.reqs()[0]
	if r.path != "/prefix/api/v2/write" || r.query != "bucket=b&org=o&precision=s" || r.auth != "Token tok" {
		t.Errorf("request %+v", r)
	}
}

// TestV1Auth: a username and password go as basic auth, never in the URL.
func TestV1Auth(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	sp := openSpool(t, t.TempDir())
	o := testOptions(sp, f.srv.URL)
	o.Database, o.RetentionPolicy, o.Username, o.Password = "db", "rp", "u", "p"
	e := newExporter(t, o)
	appendAll(t, sp, batches(1, 10))
	stop := run(e)
	defer stop()
	waitFor(t, "10 points", func() bool { return f.count() == 10 })
	r := f.reqs()[0]
	if r.path != "/write" || r.query != "db=db&precision=s&rp=rp" || r.auth != "Basic dTpw" {
		t.Errorf("request %+v", r)
	}
}

func TestOptionErrors(t *testing.T) {
	t.Parallel()
	sp := openSpool(t, t.TempDir())
	for _, tc := range []struct {
		name   string
		change func(o *Options)
		want   string
	}{
		{"no URL", func(o *Options) { o.URLs = nil }, "no endpoint"},
		{"no database or bucket", func(o *Options) { o.Database = "" }, "no database"},
		{"both", func(o *Options) { o.Bucket = "b" }, "both a database"},
		{"token with a database", func(o *Options) { o.Token = "t" }, "a token goes with a bucket"},
		{"password alone", func(o *Options) { o.Password = "p" }, "a password needs a username"},
		{"username with a bucket", func(o *Options) { o.Database, o.Bucket, o.Username = "", "b", "u" }, "goes with a database"},
		{"scheme", func(o *Options) { o.URLs = []string{"udp://h:8089"} }, "scheme must be http or https"},
		{"no host", func(o *Options) { o.URLs = []string{"http:///x"} }, "no host"},
		{"credentials in the URL", func(o *Options) { o.URLs = []string{"https://u:hunter2@h:8086"} }, `"https://REDACTED@h:8086": credentials do not go in the URL`},
		{"query", func(o *Options) { o.URLs = []string{"http://h:8086/?db=x"} }, "no query"},
	} {
		o := testOptions(sp, "http://127.0.0.1:1")
		tc.change(&o)
		_, err := New(o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", tc.name, err)
		}
	}
}

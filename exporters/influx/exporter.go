package influx

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/feed"
	"github.com/picket-agent/picket/exporters/spool"
)

// Options configure an Exporter.
type Options struct {
	Logger *slog.Logger
	// Name names the exporter's spool cursor and labels its self-metrics.
	Name string
	// URLs are the endpoints' base URLs (http:// or https://, host, port, and a path
	// prefix if InfluxDB sits behind one), most preferred first: the first healthy one
	// gets the traffic, and traffic returns to an earlier one when it recovers.
	URLs []string

	// Database selects InfluxDB 1.x's /write API, with RetentionPolicy (empty: the
	// database's default) and, when auth is on, Username and Password (sent as HTTP
	// basic auth, never in the URL).
	Database, RetentionPolicy, Username, Password string
	// Bucket selects the /api/v2/write API of InfluxDB 2.x and 3.x (and of 1.8+, with
	// "db/rp" as the bucket and "user:password" as the token), with Org (which 3.x
	// ignores) and Token (sent as "Authorization: Token …").
	Org, Bucket, Token string

	// TLS configures https URLs (nil: the system roots, verification on). Plain http URLs
	// do not use it.
	TLS *tls.Config
	// Gzip compresses request bodies (Content-Encoding: gzip).
	Gzip bool
	// UserAgent is sent with every request.
	UserAgent string

	Host  string
	Spool *spool.Spool
	// Splay delays each live tick's send by this much after its tick time, so hosts that
	// tick at the same instant do not all send in the same millisecond.
	Splay time.Duration
	// ReplayRate paces the backlog, in datapoints per second; 0 means unpaced.
	ReplayRate float64
	// BatchBytes bounds a request's body before compression. Records are gathered into
	// one request until the next would pass it; a record larger than it goes alone.
	BatchBytes int
	// BatchInterval is how long a request waits for more records after its first one, at
	// most; live data also waits for its splay.
	BatchInterval time.Duration
	// Timeout bounds one request, from connecting to reading the answer.
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the exponential wait before a failed endpoint is
	// tried again (with jitter).
	BackoffMin, BackoffMax time.Duration
	// DrainTimeout bounds, at shutdown, the sending of what was already read from the
	// spool.
	DrainTimeout time.Duration
}

// Defaults for Options left zero.
const (
	defaultBatchBytes = 1 << 20
	defaultTimeout    = 10 * time.Second
	defaultBackoffMin = time.Second
	defaultBackoffMax = 30 * time.Second
)

// maxRetryAfter caps a server's Retry-After: one that asks for an hour is more likely
// wrong than meant, and the spool keeps filling meanwhile.
const maxRetryAfter = 5 * time.Minute

// maxAnswer bounds how much of a response body is read.
const maxAnswer = 64 << 10

// maxMessage bounds the server message quoted in logs and errors.
const maxMessage = 512

// rejectLogEvery is the most often refused datapoints are logged.
const rejectLogEvery = time.Minute

// Exporter sends the spool to InfluxDB over HTTP in line protocol, advancing its cursor
// past a batch once an endpoint has answered it with a 2xx, or with a 4xx that refuses
// some of its points (which are counted in dropped_rejected, the rest being written).
// Create it with New and start it with Run.
type Exporter struct {
	o         Options
	log       *slog.Logger
	cursor    *spool.Cursor
	endpoints []*endpoint
	labels    []metric.Label
	client    *http.Client
	auth      string // the Authorization header, "" for none
	secrets   []string

	// Used by Run's goroutine only.
	zbuf   bytes.Buffer
	zw     *gzip.Writer
	canary []byte // a line an endpoint accepted lately; see write

	// rejects rate-limits the log of refused datapoints; encoders run on the producers'
	// goroutines.
	rejectMu      sync.Mutex
	rejectLogged  time.Time
	rejectPending uint64

	sent, acked, replayed, nonFinite, rejected, reconnects atomic.Uint64
	active                                                 atomic.Int64
	sessions                                               atomic.Int64 // started, for tests
}

// endpoint is one URL of the ordered list, with its failure state.
type endpoint struct {
	url      string // the write URL, with its query; it holds no secret
	failures int
	nextTry  time.Time
	failing  bool
	lastErr  string // the kind of the last failure logged, so a change is logged too
}

// New checks o and opens the exporter's spool cursor.
func New(o Options) (*Exporter, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("no endpoint")
	}
	path, query, err := writePath(o)
	if err != nil {
		return nil, err
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = defaultBatchBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = defaultBackoffMin
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(defaultBackoffMax, o.BackoffMin)
	}
	e := &Exporter{o: o, labels: []metric.Label{{Key: "exporter", Value: o.Name}}}
	e.log = o.Logger.With("exporter", o.Name)
	for _, s := range []string{o.Password, o.Token} {
		if s != "" {
			e.secrets = append(e.secrets, s)
		}
	}
	switch {
	case o.Token != "":
		e.auth = "Token " + o.Token
	case o.Username != "":
		cred := base64.StdEncoding.EncodeToString([]byte(o.Username + ":" + o.Password))
		e.auth = "Basic " + cred
		if o.Password != "" {
			// A server that echoes the request's headers would show it so.
			e.secrets = append(e.secrets, cred)
		}
	}
	for _, raw := range o.URLs {
		u, err := parseBase(raw)
		if err != nil {
			return nil, err
		}
		u.Path += path
		u.RawQuery = query
		e.endpoints = append(e.endpoints, &endpoint{url: u.String()})
	}
	e.client = &http.Client{Transport: e.transport()}
	c, err := o.Spool.Cursor(o.Name)
	if err != nil {
		return nil, err
	}
	e.cursor = c
	e.active.Store(-1)
	return e, nil
}

// writePath is the path and query of the write API that o selects.
func writePath(o Options) (string, string, error) {
	q := url.Values{"precision": {"s"}}
	switch {
	case o.Database != "" && o.Bucket != "":
		return "", "", errors.New("both a database (the 1.x API) and a bucket (the 2.x API) are set; set one")
	case o.Database != "":
		if o.Org != "" || o.Token != "" {
			return "", "", errors.New("an org or a token goes with a bucket (the 2.x API), not a database")
		}
		if o.Password != "" && o.Username == "" {
			return "", "", errors.New("a password needs a username")
		}
		q.Set("db", o.Database)
		if o.RetentionPolicy != "" {
			q.Set("rp", o.RetentionPolicy)
		}
		return "/write", q.Encode(), nil
	case o.Bucket != "":
		if o.Username != "" || o.Password != "" || o.RetentionPolicy != "" {
			return "", "", errors.New("a username, password or retention policy goes with a database (the 1.x API), not a bucket")
		}
		q.Set("bucket", o.Bucket)
		if o.Org != "" {
			q.Set("org", o.Org)
		}
		return "/api/v2/write", q.Encode(), nil
	}
	return "", "", errors.New("no database (the 1.x API) or bucket (the 2.x API)")
}

// CheckURL reports what is wrong with an endpoint's base URL, as New would. The error
// never shows a password put in the URL.
func CheckURL(raw string) error {
	_, err := parseBase(raw)
	return err
}

// parseBase checks an endpoint's base URL. Credentials in it are refused rather than
// used: a URL ends up in logs and errors, and they have their own options.
func parseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole string, which may hold a password: say less.
		return nil, fmt.Errorf("endpoint URL %q: not a URL", redactURL(raw))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("endpoint URL %q: the scheme must be http or https", redactURL(raw))
	case u.Host == "":
		return nil, fmt.Errorf("endpoint URL %q: no host", redactURL(raw))
	case u.User != nil:
		return nil, fmt.Errorf("endpoint URL %q: credentials do not go in the URL; use the username/password or token options", redactURL(raw))
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("endpoint URL %q: no query or fragment, please: the write API's parameters have options", redactURL(raw))
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// redactURL leaves out of raw what a password could hide in: the user info.
func redactURL(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		if at := strings.LastIndexByte(rest, '@'); at >= 0 && !strings.Contains(rest[:at], "/") {
			return raw[:i+3] + "REDACTED@" + rest[at+1:]
		}
	}
	return raw
}

// transport dials with keepalives and, when DNS fails, the last good address of a name.
func (e *Exporter) transport() *http.Transport {
	var mu sync.Mutex
	lastGood := map[string][]string{}
	d := &net.Dialer{Timeout: e.o.Timeout, KeepAlive: 15 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || net.ParseIP(host) != nil {
			return d.DialContext(ctx, network, addr)
		}
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		mu.Lock()
		switch {
		case err == nil:
			lastGood[host] = ips
		case len(lastGood[host]) > 0:
			e.log.Debug("resolving failed; using the last good address", "host", host, "err", err)
			ips, err = lastGood[host], nil
		}
		mu.Unlock()
		if err != nil {
			return nil, err
		}
		var errs []error
		for _, ip := range ips {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip, port))
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dial,
		TLSClientConfig:     e.o.TLS,
		TLSHandshakeTimeout: e.o.Timeout,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		// Answers are small; ask for them as they are.
		DisableCompression: true,
	}
}

// Run sends until ctx ends, then spends at most DrainTimeout sending what it had already
// read from the spool, persists the cursor and returns. Whatever was not acknowledged
// stays in the spool for the next run.
func (e *Exporter) Run(ctx context.Context) error {
	defer func() {
		if err := e.cursor.Flush(); err != nil {
			e.log.Error("saving the spool cursor", "err", err)
		}
		e.client.CloseIdleConnections()
	}()
	// Requests outlive ctx by DrainTimeout, so that what is in flight at shutdown can
	// still be answered.
	dctx, dcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer dcancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(e.o.DrainTimeout, dcancel)
		context.AfterFunc(dctx, func() { t.Stop() })
	})
	defer stop()
	for {
		if !e.waitEndpoint(ctx) {
			return nil
		}
		err := e.runSession(ctx, dctx)
		e.active.Store(-1)
		switch {
		case errors.Is(err, errShutdown) || ctx.Err() != nil:
			return nil
		case errors.Is(err, errSpool):
			// The reader logged why. Try again later rather than spin.
			t := time.NewTimer(e.o.BackoffMax)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

var (
	errShutdown = errors.New("shutting down")
	// errOutage ends a session: no endpoint can take a batch now.
	errOutage = errors.New("no endpoint available")
	errSpool  = errors.New("spool reader stopped")
)

// waitEndpoint waits until some endpoint is out of its backoff; false if ctx ended first.
func (e *Exporter) waitEndpoint(ctx context.Context) bool {
	wake := e.endpoints[0].nextTry
	for _, ep := range e.endpoints[1:] {
		if ep.nextTry.Before(wake) {
			wake = ep.nextTry
		}
	}
	d := time.Until(wake)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// batch is records gathered for one request, all from the same source (live or backlog).
type batch struct {
	lines   []byte
	count   uint64
	end     spool.Position
	backlog bool
	sendAt  time.Time // when it goes, unless full first
	full    bool      // the next record would not fit
	open    bool      // holds at least one record
}

func (b *batch) reset() {
	b.lines, b.count, b.full, b.open = b.lines[:0], 0, false, false
}

// runSession reads the spool from the cursor and delivers it until no endpoint can take a
// batch (errOutage: the next session reads again from the cursor, and what accumulated
// meanwhile becomes backlog, behind live data), or until ctx ends and what was read is
// sent or the drain bound passes (errShutdown).
//
// Live records go first; the backlog (the cursor up to the spool's end when the session
// began) follows, paced. A session, unlike the Graphite exporter's, is not one
// connection: requests come and go on the HTTP client's pooled connections, and a failed
// request moves to the next endpoint without ending the session while one is available.
func (e *Exporter) runSession(ctx, dctx context.Context) error {
	e.sessions.Add(1)
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start, liveStart := e.cursor.Position(), e.o.Spool.End()
	free := make(chan []byte, 4)
	liveCh := make(chan *feed.Chunk, 1)
	// One encoder per producer: an Encoder keeps scratch space and is not shared.
	live := &feed.Producer{Log: e.log, Encode: e.encoder()}
	go live.Run(sctx, e.cursor.Iterator(liveStart), nil, liveCh, free)
	var (
		backlogCh chan *feed.Chunk
		backIt    *spool.Iterator
	)
	if start.Less(liveStart) {
		backlogCh = make(chan *feed.Chunk, 1)
		stop := liveStart
		back := &feed.Producer{Log: e.log, Encode: e.encoder(), Rate: e.o.ReplayRate}
		backIt = e.cursor.Iterator(start)
		go back.Run(sctx, backIt, &stop, backlogCh, free)
	}

	var (
		lb, bb       = &batch{}, &batch{backlog: true}
		carryL       *feed.Chunk // a chunk that did not fit its batch, first of the next
		carryB       *feed.Chunk
		ackedBacklog = start
		ackedLive    = liveStart
		backlogRead  bool // the backlog reader reached liveStart
		done         = ctx.Done()
		timer        = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	// commit saves the cursor: a contiguous prefix, so the backlog's delivered part until
	// the backlog reaches where live began, the live part after that. Records the backlog
	// reader skipped (expired, corrupt: charged to the cursor) count as passed once it
	// has read up to liveStart and everything it handed over is delivered.
	commit := func() {
		if backlogRead && !bb.open && carryB == nil {
			ackedBacklog = liveStart
		}
		p := ackedBacklog
		if !ackedBacklog.Less(liveStart) {
			p = ackedLive
		}
		if err := e.cursor.Commit(p); err != nil {
			e.log.Error("saving the spool cursor", "err", err)
		}
	}
	add := func(b *batch, c *feed.Chunk) (carry *feed.Chunk) {
		if b.open && len(b.lines)+len(c.Data) > e.o.BatchBytes {
			b.full = true
			return c
		}
		now := time.Now()
		if !b.open {
			b.open = true
			b.sendAt = now.Add(e.o.BatchInterval)
			if at := c.Time.Add(e.o.Splay); !b.backlog && at.After(b.sendAt) {
				b.sendAt = at
			}
		}
		b.lines = append(b.lines, c.Data...)
		b.count += c.Count
		b.end = c.End
		b.full = len(b.lines) >= e.o.BatchBytes
		select {
		case free <- c.Data[:0]:
		default:
		}
		return nil
	}

	for {
		// Send what is ready, live first. Once ctx has ended, everything read is ready.
		now := time.Now()
		var b *batch
		switch {
		case lb.open && (lb.full || done == nil || !now.Before(lb.sendAt)):
			b = lb
		case bb.open && (bb.full || done == nil || !now.Before(bb.sendAt)):
			b = bb
		}
		if b != nil {
			if err := e.deliver(ctx, dctx, b); err != nil {
				return err
			}
			if b.backlog {
				ackedBacklog = b.end
			} else {
				ackedLive = b.end
			}
			b.reset()
			if b.backlog && carryB != nil {
				carryB = add(bb, carryB)
			} else if !b.backlog && carryL != nil {
				carryL = add(lb, carryL)
			}
			commit()
			continue
		}
		if done == nil {
			return errShutdown
		}

		var liveIn, backlogIn <-chan *feed.Chunk
		if carryL == nil {
			liveIn = liveCh
		}
		if carryB == nil {
			backlogIn = backlogCh
		}
		var wake time.Time
		for _, x := range []*batch{lb, bb} {
			if x.open && (wake.IsZero() || x.sendAt.Before(wake)) {
				wake = x.sendAt
			}
		}
		var tick <-chan time.Time
		if !wake.IsZero() {
			timer.Reset(time.Until(wake))
			tick = timer.C
		}
		select {
		case <-done:
			done = nil
		case c, ok := <-liveIn:
			if !ok {
				return errSpool
			}
			carryL = add(lb, c)
		case c, ok := <-backlogIn:
			if !ok {
				// The reader has returned (closing the channel after its last read), so
				// its position is safe to look at: at liveStart unless it failed.
				backlogCh = nil
				if backlogRead = !backIt.Pos().Less(liveStart); backlogRead {
					commit()
				}
				continue
			}
			carryB = add(bb, c)
		case <-tick:
		}
		timer.Stop() // since Go 1.23, no stale tick is delivered after Stop
	}
}

// encoder returns an EncodeFunc with its own Encoder, for one producer.
func (e *Exporter) encoder() feed.EncodeFunc {
	enc := &Encoder{Precision: lineprotocol.Second}
	return func(dst []byte, b *metric.Batch) ([]byte, uint64) {
		var n uint64
		for i := range b.Samples {
			var err error
			dst, err = enc.Append(dst, e.o.Host, &b.Samples[i], b.Time)
			switch {
			case err == nil:
				n++
			case err == ErrNonFinite:
				e.nonFinite.Add(1)
			default:
				// Line protocol cannot carry it (an empty tag value, a label keyed host):
				// refused here rather than by the server.
				e.rejected.Add(1)
				e.logRejected(1, "", err.Error())
			}
		}
		return dst, n
	}
}

// deliver sends b until an endpoint answers it, trying the endpoints in order and
// skipping those waiting out a backoff. It returns errOutage when none can take it now,
// errShutdown when ctx has ended and the drain bound has passed.
func (e *Exporter) deliver(ctx, dctx context.Context, b *batch) error {
	if len(b.lines) == 0 {
		return nil // every sample of its records was left out, and counted
	}
	for {
		if dctx.Err() != nil {
			return errShutdown
		}
		now := time.Now()
		idx := -1
		for i, ep := range e.endpoints {
			if !now.Before(ep.nextTry) {
				idx = i
				break
			}
		}
		if idx < 0 {
			return errOutage
		}
		ep := e.endpoints[idx]
		rejected, f := e.write(dctx, ep, b.lines, b.backlog)
		if f == nil {
			if ep.failing {
				e.log.Info("endpoint recovered", "endpoint", ep.url)
			}
			ep.failures, ep.failing, ep.lastErr = 0, false, ""
			e.active.Store(int64(idx))
			e.acked.Add(b.count - min(rejected, b.count))
			e.rejected.Add(rejected)
			return nil
		}
		if ctx.Err() != nil && dctx.Err() != nil {
			return errShutdown
		}
		e.reconnects.Add(1)
		e.fail(ep, f)
	}
}

// fail records an endpoint's failure and schedules its next try: after the server's
// Retry-After if it gave one, else after a capped exponential backoff with jitter. It
// logs when the endpoint starts failing, and when the way it fails changes.
func (e *Exporter) fail(ep *endpoint, f *failure) {
	ep.failures++
	d := e.o.BackoffMin << min(ep.failures-1, 20)
	d = min(d, e.o.BackoffMax)
	// Full jitter on the upper half: hosts that lost the same server do not come back in step.
	d = d/2 + rand.N(d/2+1)
	if f.retryAfter > 0 {
		d = f.retryAfter
	}
	ep.nextTry = time.Now().Add(d)
	if ep.failing && ep.lastErr == f.kind {
		return
	}
	ep.failing, ep.lastErr = true, f.kind
	attrs := []any{"endpoint", ep.url, "err", e.redact(f.Error()), "retry_in", d.Round(time.Millisecond)}
	if f.config {
		e.log.Error("endpoint refuses the request; check the options (the data is kept in the spool)", attrs...)
		return
	}
	e.log.Warn("endpoint failing", attrs...)
}

// failure is why a request did not deliver: the endpoint or the request, not its points.
type failure struct {
	kind       string // the status code, or "transport": a change of kind is logged
	status     int
	msg        string
	err        error
	retryAfter time.Duration
	// config is a failure no retry fixes without the user: bad credentials, no such
	// database, a URL that is not a write API.
	config bool
}

func (f *failure) Error() string {
	switch {
	case f.err != nil:
		return f.err.Error()
	case f.msg != "":
		return fmt.Sprintf("%d %s: %s", f.status, http.StatusText(f.status), f.msg)
	}
	return fmt.Sprintf("%d %s", f.status, http.StatusText(f.status))
}

// write delivers lines to ep and returns how many of its datapoints the endpoint refused,
// or the failure that kept it from answering.
//
// A 4xx that refuses points is answered in one of two ways. InfluxDB 1.x (400) and 2.x
// (422) write the good points of a batch and say how many they dropped ("partial write:
// … dropped=N"); that count is taken as it is. Otherwise — a 2.x 400, which rejects the
// whole batch for one bad line, a 3.x partial write, which lists the bad lines, lines
// that did not parse, or a 413 — the batch is split in halves and each sent again, down
// to the single lines the endpoint refuses. Sending a good point twice is harmless
// (one value per series and timestamp).
//
// A line is dropped only once the endpoint is shown to accept this request with other
// points in it, or a line it accepted lately (the canary): a 4xx about the request
// itself (a proxy's, a server's that names no point) must not cost every point. A line
// refused before that proof is sent alone once more, and dropped only if refused again.
func (e *Exporter) write(ctx context.Context, ep *endpoint, lines []byte, backlog bool) (uint64, *failure) {
	a := e.post(ctx, ep, lines, backlog)
	switch {
	case a.fail != nil:
		return 0, a.fail
	case !a.refused:
		return a.dropped, nil
	}
	s := &search{ep: ep, backlog: backlog}
	if len(e.canary) > 0 {
		canary := append([]byte(nil), e.canary...)
		c := e.post(ctx, ep, canary, backlog)
		if c.fail != nil {
			return 0, c.fail
		}
		if c.refused {
			return 0, a.refusedAll()
		}
		s.proven = true
	}
	// Until something is accepted, a run of refusals bounds the search: a request
	// refused whatever it holds would otherwise cost two requests per line.
	s.budget = 2*bitsLen(countLines(lines)) + 8
	if f := e.bisect(ctx, s, lines, a); f != nil {
		return 0, f
	}
	if !s.proven {
		return 0, a.refusedAll()
	}
	// A line refused before anything was accepted may have been refused for what ailed
	// the request then (a server fixed during the search): it must be refused alone again.
	for _, l := range s.unsure {
		h := e.post(ctx, ep, l, backlog)
		switch {
		case h.fail != nil:
			return 0, h.fail
		case h.refused:
			s.rejected, s.msg = s.rejected+1, h.msg
		default:
			s.rejected += h.dropped
		}
	}
	if s.rejected > 0 {
		e.logRejected(s.rejected, ep.url, s.msg)
	}
	return s.rejected, nil
}

// search is the state of one bisection.
type search struct {
	ep      *endpoint
	backlog bool
	// proven is set once the endpoint accepts any part: then a refusal is the points'
	// fault, not the request's. Until then each refusal costs one of budget.
	proven bool
	budget int
	// unsure holds the single lines refused before anything was accepted.
	unsure   [][]byte
	rejected uint64
	msg      string // of the last refusal counted
}

// bisect finds, by halves, the lines of a refused request (answered a) that the endpoint
// refuses, counting them in s.
func (e *Exporter) bisect(ctx context.Context, s *search, lines []byte, a answer) *failure {
	n := countLines(lines)
	if n <= 1 {
		switch {
		case n == 0:
		case s.proven:
			s.rejected, s.msg = s.rejected+1, a.msg
		default:
			s.unsure = append(s.unsure, lines)
		}
		return nil
	}
	mid := 0
	for range n / 2 {
		mid += bytes.IndexByte(lines[mid:], '\n') + 1
	}
	for _, half := range [][]byte{lines[:mid], lines[mid:]} {
		h := e.post(ctx, s.ep, half, s.backlog)
		switch {
		case h.fail != nil:
			return h.fail
		case !h.refused:
			s.rejected += h.dropped
			s.proven = true
			continue
		}
		if !s.proven {
			if s.budget--; s.budget <= 0 {
				return h.refusedAll()
			}
		}
		if f := e.bisect(ctx, s, half, h); f != nil {
			return f
		}
	}
	return nil
}

// refusedAll is the failure of a request whose every point the endpoint refuses: taken
// for a fault of the request, not of the points, and so kept.
func (a answer) refusedAll() *failure {
	return &failure{kind: "refused " + strconv.Itoa(a.status), status: a.status, config: true,
		msg: "every part of the request refused (and a point accepted before, if any), so the request is taken to be wrong, not its points: " + a.msg}
}

func countLines(lines []byte) int { return bytes.Count(lines, []byte{'\n'}) }

func bitsLen(n int) int {
	b := 0
	for ; n > 0; n >>= 1 {
		b++
	}
	return b
}

// answer is an endpoint's answer to one request.
type answer struct {
	fail *failure
	// refused: a 4xx about the points that does not say which or how many (split and
	// send again). Otherwise the request was answered: all written but dropped.
	refused bool
	dropped uint64
	status  int
	msg     string
}

// droppedRE finds InfluxDB's count of the points it refused in a partial write.
var droppedRE = regexp.MustCompile(`\bdropped=(\d+)`)

// post sends one request and classifies its answer.
func (e *Exporter) post(ctx context.Context, ep *endpoint, lines []byte, backlog bool) answer {
	n := uint64(countLines(lines))
	body := lines
	if e.o.Gzip {
		e.zbuf.Reset()
		if e.zw == nil {
			// Line protocol compresses 9.7x at BestSpeed, in 3 ms per MiB; the default
			// level gets 11x but takes 15 ms.
			e.zw, _ = gzip.NewWriterLevel(&e.zbuf, gzip.BestSpeed)
		} else {
			e.zw.Reset(&e.zbuf)
		}
		e.zw.Write(lines)
		e.zw.Close()
		body = e.zbuf.Bytes()
	}
	rctx, cancel := context.WithTimeout(ctx, e.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, ep.url, bytes.NewReader(body))
	if err != nil {
		return answer{fail: &failure{kind: "request", err: err, config: true}}
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if e.o.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if e.auth != "" {
		req.Header.Set("Authorization", e.auth)
	}
	if e.o.UserAgent != "" {
		req.Header.Set("User-Agent", e.o.UserAgent)
	}
	e.sent.Add(n)
	if backlog {
		e.replayed.Add(n)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return answer{fail: &failure{kind: "transport", err: err}}
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	// Read on to the end (within reason), so the connection can be used again.
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	resp.Body.Close()

	st := resp.StatusCode
	if st >= 200 && st < 300 {
		e.canary = appendFirstLine(e.canary[:0], lines)
		return answer{status: st}
	}
	msg := e.redact(serverMessage(resp.Header, raw))
	f := &failure{kind: strconv.Itoa(st), status: st, msg: msg}
	switch {
	case st == http.StatusBadRequest || st == http.StatusUnprocessableEntity:
		if m := droppedRE.FindAllStringSubmatch(msg, -1); len(m) > 0 && strings.Contains(msg, "partial write") && !strings.Contains(msg, "unable to parse") {
			d, err := strconv.ParseUint(m[len(m)-1][1], 10, 64)
			if err == nil && d > 0 {
				e.logRejected(min(d, n), ep.url, msg)
				// The endpoint wrote the rest: a line of it will do as the canary.
				if d < n {
					e.canary = appendFirstLine(e.canary[:0], lines)
				}
				return answer{status: st, dropped: min(d, n), msg: msg}
			}
		}
		return answer{refused: true, status: st, msg: msg}
	case st == http.StatusRequestEntityTooLarge:
		if n <= 1 {
			e.logRejected(n, ep.url, msg)
			return answer{status: st, dropped: n, msg: msg}
		}
		return answer{refused: true, status: st, msg: msg}
	case st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable:
		f.retryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	case st >= 400 && st < 500:
		// 401, 403 (credentials), 404 (no such database, bucket or org, or not a write
		// API), and any other 4xx about the request rather than its points.
		f.config = true
	}
	return answer{fail: f, status: st, msg: msg}
}

// retryAfter parses a Retry-After header (seconds, or an HTTP date), capped at
// maxRetryAfter; 0 when there is none or it cannot be read.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseUint(strings.TrimSpace(h), 10, 32); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// serverMessage is the error an InfluxDB-like server gave: 1.x's X-Influxdb-Error header
// or {"error": …} body, 2.x's {"code": …, "message": …}, or the body as text, shortened.
func serverMessage(h http.Header, body []byte) string {
	msg := h.Get("X-Influxdb-Error")
	if msg == "" {
		var j struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &j) == nil && (j.Error != "" || j.Message != "") {
			msg = strings.TrimSpace(j.Error + " " + j.Message)
		} else {
			msg = strings.TrimSpace(string(body))
		}
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	return strings.ToValidUTF8(msg, "?")
}

// redact replaces the exporter's secrets in s (a server that echoes a request back).
func (e *Exporter) redact(s string) string {
	for _, secret := range e.secrets {
		s = strings.ReplaceAll(s, secret, "REDACTED")
	}
	return s
}

// appendFirstLine appends the first line of lines (newline included) to dst.
func appendFirstLine(dst, lines []byte) []byte {
	i := bytes.IndexByte(lines, '\n')
	if i < 0 {
		return dst
	}
	return append(dst, lines[:i+1]...)
}

// logRejected logs refused datapoints: the first at once, then at most once per
// rejectLogEvery, with how many were refused since.
func (e *Exporter) logRejected(n uint64, endpoint, msg string) {
	e.rejectMu.Lock()
	defer e.rejectMu.Unlock()
	e.rejectPending += n
	if time.Since(e.rejectLogged) < rejectLogEvery {
		return
	}
	attrs := []any{"datapoints", e.rejectPending, "message", msg}
	if endpoint != "" {
		attrs = append(attrs, "endpoint", endpoint)
	}
	e.log.Warn("datapoints refused and dropped (picket.influx.dropped_rejected); this message is logged at most once a minute", attrs...)
	e.rejectLogged, e.rejectPending = time.Now(), 0
}

// Report adds the exporter's self-metrics. It is called from the agent's self collector,
// concurrently with Run.
func (e *Exporter) Report(s *metric.Sink) {
	feed.Report(s, feed.Counts{
		Sent: e.sent.Load(), Acked: e.acked.Load(), Replayed: e.replayed.Load(),
		NonFinite: e.nonFinite.Load(), Reconnects: e.reconnects.Load(), Active: e.active.Load(),
	}, e.cursor, e.labels...)
	s.Counter("dropped_rejected", float64(e.rejected.Load()), e.labels...)
}

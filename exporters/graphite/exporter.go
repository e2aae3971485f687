package graphite

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/feed"
	"github.com/picket-agent/picket/exporters/spool"
)

// Options configure an Exporter.
type Options struct {
	Logger *slog.Logger
	// Name names the exporter's spool cursor and labels its self-metrics.
	Name string
	// Endpoints are host:port addresses, most preferred first: the first healthy one gets
	// the traffic, and traffic returns to an earlier one when it recovers.
	Endpoints []string
	// TLS, when set, wraps every connection; verification is whatever the config says
	// (on unless the user turned it off), never silently downgraded to plain TCP.
	TLS *tls.Config
	// Tagged selects the tagged plaintext form.
	Tagged       bool
	Prefix, Host string
	// RelayPrefix goes before the name of every sample that came through the relay, in
	// place of Prefix and Host: the application named it (see AppendRelayed). A Hosted
	// Graphite user sets their API key here.
	RelayPrefix string
	Spool       *spool.Spool
	// Splay delays each live tick's send by this much after its tick time, so hosts that
	// tick at the same instant do not all send in the same millisecond.
	Splay time.Duration
	// ReplayWindow is how much already-delivered data is sent again after a connection
	// fails: a carbon that dies loses the points still in its cache.
	ReplayWindow time.Duration
	// ReplayRate paces the backlog, in datapoints per second; 0 means unpaced.
	ReplayRate float64
	// DialTimeout bounds one connection attempt, TLS handshake included.
	DialTimeout time.Duration
	// WriteTimeout bounds one write into the socket.
	WriteTimeout time.Duration
	// AckTimeout is how long written data may stay unacknowledged or unread by the peer
	// before the peer counts as failing and traffic moves on.
	AckTimeout time.Duration
	// BackoffMin and BackoffMax bound the exponential wait before a failed endpoint is
	// tried again (with jitter).
	BackoffMin, BackoffMax time.Duration
	// DrainTimeout bounds, at shutdown, the wait for data in flight to be confirmed.
	DrainTimeout time.Duration
}

// maxInFlight bounds the bytes written but not yet confirmed: a quiet point needs a pause
// in the sending, and this is what makes the pauses. Each pause costs a round trip through
// the peer's application (see the nudge in session), so a larger bound replays faster:
// a million datapoints (55 MB) took 0.55-0.66 s with 1 MiB, 0.17-0.22 s with 4 MiB.
const maxInFlight = 4 << 20

// pollEvery is how often the socket is looked at while data is in flight.
const pollEvery = 10 * time.Millisecond

// Exporter sends the spool to Graphite over TCP, advancing its cursor only past data the
// peer has provably read. Create it with New and start it with Run.
type Exporter struct {
	o         Options
	log       *slog.Logger
	cursor    *spool.Cursor
	endpoints []*endpoint
	labels    []metric.Label
	// lookup resolves a host name; tests stand in for DNS here.
	lookup func(ctx context.Context, host string) ([]string, error)

	sent, acked, replayed, nonFinite, reconnects atomic.Uint64
	active                                       atomic.Int64

	// confirmed remembers, oldest first, where the data confirmed within the last
	// ReplayWindow of wall-clock time began: the replay after a failure goes back to the
	// earliest of them. Tick times cannot stand in for this: a backlog of old ticks can
	// be confirmed a moment before the peer dies with it in its cache.
	confirmed []confirmation
}

// confirmation is one quiet point: when it came and where the data it confirmed began.
type confirmation struct {
	at    time.Time
	start spool.Position
}

// endpoint is one address of the ordered list, with its failure state.
type endpoint struct {
	addr, host, port string
	// ips is the last successful resolution, used when DNS fails.
	ips      []string
	failures int
	nextTry  time.Time
	failing  bool
}

// New checks o and opens the exporter's spool cursor.
func New(o Options) (*Exporter, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("no endpoint")
	}
	c, err := o.Spool.Cursor(o.Name)
	if err != nil {
		return nil, err
	}
	e := &Exporter{o: o, log: o.Logger.With("exporter", o.Name), cursor: c,
		labels: []metric.Label{{Key: "exporter", Value: o.Name}}, lookup: net.DefaultResolver.LookupHost}
	for _, a := range o.Endpoints {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: %w", a, err)
		}
		e.endpoints = append(e.endpoints, &endpoint{addr: a, host: host, port: port})
	}
	e.active.Store(-1)
	return e, nil
}

// SplayFor derives a host's send offset within the interval from its name, so that the
// same host always sends at the same offset and a fleet spreads evenly.
func SplayFor(host string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(host))
	return time.Duration(h.Sum64() % uint64(interval))
}

// Run sends until ctx ends, then spends at most DrainTimeout confirming what is in flight,
// persists the cursor and returns. Whatever was not confirmed stays in the spool.
func (e *Exporter) Run(ctx context.Context) error {
	defer func() {
		if err := e.cursor.Flush(); err != nil {
			e.log.Error("saving the spool cursor", "err", err)
		}
	}()
	for {
		conn, raw, idx, err := e.connect(ctx)
		if err != nil {
			return nil // ctx ended while no endpoint was reachable
		}
		ep := e.endpoints[idx]
		e.active.Store(int64(idx))
		e.log.Info("connected", "endpoint", ep.addr)
		err = e.session(ctx, conn, raw, idx)
		conn.Close()
		e.active.Store(-1)
		switch {
		case errors.Is(err, errShutdown):
			return nil
		case errors.Is(err, errPreferred):
			e.log.Info("moving back to a preferred endpoint", "from", ep.addr)
		default:
			e.reconnects.Add(1)
			e.fail(ep, err)
		}
	}
}

var (
	errShutdown  = errors.New("shutting down")
	errPreferred = errors.New("a preferred endpoint is back")
)

// fail records an endpoint's failure and schedules its next try.
func (e *Exporter) fail(ep *endpoint, err error) {
	ep.failures++
	d := e.o.BackoffMin << min(ep.failures-1, 20)
	d = min(d, e.o.BackoffMax)
	// Full jitter on the upper half: hosts that lost the same relay do not come back in step.
	d = d/2 + rand.N(d/2+1)
	ep.nextTry = time.Now().Add(d)
	if !ep.failing {
		e.log.Warn("endpoint failing", "endpoint", ep.addr, "err", err, "retry_in", d.Round(time.Millisecond))
		ep.failing = true
	}
}

// connect dials the endpoints in order, skipping those waiting out a backoff, until one
// answers or ctx ends.
func (e *Exporter) connect(ctx context.Context) (net.Conn, net.Conn, int, error) {
	for {
		var wake time.Time
		for i, ep := range e.endpoints {
			if time.Now().Before(ep.nextTry) {
				if wake.IsZero() || ep.nextTry.Before(wake) {
					wake = ep.nextTry
				}
				continue
			}
			conn, raw, err := e.dial(ctx, ep)
			if err == nil {
				// Its failures are forgotten once it has taken data (in session): a
				// peer that accepts and then does not read keeps backing off.
				return conn, raw, i, nil
			}
			if ctx.Err() != nil {
				return nil, nil, 0, ctx.Err()
			}
			e.fail(ep, err)
			if wake.IsZero() || ep.nextTry.Before(wake) {
				wake = ep.nextTry
			}
		}
		t := time.NewTimer(time.Until(wake))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, 0, ctx.Err()
		case <-t.C:
		}
	}
}

// dial connects to one endpoint: resolving its name afresh (the last good answer when DNS
// fails), with keepalives and TCP_USER_TIMEOUT so a black-holed peer is noticed in seconds
// rather than the kernel's fifteen minutes. It returns the connection to write to and the
// TCP connection under it (the same one without TLS).
func (e *Exporter) dial(ctx context.Context, ep *endpoint) (net.Conn, net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, e.o.DialTimeout)
	defer cancel()
	ips, err := e.lookup(ctx, ep.host)
	switch {
	case err == nil:
		ep.ips = ips
	case len(ep.ips) > 0:
		e.log.Debug("resolving failed; using the last good address", "endpoint", ep.addr, "err", err)
		ips = ep.ips
	default:
		return nil, nil, err
	}
	userTimeout := int(e.o.AckTimeout.Milliseconds())
	// Keepalive probes every second of silence do two jobs. They notice a dead peer, and
	// their ACK carries the peer's current window: Linux sends no window update when its
	// application reads unless the window had shrunk below half and at least doubles
	// (tcp_cleanup_rbuf), so without a probe the last window we saw can stay shrunk long
	// after everything was read, and no quiet point would ever come.
	d := net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second,
			Count: max(3, int(e.o.AckTimeout/time.Second))},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, userTimeout)
			})
			return errors.Join(err, serr)
		},
	}
	var errs []error
	for _, ip := range ips {
		raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, ep.port))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if e.o.TLS == nil {
			return raw, raw, nil
		}
		cfg := e.o.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = ep.host
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			errs = append(errs, fmt.Errorf("TLS handshake with %s: %w", ep.addr, err))
			continue
		}
		return tc, raw, nil
	}
	return nil, nil, errors.Join(errs...)
}

// encode appends a batch's lines to dst and returns them with the number of datapoints.
// A sample is stamped with its own time if it has one (relayed samples do), else with the
// batch's, in whole seconds, rounded down as time.Time.Unix does before 1970 too.
func (e *Exporter) encode(dst []byte, b *metric.Batch) ([]byte, uint64) {
	batchTS := b.Time.Unix()
	var n uint64
	for i := range b.Samples {
		s := &b.Samples[i]
		ts := batchTS
		if s.Time != 0 {
			ts = time.Unix(0, s.Time).Unix()
		}
		var ok bool
		switch {
		case s.Origin.Relayed():
			dst, ok = AppendRelayed(dst, e.o.RelayPrefix, e.o.Tagged, s, ts)
		case e.o.Tagged:
			dst, ok = AppendTagged(dst, e.o.Host, s, ts)
		default:
			dst, ok = AppendPlain(dst, e.o.Prefix, e.o.Host, s, ts)
		}
		if ok {
			n++
		} else {
			e.nonFinite.Add(1)
		}
	}
	return dst, n
}

// session sends over one connection until it fails, a preferred endpoint comes back, or
// ctx ends. Live ticks go first; the backlog (from the cursor, rewound by the replay
// window) follows behind them, paced.
func (e *Exporter) session(ctx context.Context, conn, raw net.Conn, idx int) error {
	probe, err := newDeliveryProbe(raw)
	if err != nil {
		return err
	}
	// Record the window before anything is written: the largest window seen is the
	// reference a quiet point is measured against.
	_, _, edge, err := probe.quiet()
	if err != nil {
		return err
	}
	// Graphite never writes back: a read that returns means the peer closed or reset.
	closed := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := conn.Read(b[:])
		closed <- err
	}()

	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	start, liveStart := e.startPositions()
	free := make(chan []byte, 4)
	prod := &feed.Producer{Log: e.log, Encode: e.encode, Rate: e.o.ReplayRate}
	liveCh := make(chan *feed.Chunk, 1)
	go prod.Run(sctx, e.cursor.Iterator(liveStart), nil, liveCh, free)
	var backlogCh chan *feed.Chunk
	if start.Less(liveStart) {
		backlogCh = make(chan *feed.Chunk, 1)
		stop := liveStart
		go prod.Run(sctx, e.cursor.Iterator(start), &stop, backlogCh, free)
	}

	var (
		inflight      []*feed.Chunk
		inflightBytes int
		// progress is when the peer last took bytes in (its window's edge moved), or
		// when the oldest unconfirmed write was made if later: a peer that takes
		// nothing for AckTimeout is failing, however slowly a live one reads.
		progress     time.Time
		ackedBacklog = start
		ackedLive    = liveStart
		pending      *feed.Chunk // a live chunk waiting for its splay
		splay        = stoppedTimer()
		// poll runs only while data is in flight: an idle agent does not wake up.
		poll = stoppedTimer()
		// last is the last line written, sent once more to nudge a stale window (see
		// the poll case); nudged says that was done for the data now in flight.
		last       []byte
		nudged     bool
		preferred  = make(chan struct{}, 1)
		wantSwitch bool
		done       = ctx.Done()
		drainUntil <-chan time.Time
	)
	if idx > 0 {
		// Not before the preferred endpoints' own backoff is over: one that accepts
		// connections and then fails must not win the traffic back every time.
		wait := e.o.BackoffMin
		for _, ep := range e.endpoints[:idx] {
			wait = max(wait, min(time.Until(ep.nextTry), e.o.BackoffMax))
		}
		go e.watchPreferred(sctx, idx, wait, preferred)
	}

	write := func(c *feed.Chunk) error {
		if err := conn.SetWriteDeadline(time.Now().Add(e.o.WriteTimeout)); err != nil {
			return err
		}
		if _, err := conn.Write(c.Data); err != nil {
			return fmt.Errorf("writing to %s: %w", e.endpoints[idx].addr, err)
		}
		e.sent.Add(c.Count)
		if c.Backlog {
			e.replayed.Add(c.Count)
		}
		if len(inflight) == 0 {
			progress = time.Now()
			poll.Reset(pollEvery)
		}
		inflight = append(inflight, c)
		inflightBytes += len(c.Data)
		last = appendLastLine(last[:0], c.Data)
		nudged = false
		select {
		case free <- c.Data[:0]:
		default:
		}
		c.Data = nil
		return nil
	}

	for {
		// Take new data only while the in-flight bound allows and we are staying. Live
		// goes first; the backlog flows whenever live has nothing to send.
		accept := inflightBytes < maxInFlight && done != nil && !wantSwitch
		liveIn, backlogIn := (<-chan *feed.Chunk)(liveCh), (<-chan *feed.Chunk)(backlogCh)
		if !accept || pending != nil {
			liveIn = nil
		}
		if !accept {
			backlogIn = nil
		}
		select {
		case <-done:
			// Stop taking data; confirm what is in flight, within the drain bound.
			done = nil
			t := time.NewTimer(e.o.DrainTimeout)
			defer t.Stop()
			drainUntil = t.C
			if len(inflight) == 0 {
				return errShutdown
			}
		case <-drainUntil:
			e.log.Warn("shutdown: data in flight not confirmed in time; it stays in the spool", "datapoints", inflightCount(inflight))
			return errShutdown
		case err := <-closed:
			return fmt.Errorf("peer closed the connection: %w", err)
		case <-preferred:
			// The endpoint may still be waiting out its backoff: let connect try it now.
			for _, ep := range e.endpoints[:idx] {
				ep.nextTry = time.Time{}
			}
			if len(inflight) == 0 {
				return errPreferred
			}
			wantSwitch = true
		case c, ok := <-liveIn:
			if !ok {
				return errors.New("spool reader stopped")
			}
			if d := time.Until(c.Time.Add(e.o.Splay)); d > 0 {
				pending = c
				splay.Reset(d)
				continue
			}
			if err := write(c); err != nil {
				return err
			}
		case <-splay.C:
			if err := write(pending); err != nil {
				return err
			}
			pending = nil
		case c, ok := <-backlogIn:
			if !ok {
				backlogCh = nil
				continue
			}
			if err := write(c); err != nil {
				return err
			}
		case <-poll.C:
			q, drained, now, err := probe.quiet()
			if err != nil {
				return fmt.Errorf("reading TCP state: %w", err)
			}
			if now != edge {
				edge, progress = now, time.Now()
			}
			if !q {
				if time.Since(progress) > e.o.AckTimeout {
					return fmt.Errorf("%d bytes in flight, and the peer has read none for %s", inflightBytes, e.o.AckTimeout)
				}
				// The peer's kernel has everything but the window we last saw is still
				// short. It may be stale: Linux sends no window update after its
				// application reads unless the window had fallen below half. Sending the
				// last line again (harmless: one value per series and timestamp) draws
				// an ACK that carries the window as it is now, usually after the peer
				// read it; the next keepalive does the same, but up to a second later.
				if drained && !nudged && len(last) > 0 {
					if err := conn.SetWriteDeadline(time.Now().Add(e.o.WriteTimeout)); err != nil {
						return err
					}
					if _, err := conn.Write(last); err != nil {
						return fmt.Errorf("writing to %s: %w", e.endpoints[idx].addr, err)
					}
					nudged = true
				}
				poll.Reset(pollEvery)
				continue
			}
			first := inflight[0].Start
			for _, c := range inflight {
				if c.Start.Less(first) {
					first = c.Start
				}
				if c.Backlog {
					ackedBacklog = c.End
				} else {
					ackedLive = c.End
				}
				e.acked.Add(c.Count)
			}
			inflight, inflightBytes = inflight[:0], 0
			e.remember(first)
			if ep := e.endpoints[idx]; ep.failures > 0 {
				e.log.Info("endpoint recovered", "endpoint", ep.addr)
				ep.failures, ep.failing = 0, false
			}
			// The cursor covers a contiguous prefix: the backlog's confirmed part until
			// the backlog reaches where live began, the live part after that.
			commit := ackedBacklog
			if !ackedBacklog.Less(liveStart) {
				commit = ackedLive
			}
			if err := e.cursor.Commit(commit); err != nil {
				e.log.Error("saving the spool cursor", "err", err)
			}
			if done == nil {
				return errShutdown
			}
			if wantSwitch {
				return errPreferred
			}
		}
	}
}

// appendLastLine appends the last line of lines (which end with a newline) to dst.
func appendLastLine(dst, lines []byte) []byte {
	if len(lines) == 0 {
		return dst
	}
	i := bytes.LastIndexByte(lines[:len(lines)-1], '\n')
	return append(dst, lines[i+1:]...)
}

// stoppedTimer returns a timer that has not been started.
func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

func inflightCount(cs []*feed.Chunk) uint64 {
	var n uint64
	for _, c := range cs {
		n += c.Count
	}
	return n
}

// remember notes a quiet point that confirmed data from start on, and forgets those
// older than the replay window.
func (e *Exporter) remember(start spool.Position) {
	now := time.Now()
	e.confirmed = append(e.confirmed, confirmation{at: now, start: start})
	i := 0
	for i < len(e.confirmed) && now.Sub(e.confirmed[i].at) > e.o.ReplayWindow {
		i++
	}
	e.confirmed = append(e.confirmed[:0], e.confirmed[i:]...)
}

// startPositions returns where the backlog starts and where live data starts (the
// spool's end now). The backlog starts at the cursor, rewound to the earliest data
// confirmed within the replay window, and, for what a previous run confirmed, to the
// ticks of the replay window before the oldest unconfirmed one.
func (e *Exporter) startPositions() (start, live spool.Position) {
	live = e.o.Spool.End()
	start = e.cursor.Position()
	_, oldest := e.cursor.Backlog()
	if oldest.IsZero() {
		oldest = time.Now()
	}
	if p := e.o.Spool.PositionAt(oldest.Add(-e.o.ReplayWindow)); p.Less(start) {
		start = p
	}
	for _, c := range e.confirmed {
		if time.Since(c.at) <= e.o.ReplayWindow && c.start.Less(start) {
			start = c.start
		}
	}
	return start, live
}

// watchPreferred tries the endpoints before idx, first after delay and then on a backoff
// schedule, and signals once one of them accepts a TCP connection. It touches no endpoint
// state: the session does that when the signal arrives.
func (e *Exporter) watchPreferred(ctx context.Context, idx int, delay time.Duration, found chan<- struct{}) {
	addrs := make([]string, idx)
	for i, ep := range e.endpoints[:idx] {
		addrs[i] = ep.addr
	}
	d := net.Dialer{Timeout: e.o.DialTimeout}
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		for _, a := range addrs {
			if conn, err := d.DialContext(ctx, "tcp", a); err == nil {
				conn.Close()
				found <- struct{}{}
				return
			}
		}
		delay = min(delay*2, e.o.BackoffMax)
	}
}

// Report adds the exporter's self-metrics. It is called from the agent's self collector,
// concurrently with Run.
func (e *Exporter) Report(s *metric.Sink) {
	feed.Report(s, feed.Counts{
		Sent: e.sent.Load(), Acked: e.acked.Load(), Replayed: e.replayed.Load(),
		NonFinite: e.nonFinite.Load(), Reconnects: e.reconnects.Load(), Active: e.active.Load(),
	}, e.cursor, e.labels...)
}

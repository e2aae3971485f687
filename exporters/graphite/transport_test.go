package graphite

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/spool"
	"github.com/picket-agent/picket/exporters/tlstest"
)

// newTLSSink is a lineSink behind TLS with a certificate for 127.0.0.1 from ca.
func newTLSSink(t *testing.T, ca *tlstest.CA, clientCAs *x509.CertPool) *lineSink {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)}}
	if clientCAs != nil {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, clientCAs
	}
	return serveLines(t, tls.NewListener(l, cfg), true)
}

// appendAll spools batches.
func appendAll(t testing.TB, sp *spool.Spool, bs []*metric.Batch) {
	t.Helper()
	for _, b := range bs {
		if err := sp.Append(b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTLS: over TLS every datapoint is delivered and confirmed (the delivery proof reads
// the TCP connection under TLS); a client certificate is presented when the server asks.
func TestTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("client-cert=%v", mutual), func(t *testing.T) {
			var clientCAs *x509.CertPool
			cfg := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}
			if mutual {
				clientCAs = ca.Pool
				cfg.Certificates = []tls.Certificate{ca.Issue(t, "picket", x509.ExtKeyUsageClientAuth)}
			}
			sink := newTLSSink(t, ca, clientCAs)
			e, sp := testExporter(t, sink.l.Addr().String())
			e.o.TLS = cfg
			appendAll(t, sp, batches(20, 50))
			stop := run(e)
			defer stop()
			waitFor(t, "1000 points", func() bool { return sink.count() == 1000 })
			waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
			if got := e.acked.Load(); got != 1000 {
				t.Errorf("acked %d, want 1000", got)
			}
		})
	}
}

// TestTLSNeverDowngrades: a server whose certificate does not verify, or that does not
// speak TLS at all, gets handshakes and nothing else: no datapoint in plain text, nothing
// counted as sent.
func TestTLSNeverDowngrades(t *testing.T) {
	t.Run("untrusted certificate", func(t *testing.T) {
		sink := newTLSSink(t, tlstest.NewCA(t), nil)
		e, sp := testExporter(t, sink.l.Addr().String())
		e.o.TLS = &tls.Config{RootCAs: tlstest.NewCA(t).Pool, MinVersion: tls.VersionTLS12}
		appendAll(t, sp, batches(2, 10))
		stop := run(e)
		waitFor(t, "three handshakes", func() bool {
			sink.mu.Lock()
			defer sink.mu.Unlock()
			return sink.conns >= 3
		})
		stop()
		if n := sink.count(); n != 0 || e.sent.Load() != 0 || e.acked.Load() != 0 {
			t.Errorf("server got %d points; exporter sent %d, acked %d; want none", n, e.sent.Load(), e.acked.Load())
		}
	})
	t.Run("plain TCP server", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		var mu sync.Mutex
		var got [][]byte // what arrived on each connection
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					var b bytes.Buffer
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					b.ReadFrom(c)
					mu.Lock()
					got = append(got, b.Bytes())
					mu.Unlock()
				}()
			}
		}()
		e, sp := testExporter(t, l.Addr().String())
		e.o.TLS = &tls.Config{RootCAs: tlstest.NewCA(t).Pool, MinVersion: tls.VersionTLS12}
		e.o.DialTimeout = 200 * time.Millisecond
		appendAll(t, sp, batches(2, 10))
		stop := run(e)
		waitFor(t, "two connections", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) >= 2
		})
		stop()
		mu.Lock()
		defer mu.Unlock()
		for i, b := range got {
			// 0x16 is a TLS handshake record: the ClientHello, and nothing after it.
			if len(b) == 0 || b[0] != 0x16 || bytes.Contains(b, []byte("hosts.h.")) {
				t.Errorf("connection %d carried %q, want a TLS ClientHello only", i, b)
			}
		}
		if e.sent.Load() != 0 {
			t.Errorf("sent %d, want 0", e.sent.Load())
		}
	})
}

// fakeDNS answers lookups from a list the test changes; err makes them fail.
type fakeDNS struct {
	mu    sync.Mutex
	ips   []string
	err   error
	calls atomic.Int64
}

func (d *fakeDNS) set(err error, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ips, d.err = ips, err
}

func (d *fakeDNS) lookup(context.Context, string) ([]string, error) {
	d.calls.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ips, d.err
}

// TestDNS: the name is resolved again on every reconnect, so traffic follows a changed
// answer; when resolving fails, the last good answer is used.
func TestDNS(t *testing.T) {
	a := newLineSink(t, true)
	port := a.l.Addr().(*net.TCPAddr).Port
	// The second server listens on the same port of another loopback address, as a
	// failed-over carbon behind the same name would.
	lb, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2:%d: %v", port, err)
	}
	b := serveLines(t, lb, true)
	dns := &fakeDNS{ips: []string{"127.0.0.1"}}
	e, sp := testExporter(t, net.JoinHostPort("carbon.example", strconv.Itoa(port)))
	e.lookup = dns.lookup
	ticks := batches(3, 100)
	stop := run(e)
	defer stop()

	appendAll(t, sp, ticks[:1])
	waitFor(t, "tick 1 at the first address", func() bool { return a.count() == 100 })

	dns.set(nil, "127.0.0.2")
	a.kick()
	appendAll(t, sp, ticks[1:2])
	waitFor(t, "tick 2 at the new address", func() bool { return b.count() >= 100 })

	dns.set(errors.New("no such host"))
	calls := dns.calls.Load()
	b.kick()
	appendAll(t, sp, ticks[2:])
	waitFor(t, "tick 3 at the last good address", func() bool { return b.has("hosts.h.test.0.value", ticks[2].Time) })
	if dns.calls.Load() == calls {
		t.Error("no lookup after the second reconnect: the name was not resolved again")
	}
	if a.has("hosts.h.test.0.value", ticks[1].Time) || a.has("hosts.h.test.0.value", ticks[2].Time) {
		t.Error("the old address got data after the name moved")
	}
}

// has reports whether the sink got series at time ts.
func (s *lineSink) has(series string, ts time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.points[series+" "+strconv.FormatInt(ts.Unix(), 10)]
	return ok
}

// TestReplayWindow: after a connection fails, what was confirmed within the last replay
// window of wall-clock time is sent again (a carbon that dies loses its cache), whatever
// its tick times, and nothing confirmed earlier.
func TestReplayWindow(t *testing.T) {
	const k = 50
	sink := newLineSink(t, true)
	e, sp := testExporter(t, sink.l.Addr().String())
	e.o.ReplayWindow = 3 * time.Second
	// Ticks of two days ago: by tick time, none is inside the window.
	ticks := batches(10, k)
	for i, b := range ticks {
		b.Time = time.Now().Add(-48*time.Hour + time.Duration(i)*10*time.Second).Truncate(time.Second)
	}
	stop := run(e)
	defer stop()
	appendAll(t, sp, ticks[:5])
	waitFor(t, "the first five confirmed", func() bool { return e.acked.Load() == 5*k })
	// Out of the window before the next five come.
	time.Sleep(e.o.ReplayWindow + 500*time.Millisecond)
	appendAll(t, sp, ticks[5:])
	waitFor(t, "the next five confirmed", func() bool { return e.acked.Load() == 10*k })
	replayed := e.replayed.Load()

	sink.kick()
	waitFor(t, "the window replayed", func() bool { return e.acked.Load() == 15*k })
	if got := e.replayed.Load() - replayed; got != 5*k {
		t.Errorf("replayed %d datapoints after the reconnect, want %d", got, 5*k)
	}
	checkRepeats(t, sink, ticks, 5, k)
}

// TestReplayWindowAfterRestart: a new exporter on a spool whose data a previous run
// confirmed replays the ticks of the last replay window before the oldest unconfirmed
// one (or now): it cannot know when the previous run confirmed them.
func TestReplayWindowAfterRestart(t *testing.T) {
	const k = 50
	sink := newLineSink(t, true)
	dir := t.TempDir()
	sp := openSpool(t, dir)
	first := exporterOn(t, sp, sink.l.Addr().String())
	// Ten ticks 100 s apart ending 50 s ago: with a window of 500 s measured from the
	// restart, the last five are inside it for as long as the restart takes under 50 s.
	now := time.Now()
	ticks := batches(10, k)
	for i, b := range ticks {
		b.Time = now.Add(time.Duration(i-9)*100*time.Second - 50*time.Second).Truncate(time.Second)
	}
	appendAll(t, sp, ticks)
	stop := run(first)
	waitFor(t, "everything confirmed", func() bool { return first.acked.Load() == 10*k })
	stop()
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	e := exporterOn(t, openSpool(t, dir), sink.l.Addr().String())
	e.o.ReplayWindow = 500 * time.Second
	stop = run(e)
	defer stop()
	waitFor(t, "the window replayed", func() bool { return e.acked.Load() == 5*k })
	if got := e.replayed.Load(); got != 5*k {
		t.Errorf("replayed %d datapoints after the restart, want %d", got, 5*k)
	}
	checkRepeats(t, sink, ticks, 5, k)
}

// checkRepeats checks that the sink got every series of ticks[from:] twice and those of
// the earlier ticks once, but for a nudge (the last line written, once more).
func checkRepeats(t *testing.T, sink *lineSink, ticks []*metric.Batch, from, k int) {
	t.Helper()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for i, b := range ticks {
		twice := 0
		for j := range k {
			if sink.seen[fmt.Sprintf("hosts.h.test.%d.value %d", j, b.Time.Unix())] >= 2 {
				twice++
			}
		}
		if inside := i >= from; inside && twice != k || !inside && twice > 1 {
			t.Errorf("tick %d (%s): %d of %d series received again", i, b.Time.Format(time.DateTime), twice, k)
		}
	}
}

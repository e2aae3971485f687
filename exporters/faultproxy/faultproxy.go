// Package faultproxy is a TCP proxy for tests. It sits on 127.0.0.1 between a client (the
// exporter under test) and a server (carbon, a relay), forwards both directions, and can be
// switched at any moment to fail the way networks and peers fail: refuse connections, end
// them with a FIN or a reset, cut a line in two, stop reading, read slowly, or stop
// answering at all.
//
// Behaviours are modes: Pass, StallRead, SlowRead, CutLine and BlackHole each replace the
// previous one and apply to current and new connections alike. Down and Up only open and
// close the door for new connections; CloseFIN and CloseRST end the connections open at
// the time of the call. Every method may be called from any goroutine, except Up, which
// fails the test and so belongs on the test's goroutine.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/picket-agent/picket/exporters/portlease"
)

// rcvBuf is the SO_RCVBUF asked for on the listener and so on every accepted socket (the
// kernel doubles it). It is small so that once the proxy stops reading, the window it
// advertises closes after a few kilobytes and the client's writes block soon after.
const rcvBuf = 8 << 10

// bufSize is the size of one read in either direction.
const bufSize = 32 << 10

// dialTimeout bounds the connection to the target made for each accepted client.
const dialTimeout = 10 * time.Second

type mode int

const (
	pass mode = iota
	stall
	slow
	cut
	blackHole
)

// Proxy is a fault-injecting TCP proxy to one target. Create it with New; the test's
// cleanup closes it and every connection through it.
type Proxy struct {
	t      testing.TB
	target string
	addr   string
	// hold is a socket bound to the proxy's port and never listening. It keeps the port
	// ours while the proxy is Down: both sockets set SO_REUSEPORT, so a new listener can
	// share the port with hold, and any other bind to it fails.
	hold   int
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	mode  mode
	rate  int           // bytes per second, in slow mode
	wake  chan struct{} // closed and replaced at each mode change
	ln    *net.TCPListener
	conns map[*conn]struct{}
	done  bool

	wg                                 sync.WaitGroup
	accepted, toTarget, toClient, cuts atomic.Int64
}

// Stats are the proxy's counters since New.
type Stats struct {
	Accepted int64 // client connections accepted
	Open     int   // connections open now
	ToTarget int64 // bytes forwarded from clients to the target
	ToClient int64 // bytes forwarded from the target to clients
	Cuts     int64 // lines cut in two by CutLine
}

// conn is one client connection and its connection to the target.
type conn struct {
	client, server *net.TCPConn
	// The same sockets, for reads that check the mode first.
	clientRaw, serverRaw syscall.RawConn
	once                 sync.Once
	done                 chan struct{} // closed when the connection is ended

	// Owned by the client-to-target pump.
	pending     []byte // bytes held back by CutLine until a whole line is seen
	atLineStart bool   // the last byte sent to the target was '\n' (or none was sent)
}

// New starts a proxy to target (host:port) listening on 127.0.0.1 on a free port, in Pass
// mode. The test's cleanup closes it, resetting every connection still open.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	hold, port, err := portlease.Hold()
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		t:      t,
		target: target,
		addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		hold:   hold,
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}),
		conns:  make(map[*conn]struct{}),
	}
	t.Cleanup(p.close)
	p.Up()
	return p
}

// Addr is the proxy's address, 127.0.0.1:port; it does not change across Down and Up.
func (p *Proxy) Addr() string { return p.addr }

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := len(p.conns)
	p.mu.Unlock()
	return Stats{
		Accepted: p.accepted.Load(),
		Open:     open,
		ToTarget: p.toTarget.Load(),
		ToClient: p.toClient.Load(),
		Cuts:     p.cuts.Load(),
	}
}

// Pass forwards everything both ways, on current and new connections. Bytes the proxy
// left unread in another mode are read and forwarded now; after BlackHole, the peers'
// retransmissions get through again.
func (p *Proxy) Pass() { p.setMode(pass, 0) }

// StallRead stops reading from clients, on current and new connections (which are still
// accepted): the proxy's receive buffer fills, the window it advertises goes to zero, and
// the client's writes block once its own send buffer is full. The kernel still
// acknowledges what fits in the buffer, so the client sees its bytes acknowledged but not
// read. Bytes already read are forwarded; the target-to-client direction keeps flowing.
func (p *Proxy) StallRead() { p.setMode(stall, 0) }

// SlowRead reads from clients at no more than bytesPerSecond (at least 1), on current and
// new connections.
func (p *Proxy) SlowRead(bytesPerSecond int) { p.setMode(slow, max(bytesPerSecond, 1)) }

// CutLine arms a one-off cut: the next line to go through the proxy, on whichever
// connection completes one first, is forwarded only up to its middle (at least one byte,
// never its newline), and then that connection ends: reset on the client's side, the half
// line and a FIN on the target's (a reset could discard the half line). A line already
// half sent when CutLine is called is finished first; the proxy holds back the bytes of the
// next line until its newline arrives, to know where its middle is. After the cut the
// proxy is back in Pass mode and Stats().Cuts counts it.
func (p *Proxy) CutLine() { p.setMode(cut, 0) }

// BlackHole makes the proxy a dead host: every packet from clients to its port is dropped
// before TCP sees it, so nothing is acknowledged, new connections get no SYN-ACK, and
// nothing flows either way. A client notices only through its own timeouts
// (TCP_USER_TIMEOUT, retransmission limits, keepalive). Pass ends it.
//
// A user-space proxy cannot keep its kernel from acknowledging, so the drop is done in the
// kernel, per socket: a classic BPF socket filter that accepts nothing, attached to the
// listener and to each client socket (SO_ATTACH_FILTER). The kernel runs it on every
// packet before TCP processing. It needs no privilege, touches no global firewall or
// qdisc state, and goes away with the sockets, so there is nothing to clean up.
func (p *Proxy) BlackHole() { p.setMode(blackHole, 0) }

// Down closes the listener: new connections are refused (RST to the SYN), on the same
// address, until Up. Open connections are not affected.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
}

// Up listens again on the same address after Down. It is a no-op when the proxy is up.
// It fails the test if it cannot listen, so call it from the test's goroutine.
func (p *Proxy) Up() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil || p.done {
		return
	}
	lc := net.ListenConfig{Control: listenerOptions}
	// Go listens with MPTCP by default, and MPTCP sockets refuse SO_ATTACH_FILTER.
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(p.ctx, "tcp4", p.addr)
	if err != nil {
		p.t.Fatalf("faultproxy: listening on %s: %v", p.addr, err)
	}
	ln := l.(*net.TCPListener)
	if p.mode == blackHole {
		if err := setDrop(ln, true); err != nil {
			ln.Close()
			p.t.Fatalf("faultproxy: black-holing %s: %v", p.addr, err)
		}
	}
	p.ln = ln
	p.wg.Add(1)
	go p.serve(ln)
}

// CloseFIN ends every open connection the polite way: a FIN to the client and to the
// target (shutdown), then close. A client reading sees EOF; a client that writes after it
// gets a reset. Bytes the proxy had received but not yet read make the kernel follow the
// FIN with a reset.
func (p *Proxy) CloseFIN() {
	for _, c := range p.openConns() {
		c.end(false, false)
	}
}

// CloseRST resets every open connection, to the client and to the target (SO_LINGER 0,
// then close): the client's next read or write fails with ECONNRESET or EPIPE.
func (p *Proxy) CloseRST() {
	for _, c := range p.openConns() {
		c.end(true, true)
	}
}

// openConns returns the open connections. Ending them must happen without p.mu: closing a
// socket waits for a read in progress on it, which may be waiting for p.mu.
func (p *Proxy) openConns() []*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	return cs
}

// close is the test's cleanup: it stops listening, resets every connection and waits for
// the proxy's goroutines.
func (p *Proxy) close() {
	p.mu.Lock()
	p.done = true
	p.cancel()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.mu.Unlock()
	// Connections accepted from now on see p.done and end themselves.
	for _, c := range p.openConns() {
		c.end(true, true)
	}
	p.wg.Wait()
	unix.Close(p.hold)
}

// state returns the mode, the rate of slow mode and the channel closed at the next change.
func (p *Proxy) state() (mode, int, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.rate, p.wake
}

func (p *Proxy) currentMode() mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

func (p *Proxy) setMode(m mode, rate int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.setModeLocked(m, rate); err != nil {
		p.t.Errorf("faultproxy: %v", err)
	}
}

// setModeLocked switches mode and wakes every pump: those waiting on wake, and those
// blocked in a read, through a read deadline in the past. A pump clears the deadline
// before it looks at the mode again, so it cannot miss a change.
func (p *Proxy) setModeLocked(m mode, rate int) error {
	var err error
	if (m == blackHole) != (p.mode == blackHole) {
		if p.ln != nil {
			err = setDrop(p.ln, m == blackHole)
		}
		for c := range p.conns {
			if cerr := setDrop(c.client, m == blackHole); !errors.Is(cerr, net.ErrClosed) {
				err = errors.Join(err, cerr)
			}
		}
	}
	p.mode, p.rate = m, rate
	close(p.wake)
	p.wake = make(chan struct{})
	now := time.Now()
	for c := range p.conns {
		c.client.SetReadDeadline(now)
		c.server.SetReadDeadline(now)
	}
	return err
}

// claimCut reports whether the caller may make the cut CutLine armed; it may once.
func (p *Proxy) claimCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode != cut {
		return false
	}
	p.cuts.Add(1)
	// Other connections may hold bytes back for the cut; waking them makes them send.
	p.setModeLocked(pass, 0)
	return true
}

func (p *Proxy) serve(ln *net.TCPListener) {
	defer p.wg.Done()
	for {
		client, err := ln.AcceptTCP()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.t.Logf("faultproxy: accepting on %s: %v", p.addr, err)
			}
			return
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.handle(client)
	}
}

// handle connects client to the target and runs the two pumps until both are done.
func (p *Proxy) handle(client *net.TCPConn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		// What a client connecting to the target itself would see, or close to it.
		p.t.Logf("faultproxy: %v", err)
		client.SetLinger(0)
		client.Close()
		return
	}
	c := &conn{client: client, server: server.(*net.TCPConn), done: make(chan struct{}), atLineStart: true}
	c.clientRaw, err = c.client.SyscallConn()
	if err == nil {
		c.serverRaw, err = c.server.SyscallConn()
	}
	if err != nil {
		p.t.Errorf("faultproxy: %v", err)
		c.end(true, true)
		return
	}
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		c.end(true, true)
		return
	}
	// The client socket inherited the listener's filter; a mode change may have come
	// between accept and now.
	if err := setDrop(client, p.mode == blackHole); err != nil && !errors.Is(err, net.ErrClosed) {
		p.t.Errorf("faultproxy: %v", err)
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { p.down(c) })
	p.up(c)
	wg.Wait()
	client.Close()
	server.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// up pumps client to target.
func (p *Proxy) up(c *conn) {
	buf := make([]byte, bufSize)
	for {
		m, rate, wake := p.state()
		if m != cut && !p.flush(c) {
			return
		}
		if m == stall || m == blackHole {
			select {
			case <-wake:
				continue
			case <-c.done:
				return
			}
		}
		b := buf
		if m == slow {
			// Tenths of a second's worth at a time, so the rate holds over short spans.
			b = buf[:min(len(buf), max(rate/10, 1))]
		}
		n, err := p.read(c.clientRaw, b, wake)
		if n > 0 {
			if !p.forward(c, b[:n]) {
				return
			}
			if m == slow && !c.pause(time.Duration(n)*time.Second/time.Duration(rate), wake) {
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			if p.flush(c) {
				c.server.CloseWrite()
			}
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			c.client.SetReadDeadline(time.Time{})
		default:
			c.end(true, true)
			return
		}
	}
}

// down pumps target to client.
func (p *Proxy) down(c *conn) {
	buf := make([]byte, bufSize)
	for {
		m, _, wake := p.state()
		if m == blackHole {
			select {
			case <-wake:
				continue
			case <-c.done:
				return
			}
		}
		n, err := p.read(c.serverRaw, buf, wake)
		if n > 0 {
			k, werr := c.client.Write(buf[:n])
			p.toClient.Add(int64(k))
			if werr != nil {
				c.end(true, true)
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			c.client.CloseWrite()
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			c.server.SetReadDeadline(time.Time{})
		default:
			c.end(true, true)
			return
		}
	}
}

// read reads what is there from rc into b, waiting for it if need be, unless the mode has
// changed since the caller saw wake: then it reads nothing and returns 0, nil. The check and
// the non-blocking read happen together under p.mu, so no byte is ever read under a mode
// the caller does not know of (a plain Read blocked when the mode changes can still
// return data). A mode change interrupts the wait with os.ErrDeadlineExceeded.
func (p *Proxy) read(rc syscall.RawConn, b []byte, wake <-chan struct{}) (int, error) {
	var n int
	var err error
	eof := false
	rerr := rc.Read(func(fd uintptr) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		n, err = 0, nil
		if p.wake != wake {
			return true
		}
		n, err = unix.Read(int(fd), b)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return false // wait until readable
		case errors.Is(err, unix.EINTR):
			n, err = 0, nil
		case err == nil && n == 0:
			eof = true
		}
		n = max(n, 0)
		return true
	})
	switch {
	case rerr != nil:
		return 0, rerr
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case eof:
		return 0, io.EOF
	}
	return n, nil
}

// forward sends b to the target; in cut mode it holds back what it needs to find the
// middle of the next line, and makes the cut. It reports whether the connection goes on.
func (p *Proxy) forward(c *conn, b []byte) bool {
	if len(c.pending) == 0 && p.currentMode() != cut {
		return p.send(c, b)
	}
	c.pending = append(c.pending, b...)
	for len(c.pending) > 0 {
		if p.currentMode() != cut {
			return p.flush(c)
		}
		i := bytes.IndexByte(c.pending, '\n')
		if i < 0 {
			if c.atLineStart {
				return true // wait for the end of the line
			}
			return p.flush(c) // the line in progress goes on
		}
		if !c.atLineStart || i == 0 {
			// Finish the line in progress; an empty line has no middle.
			if !p.send(c, c.pending[:i+1]) {
				return false
			}
			c.pending = c.pending[i+1:]
			continue
		}
		if !p.claimCut() {
			continue // another connection made the cut; flush on the next turn
		}
		// The target gets the half line and a FIN: a reset could discard the half line
		// from the send queue before it leaves.
		p.send(c, c.pending[:max(i/2, 1)])
		c.pending = nil
		c.end(true, false)
		return false
	}
	return true
}

// flush sends what forward held back.
func (p *Proxy) flush(c *conn) bool {
	if len(c.pending) == 0 {
		return true
	}
	ok := p.send(c, c.pending)
	c.pending = c.pending[:0]
	return ok
}

func (p *Proxy) send(c *conn, b []byte) bool {
	n, err := c.server.Write(b)
	p.toTarget.Add(int64(n))
	if n > 0 {
		c.atLineStart = b[n-1] == '\n'
	}
	if err != nil {
		c.end(true, true)
		return false
	}
	return true
}

// pause waits d, or less if the mode changes; it reports false if the connection ended.
func (c *conn) pause(d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-wake:
	case <-c.done:
		return false
	}
	return true
}

// end closes both sides, once: each with a reset (SO_LINGER 0, which also discards what
// is still in the send queue) or with a FIN first.
func (c *conn) end(rstClient, rstServer bool) {
	c.once.Do(func() {
		close(c.done)
		// The client first: once the target sees its side end, it may close, and the
		// target-to-client pump would pass that on as a FIN before our reset.
		for _, e := range []struct {
			s   *net.TCPConn
			rst bool
		}{{c.client, rstClient}, {c.server, rstServer}} {
			if e.rst {
				e.s.SetLinger(0)
			} else {
				e.s.CloseWrite()
			}
			e.s.Close()
		}
	})
}

// listenerOptions sets, before bind, what the listener and the sockets it accepts need:
// SO_REUSEPORT to share the port with Proxy.hold, and the small receive buffer.
func listenerOptions(_, _ string, rc syscall.RawConn) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		if err == nil {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
		}
	})
	return errors.Join(cerr, err)
}

// dropAll is a classic BPF socket filter that keeps no byte of any packet: the kernel
// drops the packet before TCP looks at it.
var dropAll = [1]unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// setDrop attaches dropAll to s, or detaches any filter from it.
func setDrop(s syscall.Conn, on bool) error {
	rc, err := s.SyscallConn()
	if err != nil {
		return err
	}
	cerr := rc.Control(func(fd uintptr) {
		if on {
			err = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
				&unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]})
			return
		}
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
		if errors.Is(err, unix.ENOENT) {
			err = nil // there was none
		}
	})
	if err = errors.Join(cerr, err); err != nil {
		return fmt.Errorf("socket filter: %w", err)
	}
	return nil
}

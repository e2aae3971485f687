package faultproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// greeting is what target sends first on every connection, to see the target-to-client
// direction work.
const greeting = "hello\n"

// target is the server behind the proxy: it greets each connection, keeps every byte it
// receives, and how each connection ended.
type target struct {
	ln   net.Listener
	mu   sync.Mutex
	got  []byte
	ends []error // per connection, in order of ending: nil for EOF, else the read error
}

func newTarget(t *testing.T) *target {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &target{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(c) })
		}
	})
	return s
}

func (s *target) serve(c net.Conn) {
	defer c.Close()
	c.Write([]byte(greeting))
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		s.mu.Lock()
		s.got = append(s.got, buf[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			s.ends = append(s.ends, err)
		}
		s.mu.Unlock()
		if err != nil || n == 0 {
			return
		}
	}
}

func (s *target) addr() string { return s.ln.Addr().String() }

func (s *target) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.got)
}

// waitReceived waits until the target has received want, exactly.
func (s *target) waitReceived(t *testing.T, want string) {
	t.Helper()
	poll(t, fmt.Sprintf("target to receive %d bytes", len(want)), func() bool { return len(s.received()) >= len(want) })
	if got := s.received(); got != want {
		t.Fatalf("target received %q, want %q", clip(got), clip(want))
	}
}

// waitEnds waits until n connections to the target have ended, and returns how.
func (s *target) waitEnds(t *testing.T, n int) []error {
	t.Helper()
	var ends []error
	poll(t, fmt.Sprintf("%d target connections to end", n), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		ends = append([]error(nil), s.ends...)
		return len(ends) >= n
	})
	return ends
}

func clip(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%s…(%d bytes)", s[:80], len(s))
	}
	return s
}

// poll waits up to 15 s for cond.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// dialGreeted dials addr and reads the target's greeting, so the connection is known to go
// all the way through.
func dialGreeted(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c := dial(t, addr)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(greeting))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != greeting {
		t.Fatalf("reading the greeting: %q, %v", buf, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// readErr reads from c until an error, bounded, and returns it.
func readErr(t *testing.T, c net.Conn) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the connection is still open")
			}
			return err
		}
	}
}

// writeErr writes to c until a write fails, bounded, and returns the error.
func writeErr(t *testing.T, c net.Conn) error {
	t.Helper()
	var err error
	poll(t, "a write to fail", func() bool {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		_, err = c.Write([]byte("x\n"))
		return err != nil
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write blocked instead of failing: %v", err)
	}
	return err
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func TestPass(t *testing.T) {
	t.Parallel()
	s := newTarget(t)
	p := New(t, s.addr())
	c := dialGreeted(t, p.Addr())
	write(t, c, "a.b 1 1700000000\n")
	s.waitReceived(t, "a.b 1 1700000000\n")

	if got, want := p.Stats(), (Stats{Accepted: 1, Open: 1, ToTarget: 17, ToClient: int64(len(greeting))}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	c.Close()
	poll(t, "the connection to close", func() bool { return p.Stats().Open == 0 })
	if ends := s.waitEnds(t, 1); ends[0] != nil {
		t.Errorf("target connection ended with %v, want EOF", ends[0])
	}
}

func TestDownUp(t *testing.T) {
	t.Parallel()
	s := newTarget(t)
	p := New(t, s.addr())
	open := dialGreeted(t, p.Addr())

	p.Down()
	if c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial while down: %v, want connection refused", err)
	}
	write(t, open, "open 1 1\n")
	s.waitReceived(t, "open 1 1\n")

	p.Up()
	c := dialGreeted(t, p.Addr())
	write(t, c, "new 2 2\n")
	s.waitReceived(t, "open 1 1\nnew 2 2\n")
	p.Up() // no-op when up
	if got := p.Stats().Accepted; got != 2 {
		t.Errorf("Accepted = %d, want 2", got)
	}
}

func TestCloseFIN(t *testing.T) {
	t.Parallel()
	s := newTarget(t)
	p := New(t, s.addr())
	c := dialGreeted(t, p.Addr())
	write(t, c, "a 1 1\n")
	s.waitReceived(t, "a 1 1\n")

	p.CloseFIN()
	if err := readErr(t, c); !errors.Is(err, io.EOF) {
		t.Errorf("client read after CloseFIN: %v, want EOF", err)
	}
	if err := writeErr(t, c); !isReset(err) {
		t.Errorf("client write after CloseFIN: %v, want a reset", err)
	}
	if ends := s.waitEnds(t, 1); ends[0] != nil {
		t.Errorf("target connection ended with %v, want EOF", ends[0])
	}
	// New connections pass.
	write(t, dialGreeted(t, p.Addr()), "b 2 2\n")
	s.waitReceived(t, "a 1 1\nb 2 2\n")
}

func TestCloseRST(t *testing.T) {
	t.Parallel()
	s := newTarget(t)
	p := New(t, s.addr())
	c := dialGreeted(t, p.Addr())
	write(t, c, "a 1 1\n")
	s.waitReceived(t, "a 1 1\n")

	p.CloseRST()
	if err := readErr(t, c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after CloseRST: %v, want ECONNRESET", err)
	}
	if ends := s.waitEnds(t, 1); !errors.Is(ends[0], syscall.ECONNRESET) {
		t.Errorf("target connection ended with %v, want ECONNRESET", ends[0])
	}
	write(t, dialGreeted(t, p.Addr()), "b 2 2\n")
	s.waitReceived(t, "a 1 1\nb 2 2\n")
}

func TestCutLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		before, after string // written before and after CutLine
		want          string // what the target gets
	}{
		{"at line start", "one 1 1\n", "0123456789\nnever 2 2\n", "one 1 1\n01234"},
		{"mid line", "abc", "def\n\nghijkl\n", "abcdef\n\nghi"},
		{"short line", "", "x\ny\n", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTarget(t)
			p := New(t, s.addr())
			c := dialGreeted(t, p.Addr())
			if tc.before != "" {
				write(t, c, tc.before)
				s.waitReceived(t, tc.before)
			}
			p.CutLine()
			write(t, c, tc.after)

			if err := readErr(t, c); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("client read after the cut: %v, want ECONNRESET", err)
			}
			s.waitEnds(t, 1)
			if got := s.received(); got != tc.want {
				t.Errorf("target received %q, want %q", got, tc.want)
			}
			if got := p.Stats().Cuts; got != 1 {
				t.Errorf("Cuts = %d, want 1", got)
			}
			// One cut only: the next connection passes whole lines.
			write(t, dialGreeted(t, p.Addr()), "next 3 3\n")
			s.waitReceived(t, tc.want+"next 3 3\n")
		})
	}
}

// lines returns n numbered lines.
func lines(from, n int) []byte {
	var b bytes.Buffer
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "series.%08d 1 1700000000\n", i)
	}
	return b.Bytes()
}

func TestStallRead(t *testing.T) {
	t.Parallel()
	s := newTarget(t)
	p := New(t, s.addr())
	c := dialGreeted(t, p.Addr())
	write(t, c, "before 1 1\n")
	s.waitReceived(t, "before 1 1\n")

	p.StallRead()
	// The client writes until a write blocks for 200 ms: its send buffer and the proxy's
	// receive buffer are full.
	data := lines(0, 1<<20)
	sent := 0
	for {
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Write(data[sent:min(sent+4096, len(data))])
		sent += n
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if sent == len(data) {
			t.Fatalf("all %d bytes written without blocking", sent)
		}
	}
	t.Logf("client blocked after %d bytes", sent)
	if got := s.received(); got != "before 1 1\n" {
		t.Fatalf("target received %q while stalled", clip(got))
	}
	// New connections are still accepted, and stalled too.
	late := dialGreeted(t, p.Addr())

	p.Pass()
	s.waitReceived(t, "before 1 1\n"+string(data[:sent]))
	write(t, late, "late 2 2\n")
	s.waitReceived(t, "before 1 1\n"+string(data[:sent])+"late 2 2\n")
}

func TestSlowRead(t *testing.T) {
	t.Parallel()
	s := newTarget(t)
	p := New(t, s.addr())
	c := dialGreeted(t, p.Addr())

	const rate = 20000
	p.SlowRead(rate)
	data := string(lines(0, 400)) // 10,000 bytes: half a second at rate
	start := time.Now()
	write(t, c, data)
	s.waitReceived(t, data)
	// The first tenth of a second's worth goes at once.
	if took, least := time.Since(start), time.Duration(len(data)-rate/10)*time.Second/rate; took < least {
		t.Errorf("%d bytes took %v at %d bytes/s, want at least %v", len(data), took, rate, least)
	}
}

func TestBlackHole(t *testing.T) {
	t.Parallel()
	s := newTarget(t)
	p := New(t, s.addr())
	timed := dialGreeted(t, p.Addr()) // gives up after 2 s without an ACK
	rc, err := timed.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 2000)
	})
	if err != nil {
		t.Fatal(err)
	}
	patient := dialGreeted(t, p.Addr()) // default timeouts: survives the outage

	p.BlackHole()
	write(t, patient, "during 1 1\n")
	start := time.Now()
	err = writeErr(t, timed)
	took := time.Since(start)
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("write in the black hole: %v, want ETIMEDOUT", err)
	}
	if took < 1500*time.Millisecond || took > 10*time.Second {
		t.Errorf("write failed after %v, want about TCP_USER_TIMEOUT (2 s)", took)
	}
	if got := s.received(); got != "" {
		t.Errorf("target received %q through the black hole", got)
	}
	// No SYN-ACK either: the dial times out rather than being refused.
	var ne net.Error
	if c, err := net.DialTimeout("tcp", p.Addr(), 500*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		if c != nil {
			c.Close()
		}
		t.Errorf("dial into the black hole: %v, want a timeout", err)
	}

	p.Pass()
	// The patient connection's retransmission gets through, and new connections work.
	s.waitReceived(t, "during 1 1\n")
	write(t, dialGreeted(t, p.Addr()), "after 2 2\n")
	s.waitReceived(t, "during 1 1\nafter 2 2\n")
}

func TestCleanupEndsConnections(t *testing.T) {
	t.Parallel()
	s := newTarget(t)
	var c net.Conn
	t.Run("proxy", func(t *testing.T) {
		p := New(t, s.addr())
		var err error
		if c, err = net.Dial("tcp", p.Addr()); err != nil {
			t.Fatal(err)
		}
		poll(t, "the connection to open", func() bool { return p.Stats().Open == 1 })
		p.StallRead() // a pump waiting for a mode change must not hold up the cleanup
	})
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	if err := readErr(t, c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after the proxy's cleanup: %v, want ECONNRESET", err)
	}
}

package carbontest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wait bounds every wait for carbon to write; it writes about every second.
const wait = 20 * time.Second

// send writes lines to addr on a new connection, and closes it.
func send(t *testing.T, addr string, lines ...string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, strings.Join(lines, "\n")+"\n"); err != nil {
		t.Fatal(err)
	}
}

func line(series string, v float64, ts int64) string {
	return fmt.Sprintf("%s %s %d", series, strconv.FormatFloat(v, 'g', -1, 64), ts)
}

func checkPoints(t *testing.T, c *Carbon, series string, want map[int64]float64) {
	t.Helper()
	if got := c.WaitPoints(t, series, len(want), wait); !maps.Equal(got, want) {
		t.Errorf("%s: points %v, want %v", series, got, want)
	}
}

func TestCarbonPoints(t *testing.T) {
	t.Parallel()
	c := Start(t)
	now := time.Now().Unix()
	want := map[string]map[int64]float64{
		"a.b.c":            {now - 3: 1.5, now - 2: -2.25, now - 1: 1e300},
		"a.b.d":            {now - 1: 0},
		"tagged.m;b=2;a=x": {now - 2: 7},
	}
	send(t, c.Addr(),
		line("a.b.c", 1.5, now-3), line("a.b.c", -2.25, now-2),
		line("a.b.c", 99, now-1), line("a.b.c", 1e300, now-1), // the last value of a timestamp wins
		line("a.b.d", 0, now-1),
		line("tagged.m;b=2;a=x", 7, now-2),
		"not a line",
	)
	start := time.Now()
	for series, pts := range want {
		checkPoints(t, c, series, pts)
	}
	t.Logf("points in whisper %v after sending", time.Since(start).Round(time.Millisecond))
	if got, want := c.Series(t), []string{"a.b.c", "a.b.d", "tagged.m;a=x;b=2"}; !slices.Equal(got, want) {
		t.Errorf("Series() = %q, want %q", got, want)
	}
	if got := c.Points(t, "a.b.nothing"); len(got) != 0 {
		t.Errorf("Points of a series never sent = %v, want none", got)
	}

	// The reference reader agrees.
	Require(t, "whisper-fetch")
	out, err := exec.Command("whisper-fetch", "--json", "--from="+strconv.FormatInt(now-10, 10),
		"--until="+strconv.FormatInt(now, 10), c.path("a.b.c")).Output()
	if err != nil {
		t.Fatalf("whisper-fetch: %v", err)
	}
	var fetched struct {
		Start, Step int64
		Values      []*float64
	}
	if err := json.Unmarshal(out, &fetched); err != nil {
		t.Fatalf("whisper-fetch: %v in %s", err, out)
	}
	got := map[int64]float64{}
	for i, v := range fetched.Values {
		if v != nil {
			got[fetched.Start+int64(i)*fetched.Step] = *v
		}
	}
	if !maps.Equal(got, want["a.b.c"]) {
		t.Errorf("whisper-fetch: %v, want %v", got, want["a.b.c"])
	}
}

func TestStopRestart(t *testing.T) {
	t.Parallel()
	c := Start(t, WithRetentions("1s:1h"))
	addr := c.Addr()
	now := time.Now().Unix()
	send(t, addr, line("before", 1, now-2))
	checkPoints(t, c, "before", map[int64]float64{now - 2: 1})

	open, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	c.Stop()
	// Carbon closed its connections, and nothing listens on the port.
	open.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := open.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read from a connection to a stopped carbon: %v, want EOF", err)
	}
	if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial a stopped carbon: %v, want connection refused", err)
	}
	c.Stop() // no-op

	c.Restart()
	if c.Addr() != addr {
		t.Fatalf("Addr() = %s after Restart, was %s", c.Addr(), addr)
	}
	send(t, addr, line("after", 2, now-1))
	checkPoints(t, c, "after", map[int64]float64{now - 1: 2})
	checkPoints(t, c, "before", map[int64]float64{now - 2: 1})
}

// TestStopLosesCache pins what the package says of Stop: carbon-cache 1.1 does not write on
// SIGTERM what arrived while its writer slept. Its writer sleeps a second after each pass,
// so the test sends a point just after a pass (the one that wrote the previous point),
// waits until carbon has read it, and stops carbon. Should the writer wake up first, it
// tries again.
func TestStopLosesCache(t *testing.T) {
	t.Parallel()
	c := Start(t)
	now := time.Now().Unix()
	for attempt := range 3 {
		pass := fmt.Sprintf("pass.%d", attempt)
		send(t, c.Addr(), line(pass, 1, now))
		c.WaitPoints(t, pass, 1, wait)

		conn, err := net.Dial("tcp", c.Addr())
		if err != nil {
			t.Fatal(err)
		}
		lost := fmt.Sprintf("lost.%d", attempt)
		if _, err := io.WriteString(conn, line(lost, 2, now)+"\n"); err != nil {
			t.Fatal(err)
		}
		waitRead(t, conn)
		c.Stop()
		conn.Close()
		if len(c.Points(t, lost)) == 0 {
			return
		}
		t.Logf("attempt %d: the writer woke before the stop", attempt)
		c.Restart()
	}
	t.Error("Stop wrote what carbon had read, three times out of three")
}

// waitRead waits until the peer of c, on this host, has read everything c sent: c's send
// queue and the peer's receive queue are empty in /proc/net/tcp.
func waitRead(t *testing.T, c net.Conn) {
	t.Helper()
	hex := func(a net.Addr) string {
		ap := a.(*net.TCPAddr).AddrPort()
		ip := ap.Addr().As4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())
	}
	local, remote := hex(c.LocalAddr()), hex(c.RemoteAddr())
	deadline := time.Now().Add(wait)
	for {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		unsent, unread := true, true
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) < 5 {
				continue
			}
			tx, rx, _ := strings.Cut(f[4], ":")
			switch {
			case f[1] == local && f[2] == remote:
				unsent = strings.Trim(tx, "0") != ""
			case f[1] == remote && f[2] == local:
				unread = strings.Trim(rx, "0") != ""
			}
		}
		if !unsent && !unread {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("carbon did not read what was sent")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKillLosesCache slows carbon's writer to one series a second, so that when the first
// series is in whisper the others are still in the cache, and kills it.
func TestKillLosesCache(t *testing.T) {
	t.Parallel()
	c := Start(t, WithSetting("MAX_UPDATES_PER_SECOND", "1"))
	now := time.Now().Unix()
	const n = 10
	var lines []string
	for i := range n {
		lines = append(lines, line(fmt.Sprintf("s.%d", i), float64(i), now-1))
	}
	send(t, c.Addr(), lines...)
	deadline := time.Now().Add(wait)
	for len(c.Series(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no series written")
		}
		time.Sleep(pollInterval)
	}
	c.Kill()
	kept := c.Series(t)
	if len(kept) >= n {
		t.Fatalf("all %d series written before Kill; the writer was not slowed down", n)
	}

	c.Restart()
	send(t, c.Addr(), line("marker", 1, now))
	checkPoints(t, c, "marker", map[int64]float64{now: 1})
	// Written after the restart, the marker shows carbon is writing again: the series that
	// were in the cache at Kill are gone, not late.
	want := append(slices.Clone(kept), "marker")
	slices.Sort(want)
	if got := c.Series(t); !slices.Equal(got, want) {
		t.Errorf("Series() after Kill and Restart = %q, want %q", got, want)
	}
	t.Logf("Kill lost %d of %d series", n-len(kept), n)
}

func TestRelayFailover(t *testing.T) {
	t.Parallel()
	primary, standby := Start(t), Start(t)
	r := StartRelay(t, primary.Addr(), standby.Addr())
	now := time.Now().Unix()

	send(t, r.Addr(), line("via.relay", 1, now-3))
	checkPoints(t, primary, "via.relay", map[int64]float64{now - 3: 1})
	if got := standby.Series(t); len(got) != 0 {
		t.Errorf("standby has %q while the primary is up", got)
	}

	primary.Kill()
	deadline := time.Now().Add(wait)
	for len(standby.Points(t, "via.relay")) == 0 {
		// The relay notices the primary is down when it next sends to it; until then
		// it may queue for it, so keep sending.
		if time.Now().After(deadline) {
			t.Fatal("nothing reached the standby")
		}
		send(t, r.Addr(), line("via.relay", 2, now-2))
		time.Sleep(100 * time.Millisecond)
	}

	r.Restart()
	send(t, r.Addr(), line("after.restart", 3, now))
	checkPoints(t, standby, "after.restart", map[int64]float64{now: 3})
}

// errorsTB records the errors a helper reports instead of failing the test.
type errorsTB struct {
	testing.TB
	errs []string
}

func (e *errorsTB) Errorf(format string, args ...any) {
	e.errs = append(e.errs, fmt.Sprintf(format, args...))
}

func TestExpect(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	now := time.Now().Unix()
	send(t, a.Addr(), line("x.one", 1, now-2), line("x.two", 2, now-2))
	send(t, b.Addr(), line("x.one", 1, now-1), line("x.one", 1, now-2)) // a repeat, as a replay makes
	want := map[string]map[int64]float64{"x.one": {now - 2: 1, now - 1: 1}, "x.two": {now - 2: 2}}
	if Expect(t, wait, want, a, b); t.Failed() {
		return
	}

	rec := &errorsTB{TB: t}
	Expect(rec, time.Second, map[string]map[int64]float64{
		"x.one":   {now - 2: 1}, // b holds now-1 too
		"x.two":   {now - 2: 3}, // a holds 2
		"x.three": {now: 3},     // nowhere
	}, a, b)
	wantErrs := []string{"1 of 3 points not in whisper", "holds x.one@" + strconv.FormatInt(now-1, 10) + " = 1, not expected", "holds x.two@" + strconv.FormatInt(now-2, 10) + " = 2, want 3"}
	if len(rec.errs) != len(wantErrs) {
		t.Fatalf("Expect reported %q, want %d errors", rec.errs, len(wantErrs))
	}
	for _, w := range wantErrs {
		if !slices.ContainsFunc(rec.errs, func(e string) bool { return strings.Contains(e, w) }) {
			t.Errorf("Expect reported %q, none saying %q", rec.errs, w)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picket-agent/picket/exporters/carbontest"
	"github.com/picket-agent/picket/exporters/faultproxy"
	"github.com/picket-agent/picket/exporters/graphite"
	"github.com/picket-agent/picket/exporters/spool"
)

// These tests run the agent binary against a real carbon-cache through a fault proxy, stop
// it the hard way or damage its spool, and check afterwards, reading the spool directory
// with the spool package, that every datapoint it holds is in whisper with its value.

// e2eHost is the host node of the agent's paths in these tests.
const e2eHost = "e2e"

// deliveryWait bounds each wait for the agent and carbon.
const deliveryWait = 30 * time.Second

// agentRun is one run of `picket run` sending to a Graphite endpoint.
type agentRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan struct{}
	err    error // how it exited, once exited is closed
}

// lockedBuffer is stderr, written by os/exec's goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// onlyLoad returns the flags that turn off every collector but load, read from the
// binary's help: load and the agent's own picket.* series are some 60 series, which carbon
// takes in at a tick a second with ease.
func onlyLoad(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command(binary, "run", "--help").Output()
	if err != nil {
		t.Fatalf("picket run --help: %v", err)
	}
	var flags []string
	for _, m := range regexp.MustCompile(`--\[no-\]collector\.([a-z0-9_]+) `).FindAllStringSubmatch(string(out), -1) {
		if m[1] != "load" {
			flags = append(flags, "--no-collector."+m[1])
		}
	}
	if len(flags) == 0 {
		t.Fatalf("no --[no-]collector.<name> flags in picket run --help:\n%s", out)
	}
	return flags
}

// startAgent runs the agent with a one-second interval, its spool in dir, sending to
// endpoint with timeouts short enough for a test. The test's cleanup kills it.
func startAgent(t *testing.T, dir, endpoint string) *agentRun {
	t.Helper()
	args := append([]string{"run", "--config", emptyConfig(t), "--interval", "1s", "--hostname", e2eHost,
		"--spool.dir", dir, "--graphite.address", endpoint, "--graphite.splay", "0s",
		"--graphite.ack-timeout", "2s", "--graphite.backoff-min", "50ms", "--graphite.backoff-max", "500ms",
		"--graphite.replay-window", "30s", "--shutdown-timeout", "5s"}, onlyLoad(t)...)
	a := &agentRun{t: t, cmd: exec.Command(binary, args...), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	a.cmd.Stderr = a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		a.err = a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.exited
		if t.Failed() {
			t.Logf("picket %s, stderr:\n%s", strings.Join(args, " "), a.stderr)
		}
	})
	return a
}

// kill ends the agent with SIGKILL, as a crash or the OOM killer would.
func (a *agentRun) kill() {
	a.t.Helper()
	a.cmd.Process.Kill()
	<-a.exited
}

// stop sends SIGTERM half way between two ticks, when the last tick has been sent and the
// next is half a second away, and waits for a clean exit. The exporter then has only that
// tick in flight to confirm before it exits.
func (a *agentRun) stop() {
	a.t.Helper()
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(1500 * time.Millisecond).Sub(now))
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		a.t.Fatal(err)
	}
	select {
	case <-a.exited:
	case <-time.After(deliveryWait):
		a.t.Fatalf("picket still running %v after SIGTERM", deliveryWait)
	}
	if a.err != nil {
		a.t.Fatalf("picket exited with %v after SIGTERM, want 0", a.err)
	}
}

// spoolContent is what a spool directory holds, read with the spool package.
type spoolContent struct {
	records []spoolRecord
	// cursor is where the exporter's cursor (named graphite) is, and end the spool's end.
	cursor, end spool.Position
	// graphiteDrops are the drops charged to the exporter's cursor when the spool opened.
	graphiteDrops spool.Drops
}

type spoolRecord struct {
	pos, end spool.Position
	time     time.Time
	lines    []string // as the agent sends them
	samples  int
}

// readSpool reads a copy of the spool directory dir, so that the agent's own is left as
// it is (Open would truncate a torn end, a cursor would add a file): the graphite cursor,
// and every record from the start with a fresh cursor's iterator, which passes over
// damaged ones.
func readSpool(t *testing.T, dir string) *spoolContent {
	t.Helper()
	cp := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "LOCK" || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cp, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sp, err := spool.Open(spool.Options{Dir: cp, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	g, err := sp.Cursor("graphite")
	if err != nil {
		t.Fatal(err)
	}
	check, err := sp.Cursor("check")
	if err != nil {
		t.Fatal(err)
	}
	s := &spoolContent{cursor: g.Position(), end: sp.End(), graphiteDrops: g.Drops()}
	it := check.Iterator(sp.Start())
	defer it.Close()
	for it.Pos().Less(s.end) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rec, err := it.Next(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && it.Pos() == s.end {
			break // damaged records at the end, skipped
		}
		if err != nil {
			t.Fatalf("reading the spool at %v: %v", it.Pos(), err)
		}
		r := spoolRecord{pos: rec.Pos, end: rec.End, time: rec.Batch.Time, samples: len(rec.Batch.Samples)}
		for i := range rec.Batch.Samples {
			if line, ok := graphite.AppendPlain(nil, "hosts", e2eHost, &rec.Batch.Samples[i], rec.Batch.Time.Unix()); ok {
				r.lines = append(r.lines, string(line))
			}
		}
		s.records = append(s.records, r)
	}
	return s
}

// points returns the datapoints of the records as carbontest.Expect takes them.
func points(t *testing.T, recs []spoolRecord) map[string]map[int64]float64 {
	t.Helper()
	m := map[string]map[int64]float64{}
	for _, r := range recs {
		for _, l := range r.lines {
			f := strings.Fields(l)
			v, err1 := strconv.ParseFloat(f[1], 64)
			ts, err2 := strconv.ParseInt(f[2], 10, 64)
			if len(f) != 3 || err1 != nil || err2 != nil {
				t.Fatalf("line %q", l)
			}
			if m[f[0]] == nil {
				m[f[0]] = map[int64]float64{}
			}
			if _, dup := m[f[0]][ts]; dup {
				t.Fatalf("the spool holds %s at %d twice", f[0], ts)
			}
			m[f[0]][ts] = v
		}
	}
	return m
}

// selfValues returns the values of the agent's picket.graphite.<field> in recs, by tick.
func selfValues(recs []spoolRecord, field string) map[int64]float64 {
	prefix := "hosts." + e2eHost + ".picket.graphite." + field + " "
	vals := map[int64]float64{}
	for _, r := range recs {
		for _, l := range r.lines {
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				f := strings.Fields(rest)
				v, _ := strconv.ParseFloat(f[0], 64)
				vals[r.time.Unix()] = v
			}
		}
	}
	return vals
}

// waitCaughtUp waits until carbon has a tick from after since (unix seconds) at which the
// agent reported nothing left to deliver: picket.graphite.backlog_datapoints 0, which
// the cursor being at the end of the spool makes exact.
func waitCaughtUp(t *testing.T, c *carbontest.Carbon, since int64) {
	t.Helper()
	series := "hosts." + e2eHost + ".picket.graphite.backlog_datapoints"
	for deadline := time.Now().Add(deliveryWait); ; {
		for ts, v := range c.Points(t, series) {
			if ts > since && v == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tick after %d with %s 0 in whisper after %v: %v", since, series, deliveryWait, c.Points(t, series))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startDelivery starts carbon, a proxy in front of it and the agent, and waits until the
// agent's ticks reach whisper.
func startDelivery(t *testing.T) (*carbontest.Carbon, *faultproxy.Proxy, string, *agentRun) {
	t.Helper()
	c := carbontest.Start(t, carbontest.WithRetentions("1s:1h"))
	p := faultproxy.New(t, c.Addr())
	dir := filepath.Join(t.TempDir(), "spool")
	a := startAgent(t, dir, p.Addr())
	c.WaitPoints(t, "hosts."+e2eHost+".load.load1", 3, deliveryWait)
	return c, p, dir, a
}

// outage closes the proxy, ending the agent's connection and refusing new ones, for n
// ticks.
func outage(p *faultproxy.Proxy, n int) {
	p.Down()
	p.CloseFIN()
	time.Sleep(time.Duration(n) * time.Second)
}

// TestKillMidOutage: the agent is SIGKILLed while its endpoint is down and restarted on
// the same spool; once the endpoint is back, everything the spool holds, from both runs,
// is in whisper.
//
// The kill can cut one tick. If the agent had not started writing it, the tick is not in
// the spool and nobody counts it: it was never accepted, and the delivery contract allows
// a crash to lose that one tick. If the kill tore its record in the middle (a write of
// several pages can stop between two), the restarted agent truncates it at Open and counts
// its datapoints as dropped_corrupt; the test finds such a record by opening a copy of the
// spool before the restart, and requires picket.graphite.dropped_corrupt to be exactly its
// datapoints in every tick of the second run (0 when there was none).
func TestKillMidOutage(t *testing.T) {
	carbontest.Require(t, "carbon-cache")
	t.Parallel()
	c, p, dir, a := startDelivery(t)
	outage(p, 4)
	// Just after a tick is due, while it is being collected or written.
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 2*time.Millisecond).Sub(now))
	killedAt := time.Now()
	a.kill()

	killed := readSpool(t, dir)
	torn := killed.graphiteDrops.Corrupt
	if killed.cursor == killed.end {
		t.Fatal("all was delivered during the outage")
	}
	// The first run's ticks follow each other, up to the one due before the kill, or the
	// one before that if the kill cut it.
	due := killedAt.Truncate(time.Second)
	last := killed.records[len(killed.records)-1].time
	for i, r := range killed.records[1:] {
		if prev := killed.records[i].time; !r.time.Equal(prev.Add(time.Second)) {
			t.Errorf("tick %v follows tick %v in the spool", r.time, prev)
		}
	}
	if last.Before(due.Add(-time.Second)) || last.After(due) {
		t.Errorf("the last tick spooled is %v; killed at %v, want %v or the one before", last, killedAt, due)
	}
	t.Logf("killed %v after tick %v was due, with %d ticks spooled, the last %v, and %d datapoints in a torn record",
		killedAt.Sub(due).Round(time.Millisecond), due.Unix(), len(killed.records), last.Unix(), torn)

	a = startAgent(t, dir, p.Addr())
	time.Sleep(2 * time.Second) // still down, for the second run too
	up := time.Now().Unix()
	p.Up()
	waitCaughtUp(t, c, up)
	t.Logf("caught up %v after the endpoint came back", time.Since(time.Unix(up, 0)).Round(100*time.Millisecond))
	a.stop()

	final := readSpool(t, dir)
	if final.cursor != final.end {
		t.Errorf("cursor at %v after a clean stop, want the end %v: the tick in flight was not confirmed", final.cursor, final.end)
	}
	// Every record the first run wrote is still there, or it was the torn one.
	if n := len(killed.records); len(final.records) < n || !slices.EqualFunc(final.records[:n], killed.records, func(a, b spoolRecord) bool {
		return a.pos == b.pos && slices.Equal(a.lines, b.lines)
	}) {
		t.Errorf("the second run changed the records of the first")
	}
	want := points(t, final.records)
	n := 0
	for _, pts := range want {
		n += len(pts)
	}
	t.Logf("%d records, %d series, %d datapoints", len(final.records), len(want), n)
	carbontest.Expect(t, deliveryWait, want, c)

	second := selfValues(final.records[len(killed.records):], "dropped_corrupt")
	if len(second) == 0 {
		t.Fatal("no picket.graphite.dropped_corrupt in the second run's ticks")
	}
	for ts, v := range second {
		if v != float64(torn) {
			t.Errorf("picket.graphite.dropped_corrupt = %v at %d, want %d", v, ts, torn)
		}
	}
}

// TestDamagedSpool: while the agent is stopped with undelivered ticks in its spool, the
// last segment is cut in the middle of its last record and a bit is flipped in the payload
// of an earlier undelivered record. The restarted agent delivers everything else, and
// counts the datapoints of both damaged records, exactly, in dropped_corrupt: the torn one
// from Open, the flipped one once its exporter reads that far.
func TestDamagedSpool(t *testing.T) {
	carbontest.Require(t, "carbon-cache")
	t.Parallel()
	c, p, dir, a := startDelivery(t)
	outage(p, 4)
	a.stop()

	before := readSpool(t, dir)
	var undelivered []spoolRecord
	for _, r := range before.records {
		if !r.pos.Less(before.cursor) {
			undelivered = append(undelivered, r)
		}
	}
	if len(undelivered) < 3 {
		t.Fatalf("%d undelivered records after a 4 s outage, want 3 at least", len(undelivered))
	}
	flipped, torn := undelivered[1], undelivered[len(undelivered)-1]
	if torn.end != before.end {
		t.Fatalf("the last record ends at %v, the spool at %v", torn.end, before.end)
	}
	seg := filepath.Join(dir, fmt.Sprintf("%016x.seg", torn.pos.Segment))
	// The header is 28 bytes: the middle of the payload is well past it.
	flipAt := flipped.pos.Offset + (flipped.end.Offset-flipped.pos.Offset)/2 + 14
	flipBit(t, filepath.Join(dir, fmt.Sprintf("%016x.seg", flipped.pos.Segment)), flipAt)
	if err := os.Truncate(seg, torn.pos.Offset+(torn.end.Offset-torn.pos.Offset)/2); err != nil {
		t.Fatal(err)
	}
	wantCorrupt := float64(flipped.samples + torn.samples)
	t.Logf("flipped a bit of the record of tick %d (%d datapoints), cut the record of tick %d (%d datapoints)",
		flipped.time.Unix(), flipped.samples, torn.time.Unix(), torn.samples)

	a = startAgent(t, dir, p.Addr())
	up := time.Now().Unix()
	p.Up()
	waitCaughtUp(t, c, up)
	a.stop()

	after := readSpool(t, dir)
	if after.cursor != after.end {
		t.Errorf("cursor at %v after a clean stop, want the end %v", after.cursor, after.end)
	}
	// The damaged records are gone from what the spool can be read for, and nothing else
	// is: what is read back now is what was read before, but for them, and the ticks of the
	// second run.
	var wantRecs []spoolRecord
	for _, r := range before.records {
		if r.pos != flipped.pos && r.pos != torn.pos {
			wantRecs = append(wantRecs, r)
		}
	}
	n := len(wantRecs)
	if len(after.records) <= n || !slices.EqualFunc(after.records[:n], wantRecs, func(a, b spoolRecord) bool {
		return a.pos == b.pos && slices.Equal(a.lines, b.lines)
	}) {
		t.Fatalf("read back %d records, want the %d undamaged ones of the first run first", len(after.records), n)
	}
	// Expect also finds that none of the damaged records' datapoints reached whisper.
	carbontest.Expect(t, deliveryWait, points(t, after.records), c)

	second := selfValues(after.records[n:], "dropped_corrupt")
	ticks := slices.Sorted(func(yield func(int64) bool) {
		for ts := range second {
			if !yield(ts) {
				return
			}
		}
	})
	if len(ticks) == 0 {
		t.Fatal("no picket.graphite.dropped_corrupt in the second run's ticks")
	}
	// Open counts the torn record at once; the flipped one counts when the exporter's
	// reader meets it, after it connected.
	last := 0.0
	for _, ts := range ticks {
		v := second[ts]
		if v != float64(torn.samples) && v != wantCorrupt || v < last {
			t.Errorf("picket.graphite.dropped_corrupt = %v at %d (after %v), want %d, then %v", v, ts, last, torn.samples, wantCorrupt)
		}
		last = v
	}
	if last != wantCorrupt {
		t.Errorf("picket.graphite.dropped_corrupt ends at %v, want %v", last, wantCorrupt)
	}
}

// flipBit inverts one bit of the byte at off in the file at path.
func flipBit(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

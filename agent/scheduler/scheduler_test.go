package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/collectors"
)

// fake is a collector whose behaviour a test sets per call.
type fake struct {
	calls atomic.Int32
	fn    func(ctx context.Context, s *metric.Sink) error
}

func (f *fake) Collect(ctx context.Context, s *metric.Sink) error {
	f.calls.Add(1)
	return f.fn(ctx, s)
}

// safeBuffer is a log destination that the late goroutines of a test may still write to.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newTestScheduler(t *testing.T, interval, timeout time.Duration, out Output, jobs ...Job) (*Scheduler, *safeBuffer) {
	t.Helper()
	logs := &safeBuffer{}
	s, err := New(Options{
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
		Interval: interval,
		Timeout:  timeout,
		Jobs:     jobs,
		Output:   out,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

// values maps a batch to "collector.labels.field" → value.
func values(b *metric.Batch) map[string]float64 {
	m := map[string]float64{}
	for _, s := range b.Samples {
		parts := []string{s.Collector}
		for _, l := range s.Labels {
			if l.Named {
				parts = append(parts, l.Key)
			}
			parts = append(parts, l.Value)
		}
		m[strings.Join(append(parts, s.Field), ".")] = s.Value
	}
	return m
}

func TestTickIsolatesFailures(t *testing.T) {
	release := make(chan struct{})
	hung := &fake{fn: func(ctx context.Context, s *metric.Sink) error {
		<-release // ignores ctx, as a statfs stuck in the kernel does
		s.Gauge("late", 1)
		return nil
	}}
	ok := &fake{fn: func(ctx context.Context, s *metric.Sink) error {
		s.Counter("a", 1)
		s.Gauge("nan", math.NaN())
		return nil
	}}
	partial := &fake{fn: func(ctx context.Context, s *metric.Sink) error {
		s.Counter("kept", 7)
		return errors.New("reading /proc/x: truncated")
	}}
	panics := &fake{fn: func(ctx context.Context, s *metric.Sink) error {
		s.Counter("before_panic", 1)
		panic("index out of range in a collector")
	}}
	absent := &fake{fn: func(ctx context.Context, s *metric.Sink) error {
		return fmt.Errorf("no /proc/pressure: %w", collectors.ErrNoData)
	}}
	s, logs := newTestScheduler(t, time.Second, 200*time.Millisecond, nil,
		Job{"absent", absent}, Job{"hung", hung}, Job{"ok", ok}, Job{"panics", panics}, Job{"partial", partial})
	ts := time.Unix(1700000000, 0)

	v := values(s.Tick(context.Background(), ts))
	want := map[string]float64{
		"ok.a":                               1,
		"partial.kept":                       7,
		"picket.collector.ok.success":        1,
		"picket.collector.ok.up":             1,
		"picket.collector.partial.success":   0,
		"picket.collector.panics.success":    0,
		"picket.collector.hung.success":      0,
		"picket.collector.hung.timeouts":     1,
		"picket.collector.hung.skipped":      0,
		"picket.collector.absent.success":    0,
		"picket.collector.absent.up":         0,
		"picket.scheduler.ticks":             1,
		"picket.scheduler.nonfinite_dropped": 1,
	}
	for k, w := range want {
		if got, found := v[k]; !found || got != w {
			t.Errorf("tick 1: %s = %v (present %v), want %v", k, got, found, w)
		}
	}
	if _, found := v["hung.late"]; found {
		t.Error("a late collector's samples reached the batch")
	}

	// The hung call has not returned: the next tick must not start a second one.
	v = values(s.Tick(context.Background(), ts.Add(time.Second)))
	if n := hung.calls.Load(); n != 1 {
		t.Errorf("hung collector called %d times while its first call hung, want 1", n)
	}
	if v["picket.collector.hung.skipped"] != 1 || v["picket.collector.ok.success"] != 1 {
		t.Errorf("tick 2: skipped=%v ok.success=%v", v["picket.collector.hung.skipped"], v["picket.collector.ok.success"])
	}

	close(release)
	for hung.calls.Load() == 1 {
		v = values(s.Tick(context.Background(), ts.Add(2*time.Second)))
	}
	if v["picket.collector.hung.success"] != 1 || v["hung.late"] != 1 {
		t.Errorf("after release: hung collector did not recover: %v", v)
	}

	l := logs.String()
	for _, name := range []string{"partial", "panics", "hung"} {
		if n := strings.Count(l, "collector failing; other collectors go on\" collector="+name); n != 1 {
			t.Errorf("%s: %d 'failing' log lines, want exactly 1:\n%s", name, n, l)
		}
	}
	if !strings.Contains(l, "index out of range in a collector") {
		t.Errorf("the panic's message was not logged:\n%s", l)
	}
	if strings.Count(l, "collector recovered\" collector=hung") != 1 {
		t.Errorf("no single recovery line for hung:\n%s", l)
	}
	if strings.Count(l, "nothing to read on this host\" collector=absent") != 1 {
		t.Errorf("absent source not reported once:\n%s", l)
	}
}

// recorder is an Output that keeps tick times and tells the test of each write.
type recorder struct {
	mu      sync.Mutex
	times   []time.Time
	written func(n int, t time.Time)
}

func (r *recorder) Write(ctx context.Context, b *metric.Batch) error {
	r.mu.Lock()
	r.times = append(r.times, b.Time)
	n := len(r.times)
	r.mu.Unlock()
	if r.written != nil {
		r.written(n, b.Time)
	}
	return nil
}

func (r *recorder) snapshot() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.times...)
}

// setClock is a wall clock for Run that reads the real time until a test sets it, and
// then what it was set to. A test sets it after each write to the time the tick "ended",
// so which tick Run starts next depends on the test alone, not on how late timers fire
// on a busy machine; only the waits in between are real.
type setClock struct{ nanos atomic.Int64 }

func (c *setClock) now() time.Time {
	if n := c.nanos.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Now()
}

func (c *setClock) set(t time.Time) { c.nanos.Store(t.UnixNano()) }

// runTicks runs s on clock until out has n batches and returns their times.
func runTicks(t *testing.T, s *Scheduler, clock *setClock, rec *recorder, n int) []time.Time {
	t.Helper()
	s.now = clock.now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	for len(rec.snapshot()) < n {
		time.Sleep(s.interval / 4)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rec.snapshot()[:n]
}

// TestRunAlignsAndSkipsOverruns: ticks that would start late because the one before
// overran are skipped and counted, never queued, and two overruns in a row are logged once.
func TestRunAlignsAndSkipsOverruns(t *testing.T) {
	const interval = 50 * time.Millisecond
	clock := &setClock{}
	rec := &recorder{written: func(n int, tick time.Time) {
		took := interval / 10
		if n == 2 || n == 3 {
			took = 3*interval + interval/10 // overran into the third interval after it
		}
		clock.set(tick.Add(took))
	}}
	c := &fake{fn: func(ctx context.Context, s *metric.Sink) error { s.Gauge("x", 1); return nil }}
	s, logs := newTestScheduler(t, interval, interval/2, rec, Job{"c", c})
	times := runTicks(t, s, clock, rec, 6)

	if times[0].UnixNano()%int64(interval) != 0 {
		t.Errorf("first tick at %v is not aligned to %v", times[0], interval)
	}
	for i, gap := range []int{1, 4, 4, 1, 1} {
		if d := times[i+1].Sub(times[i]); d != time.Duration(gap)*interval {
			t.Errorf("tick %d comes %v after tick %d, want %d intervals: times %v", i+1, d, i, gap, times)
		}
	}
	if s.ticksSkipped != 6 {
		t.Errorf("skipped %d ticks, want 3 for each of the two overruns", s.ticksSkipped)
	}
	if n := strings.Count(logs.String(), "ticks skipped"); n != 1 {
		t.Errorf("%d 'ticks skipped' log lines for two overruns in a row, want 1:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "ticks on time again"); n != 1 {
		t.Errorf("%d 'on time again' log lines, want 1:\n%s", n, logs.String())
	}
}

// TestRunClockStepsBack: after the wall clock steps back by less than an interval, as at
// a leap second or an NTP step, the next tick still follows the last one sent instead of
// repeating its timestamp.
func TestRunClockStepsBack(t *testing.T) {
	const interval = 50 * time.Millisecond
	clock := &setClock{}
	rec := &recorder{written: func(n int, tick time.Time) {
		if n == 1 {
			clock.set(tick.Add(-interval * 4 / 10)) // stepped back to before the tick
		} else {
			clock.set(tick.Add(interval / 10))
		}
	}}
	c := &fake{fn: func(ctx context.Context, s *metric.Sink) error { s.Gauge("x", 1); return nil }}
	s, logs := newTestScheduler(t, interval, interval/2, rec, Job{"c", c})
	times := runTicks(t, s, clock, rec, 3)

	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d != interval {
			t.Errorf("tick %d comes %v after tick %d, want one interval: times %v", i, d, i-1, times)
		}
	}
	if n := strings.Count(logs.String(), "wall clock went back"); n != 1 {
		t.Errorf("%d 'wall clock went back' log lines, want 1:\n%s", n, logs.String())
	}
}

// failingOutput fails the first writes given, then works.
type failingOutput struct {
	mu    sync.Mutex
	fails int
	calls int
}

func (o *failingOutput) Write(ctx context.Context, b *metric.Batch) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	if o.calls <= o.fails {
		return errors.New("stdout: broken pipe")
	}
	return nil
}

func (o *failingOutput) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls
}

// TestRunWriteErrorsLoggedOnChange: three failed writes are counted three times and
// logged once, and the write that works again is logged once.
func TestRunWriteErrorsLoggedOnChange(t *testing.T) {
	const interval = 50 * time.Millisecond
	out := &failingOutput{fails: 3}
	c := &fake{fn: func(ctx context.Context, s *metric.Sink) error { return nil }}
	s, logs := newTestScheduler(t, interval, interval/2, out, Job{"c", c})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	for out.count() < 5 {
		time.Sleep(interval / 2)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	l := logs.String()
	if n := strings.Count(l, "writing batch;"); n != 1 {
		t.Errorf("%d write error log lines for 3 failed writes, want 1:\n%s", n, l)
	}
	if n := strings.Count(l, "writing batches again"); n != 1 {
		t.Errorf("%d recovery log lines, want 1:\n%s", n, l)
	}
	if s.writeErrors != 3 {
		t.Errorf("write_errors %d, want 3", s.writeErrors)
	}
}

func TestNewRejectsBadTiming(t *testing.T) {
	for _, tc := range []struct{ interval, timeout time.Duration }{
		{0, time.Second}, {time.Second, 0}, {time.Second, time.Second}, {time.Second, 2 * time.Second},
	} {
		if _, err := New(Options{Interval: tc.interval, Timeout: tc.timeout}); err == nil {
			t.Errorf("New(interval %v, timeout %v) = nil error", tc.interval, tc.timeout)
		}
	}
}

func TestAligned(t *testing.T) {
	for _, tc := range []struct {
		t        time.Time
		interval time.Duration
		want     time.Time
	}{
		{time.Unix(1700000009, 999), 10 * time.Second, time.Unix(1700000000, 0)},
		{time.Unix(1700000010, 0), 10 * time.Second, time.Unix(1700000010, 0)},
		{time.Unix(1700000006, 0), 7 * time.Second, time.Unix(1700000006-1700000006%7, 0)},
	} {
		if got := Aligned(tc.t, tc.interval); !got.Equal(tc.want) {
			t.Errorf("Aligned(%v, %v) = %v, want %v", tc.t, tc.interval, got, tc.want)
		}
	}
}

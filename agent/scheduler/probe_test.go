package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/collectors"
)

// fakeProbe is a collector with a kernel part that loads, or not, as the test says.
type fakeProbe struct {
	loadErr error
	running atomic.Bool
	stopped atomic.Bool
}

func (p *fakeProbe) Load() error { return p.loadErr }

func (p *fakeProbe) Run(ctx context.Context) error {
	p.running.Store(true)
	<-ctx.Done()
	time.Sleep(10 * time.Millisecond) // releasing kernel objects takes a moment
	p.stopped.Store(true)
	return nil
}

func (p *fakeProbe) Collect(_ context.Context, s *metric.Sink) error {
	if p.loadErr != nil {
		return p.loadErr
	}
	s.Counter("events", 1)
	return nil
}

func (p *fakeProbe) Report(*metric.Sink) {}

// TestStartProbes: Start loads every probe and runs the ones that loaded; one that did not
// is named in Start's error, reported down (up 0, success 0) with its reason, logged once
// as a warning, and the others run; Stop returns only once every probe has released.
func TestStartProbes(t *testing.T) {
	cause := fmt.Errorf("%w: needs CAP_BPF", collectors.ErrUnavailable)
	good, bad := &fakeProbe{}, &fakeProbe{loadErr: cause}
	plain := &fake{fn: func(context.Context, *metric.Sink) error { return nil }}
	s, logs := newTestScheduler(t, time.Second, 500*time.Millisecond, nil,
		Job{Name: "good", Collector: good}, Job{Name: "bad", Collector: bad}, Job{Name: "plain", Collector: plain})

	err := s.Start(context.Background())
	if err == nil || !errors.Is(err, collectors.ErrUnavailable) || !strings.Contains(err.Error(), "collector bad: cannot run here: needs CAP_BPF") || strings.Contains(err.Error(), "good") {
		t.Errorf("Start() = %v", err)
	}
	for i := range 2 {
		// A job's goroutine clears its running flag after handing over its result: wait
		// for the last tick's to be done, or this tick finds them in flight and skips them.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if !slices.ContainsFunc(s.jobs, func(j *job) bool { return j.running.Load() }) {
				break
			}
		}
		v := values(s.Tick(context.Background(), time.Unix(1700000000+int64(i), 0)))
		if v["picket.collector.bad.up"] != 0 || v["picket.collector.bad.success"] != 0 || v["picket.collector.good.up"] != 1 || v["good.events"] != 1 {
			t.Errorf("tick %d: %v", i, v)
		}
		if v["picket.collector.plain.success"] != 1 {
			t.Errorf("tick %d: plain did not run: %v", i, v)
		}
	}
	if st, why := s.Status("bad"); st != "down" || !errors.Is(why, cause) {
		t.Errorf("Status(bad) = %s, %v", st, why)
	}
	if st, why := s.Status("good"); st != "ok" || why != nil {
		t.Errorf("Status(good) = %s, %v", st, why)
	}
	if n := strings.Count(logs.String(), "collector down"); n != 1 || !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "needs CAP_BPF") {
		t.Errorf("want one warning naming the cause, got:\n%s", logs.String())
	}
	// Start runs good's Run on a goroutine of its own: wait for it to begin.
	for deadline := time.Now().Add(5 * time.Second); !good.running.Load() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if !good.running.Load() || bad.running.Load() {
		t.Errorf("running: good %v, bad %v", good.running.Load(), bad.running.Load())
	}
	s.Stop()
	if !good.stopped.Load() {
		t.Error("Stop returned before the probe released its objects")
	}
	s.Stop() // twice is harmless
}

package agent

import (
	"bytes"
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/scheduler"
)

// fixtureRoot is the host snapshot the end-to-end tests read (proc/ and sys/).
const fixtureRoot = "cmd/picket/testdata/host"

// newTickScheduler builds the scheduler `picket run` would, on the real /proc (root "") or
// on a fixture root. fs is left out on the fixture: its statfs would reach the real mounts.
func newTickScheduler(tb testing.TB, root string) *scheduler.Scheduler {
	tb.Helper()
	args := []string{"once", "--config", writeConfig(tb, "")}
	if root != "" {
		args = append(args, "--path.procfs", root+"/proc", "--path.sysfs", root+"/sys", "--no-collector.fs")
	}
	cli, _, err := parse(args, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := cli.newScheduler(&Env{Ctx: context.Background(), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTick is one full default tick: every collector, the scheduler's bookkeeping and
// the self-metrics. cpu-ms/tick is the process's user+system CPU (GC included) per tick.
func BenchmarkTick(b *testing.B) {
	for _, bc := range []struct{ name, root string }{{"host", ""}, {"fixture", fixtureRoot}} {
		b.Run(bc.name, func(b *testing.B) {
			s := newTickScheduler(b, bc.root)
			ctx := context.Background()
			t := time.Unix(1700000000, 0)
			b.ReportAllocs()
			start := cpuTime()
			n := 0
			for b.Loop() {
				s.Tick(ctx, t.Add(time.Duration(n)*10*time.Second))
				n++
			}
			b.ReportMetric(float64(cpuTime()-start)/1e6/float64(n), "cpu-ms/tick")
		})
	}
}

// TestTickAllocationsDoNotGrow: a long-running agent allocates the same per tick at tick
// 20 as at tick 400 — no state that grows with the ticks already run.
func TestTickAllocationsDoNotGrow(t *testing.T) {
	s := newTickScheduler(t, fixtureRoot)
	ctx := context.Background()
	n := 0
	tick := func() {
		s.Tick(ctx, time.Unix(1700000000+int64(n)*10, 0))
		n++
	}
	early := testing.AllocsPerRun(20, tick)
	for range 400 {
		tick()
	}
	late := testing.AllocsPerRun(20, tick)
	if late > early*1.01+2 {
		t.Errorf("allocations per tick grew from %.0f to %.0f over 400 ticks", early, late)
	}
	if early == 0 {
		t.Error("no allocations measured: the tick did nothing")
	}
}

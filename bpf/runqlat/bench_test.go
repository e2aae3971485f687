package runqlat

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/picket-agent/picket/agent/testenv"
)

// pingPong passes a byte back and forth n times between two threads pinned to cpu, over
// two pipes, and returns the time per round trip. Each round trip is two wakeups and two
// context switches on that one CPU: the worst case for a scheduler probe, which runs on
// every one of them (the same as `perf bench sched pipe` under taskset).
func pingPong(cpu, n int) (time.Duration, error) {
	var ab, ba [2]int
	if err := unix.Pipe2(ab[:], unix.O_CLOEXEC); err != nil {
		return 0, err
	}
	defer unix.Close(ab[0])
	defer unix.Close(ab[1])
	if err := unix.Pipe2(ba[:], unix.O_CLOEXEC); err != nil {
		return 0, err
	}
	defer unix.Close(ba[0])
	defer unix.Close(ba[1])

	pin := func() error {
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu)
		return unix.SchedSetaffinity(0, &set)
	}
	// echo runs on a thread of its own and sends back every byte it reads. The blocking
	// pipe descriptors keep Go's poller out of it: each read sleeps in the kernel.
	errc := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		defer runtime.UnlockOSThread()
		if err := pin(); err != nil {
			errc <- err
			close(ready)
			return
		}
		close(ready)
		buf := []byte{0}
		for range n {
			if _, err := unix.Read(ab[0], buf); err != nil {
				errc <- err
				return
			}
			if _, err := unix.Write(ba[1], buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	<-ready

	var elapsed time.Duration
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() {
		defer wg.Done()
		defer runtime.UnlockOSThread()
		if err = pin(); err != nil {
			return
		}
		buf := []byte{0}
		start := time.Now()
		for range n {
			if _, err = unix.Write(ab[1], buf); err != nil {
				return
			}
			if _, err = unix.Read(ba[0], buf); err != nil {
				return
			}
		}
		elapsed = time.Since(start)
	}()
	wg.Wait()
	if err != nil {
		// Unblock echo, which waits for a byte that will not come.
		unix.Close(ab[1])
		<-errc
		return 0, err
	}
	if err := <-errc; err != nil {
		return 0, err
	}
	return elapsed / time.Duration(n), nil
}

// BenchmarkOverhead (root) measures what the probe costs the worst case, a pipe
// ping-pong pinned to one CPU: rounds of a run with the probe detached and a run with it
// attached, interleaved (the order alternating), so that drift in the machine's speed
// falls on both alike. It reports the median time per round trip of each and their ratio
// (the target: ≤ 1.10), and two estimates that hold up better on a machine
// busy with other work, which only ever adds time: the ratio of the fastest runs, and the
// median of the ratios of each round's pair. One iteration is at least 21 rounds of
// 2 × 50,000 round trips, about 15 s: run it with -benchtime=1x.
func BenchmarkOverhead(b *testing.B) {
	testenv.RequireRoot(b)
	for _, c := range []struct {
		name  string
		progs programs
		mode  CgroupMode
	}{
		{"task-storage/cgroup-v1", taskStorage, CgroupV1},
		{"tid-table/cgroup-v1", tidTable, CgroupV1},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchOverhead(b, Options{SysFS: "/sys", Cgroups: c.mode}, c.progs)
		})
	}
}

func benchOverhead(b *testing.B, opts Options, progs programs) {
	const roundTrips = 50_000
	rounds := max(b.N, 21)
	cpu := runtime.NumCPU() - 1
	var off, on, pairs []float64
	run := func(attached bool) float64 {
		if attached {
			p, err := load(opts, progs)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
		}
		d, err := pingPong(cpu, roundTrips)
		if err != nil {
			b.Fatal(err)
		}
		return float64(d.Nanoseconds())
	}
	// A warm-up run, not counted.
	if _, err := pingPong(cpu, roundTrips/10); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range rounds {
		var d0, d1 float64
		if i%2 == 0 {
			d0 = run(false)
			d1 = run(true)
		} else {
			d1 = run(true)
			d0 = run(false)
		}
		off, on, pairs = append(off, d0), append(on, d1), append(pairs, d1/d0)
	}
	b.StopTimer()
	mOff, mOn := median(off), median(on)
	minOff, minOn := slices.Min(off), slices.Min(on)
	b.ReportMetric(mOff, "ns/roundtrip-detached")
	b.ReportMetric(mOn, "ns/roundtrip-attached")
	b.ReportMetric(mOn/mOff, "ratio-medians")
	b.ReportMetric(minOn/minOff, "ratio-fastest")
	b.ReportMetric(median(pairs), "ratio-pairs")
	b.Logf("%d rounds of %d round trips on CPU %d, ns per round trip: detached %s, attached %s; medians %.0f / %.0f (%.3f), fastest %.0f / %.0f (%.3f), median of pair ratios %.3f",
		rounds, roundTrips, cpu, fmtRuns(off), fmtRuns(on), mOff, mOn, mOn/mOff, minOff, minOn, minOn/minOff, median(pairs))
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRuns(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprint(s)
}

// BenchmarkProgramCost (root) runs the ping-pong with the probe attached and BPF
// statistics on, and reports the kernel's own measure of each program: nanoseconds per
// run. Steadier than the ratio on a busy machine (other work on the CPU does not count),
// but it leaves out what attaching costs outside the program (the trampoline, about
// 10-20 ns per hook), and the statistics add two clock reads per run.
func BenchmarkProgramCost(b *testing.B) {
	testenv.RequireRoot(b)
	for _, c := range []struct {
		name  string
		progs programs
		mode  CgroupMode
	}{
		{"task-storage/cgroup-v1", taskStorage, CgroupV1},
		{"task-storage/host-only", taskStorage, CgroupNone},
		{"tid-table/cgroup-v1", tidTable, CgroupV1},
	} {
		b.Run(c.name, func(b *testing.B) {
			p, err := load(Options{SysFS: "/sys", Cgroups: c.mode, Stats: true}, c.progs)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			before, _, err := p.Stats()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := pingPong(runtime.NumCPU()-1, max(b.N, 200_000)); err != nil {
				b.Fatal(err)
			}
			after, _, err := p.Stats()
			if err != nil {
				b.Fatal(err)
			}
			for i, a := range after {
				n := a.RunCount - before[i].RunCount
				if n > 0 {
					b.ReportMetric(float64((a.RunTime-before[i].RunTime).Nanoseconds())/float64(n), "ns/"+a.Hook)
				}
			}
		})
	}
}

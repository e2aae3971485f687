// Package scheduler runs collectors on ticks aligned to wall-clock multiples of the
// interval and hands each tick's batch to an Output.
//
// Its guarantees, which the rest of the agent relies on:
//   - every sample of a tick carries the tick's timestamp, and tick timestamps strictly
//     increase;
//   - collectors run concurrently, each under a deadline shorter than the interval; one that
//     misses it costs its own samples for that tick and nothing else;
//   - a collector whose previous call has not returned (a statfs stuck in the kernel ignores
//     its context) is not started again: at most one goroutine per collector is ever in
//     flight, so a hung source cannot pile up goroutines;
//   - a panicking or failing collector is recorded in picket.collector.<name>.* and logged
//     once when it goes bad and once when it recovers;
//   - a tick that would start late because the previous one overran is skipped and counted,
//     never queued;
//   - collectors with a probe in the kernel (collectors.Probe) are loaded by Start, served
//     in the background, and released by Stop; one that cannot load is reported down and
//     the others run on.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/collectors"
)

// Output receives the batches.
type Output interface {
	// Write ships one tick's batch. The scheduler calls it from one goroutine, once per
	// tick, in tick order; it must not keep b.Samples after returning. An error is logged
	// and the scheduler goes on with the next tick.
	Write(ctx context.Context, b *metric.Batch) error
}

// Job is a named collector.
type Job struct {
	Name      string
	Collector collectors.Collector
}

// Options configure a Scheduler.
type Options struct {
	Logger   *slog.Logger
	Interval time.Duration
	// Timeout is each collector's deadline within a tick; it must be shorter than Interval.
	Timeout time.Duration
	Jobs    []Job
	// Output receives the batches of Run; Tick alone needs none.
	Output Output
}

// Scheduler runs jobs on aligned ticks. Create it with New.
type Scheduler struct {
	log      *slog.Logger
	interval time.Duration
	timeout  time.Duration
	jobs     []*job
	out      Output
	// now reads the wall clock that ticks are aligned to; tests step it.
	now func() time.Time

	ticks        uint64
	ticksSkipped uint64
	writeErrors  uint64
	// nonFinite counts NaN and ±Inf samples left out: no wire format can carry them.
	nonFinite uint64
	// writeFailing is whether the last Write failed, and overrunning whether the last tick
	// started late: the log speaks only when they change.
	writeFailing bool
	overrunning  bool

	// cancel ends what Start started; probes counts its goroutines.
	cancel context.CancelFunc
	probes sync.WaitGroup
}

// health is what the last tick said about a job; the log speaks only when it changes.
type health uint8

const (
	healthy health = iota
	failing
	absent
	// unavailable: the collector cannot run here (collectors.ErrUnavailable), e.g. its
	// eBPF probe lacks a privilege.
	unavailable
)

// String is how `picket check` shows a state.
func (h health) String() string {
	switch h {
	case failing:
		return "failing"
	case absent:
		return "absent"
	case unavailable:
		return "down"
	}
	return "ok"
}

type job struct {
	name string
	c    collectors.Collector
	// running is set while a Collect call is in flight, which can outlast its tick.
	running atomic.Bool
	health  health
	// err is what the last call returned.
	err    error
	labels []metric.Label
	// skipped counts ticks this job sat out because its previous call had not returned.
	skipped uint64
	// timeouts counts calls that missed their deadline.
	timeouts uint64
	// size is how many samples the last call added: the next call's Sink starts that big.
	// Only the goroutine running the job touches it; running orders those goroutines.
	size int
}

type result struct {
	j        *job
	samples  []metric.Sample
	err      error
	duration time.Duration
}

// New checks opts and returns a Scheduler.
func New(opts Options) (*Scheduler, error) {
	if opts.Interval <= 0 {
		return nil, fmt.Errorf("interval must be positive, got %s", opts.Interval)
	}
	if opts.Timeout <= 0 || opts.Timeout >= opts.Interval {
		return nil, fmt.Errorf("collector timeout %s must be positive and shorter than the interval %s", opts.Timeout, opts.Interval)
	}
	s := &Scheduler{log: opts.Logger, interval: opts.Interval, timeout: opts.Timeout, out: opts.Output, now: time.Now}
	for _, j := range opts.Jobs {
		s.jobs = append(s.jobs, &job{
			name:   j.Name,
			c:      j.Collector,
			labels: []metric.Label{{Key: "collector", Value: j.Name, Named: true}},
		})
	}
	return s, nil
}

// Start loads the kernel probes of the collectors that have one (collectors.Probe) and
// serves them in the background until ctx ends or Stop is called. It returns the load
// errors joined, each naming its collector; a probe that did not load stays down (its
// collector reports why, once, at the first tick) and the others run. Whether that is
// fatal is the caller's call (`picket run --strict`). Call it once, before the first tick.
func (s *Scheduler) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	var errs []error
	loaded := false
	for _, j := range s.jobs {
		p, ok := j.c.(collectors.Probe)
		if !ok {
			continue
		}
		if err := p.Load(); err != nil {
			errs = append(errs, fmt.Errorf("collector %s: %w", j.name, err))
			continue
		}
		loaded = true
		s.probes.Add(1)
		go func() {
			defer s.probes.Done()
			// An error here ended the probe early; its collector reports it every tick.
			pprof.Do(ctx, pprof.Labels("collector", j.name), func(ctx context.Context) { _ = p.Run(ctx) })
		}()
	}
	if loaded {
		// Loading parsed the kernel's BTF: some MB that are garbage now. Hand them back to
		// the system at once rather than over the scavenger's minutes (measured with the
		// OOM probe: RSS 21 → 16.7 MB, against 15.2 MB without it).
		debug.FreeOSMemory()
	}
	return errors.Join(errs...)
}

// Stop ends the probes Start started and returns once each has released its kernel
// objects. It is harmless without Start.
func (s *Scheduler) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.probes.Wait()
}

// Status returns the state of the job called name after the last tick ("ok", "failing",
// "absent", "down") and the error behind it; "" if there is no such job.
func (s *Scheduler) Status(name string) (string, error) {
	for _, j := range s.jobs {
		if j.name == name {
			return j.health.String(), j.err
		}
	}
	return "", nil
}

// Aligned returns the tick that t falls in: t rounded down to a multiple of interval since
// the Unix epoch, so every host with the same interval ticks at the same instants.
func Aligned(t time.Time, interval time.Duration) time.Time {
	ns := t.UnixNano()
	return time.Unix(0, ns-ns%int64(interval))
}

// Run ticks until ctx is done, then returns nil. The batch of a tick is written before the
// next tick starts.
func (s *Scheduler) Run(ctx context.Context) error {
	var last time.Time
	for {
		now := s.now()
		next := Aligned(now, s.interval).Add(s.interval)
		if !last.IsZero() {
			switch missed := next.Sub(last)/s.interval - 1; {
			case missed > 0:
				// Skip, never queue: the ticks between last and next that we could not start
				// on time are counted once here and left out.
				s.ticksSkipped += uint64(missed)
				if !s.overrunning {
					s.log.Warn("ticks skipped: the previous tick overran; counted in picket.scheduler.ticks_skipped until ticks are on time again",
						"skipped", int64(missed), "interval", s.interval)
					s.overrunning = true
				}
			case missed == 0 && s.overrunning:
				s.log.Info("ticks on time again", "skipped", s.ticksSkipped)
				s.overrunning = false
			case missed < 0:
				// The wall clock went back (stepped by NTP, a leap second, a VM resumed), and
				// next is a tick already sent. Timers run on the monotonic clock, so this
				// happens only after a step. Wait for the tick after last instead: sending
				// next again would overwrite what was stored for it.
				s.log.Warn("wall clock went back; waiting for it to pass the last tick", "last", last, "now", now)
				next = last.Add(s.interval)
			}
		}
		timer := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		b := s.Tick(ctx, next)
		s.write(ctx, b)
		last = next
	}
}

// write hands b to the output, counting a failure and logging when writes start failing
// and when they work again, not once per tick.
func (s *Scheduler) write(ctx context.Context, b *metric.Batch) {
	err := s.out.Write(ctx, b)
	switch {
	case err != nil && ctx.Err() == nil:
		s.writeErrors++
		if !s.writeFailing {
			s.log.Error("writing batch; counted in picket.scheduler.write_errors until it works again", "err", err)
			s.writeFailing = true
		}
	case err == nil && s.writeFailing:
		s.log.Info("writing batches again", "failed", s.writeErrors)
		s.writeFailing = false
	}
}

// Tick runs every job once for the tick at t and returns the batch: the samples of every
// job that returned in time (a failed job's samples included: something is better than
// nothing), followed by the scheduler's own picket.* samples.
func (s *Scheduler) Tick(ctx context.Context, t time.Time) *metric.Batch {
	s.ticks++
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	// Buffered for every job, so a job that returns after we stopped waiting never blocks.
	results := make(chan result, len(s.jobs))
	pending := 0
	var done []result
	for _, j := range s.jobs {
		if !j.running.CompareAndSwap(false, true) {
			j.skipped++
			done = append(done, result{j: j, err: errors.New("previous collection has not returned yet; skipped this tick")})
			continue
		}
		pending++
		go s.collect(ctx, j, results)
	}

	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
wait:
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			done = append(done, r)
		case <-timer.C:
			break wait
		}
	}
	if pending > 0 {
		// Whatever has not answered by now is late: drain what arrived meanwhile, and
		// record the rest as timed out. Their goroutines finish on their own and clear
		// running; their samples are dropped with the channel.
		answered := map[*job]bool{}
		for _, r := range done {
			answered[r.j] = true
		}
	drain:
		for {
			select {
			case r := <-results:
				answered[r.j] = true
				done = append(done, r)
			default:
				break drain
			}
		}
		for _, j := range s.jobs {
			if !answered[j] {
				j.timeouts++
				done = append(done, result{j: j, err: fmt.Errorf("no answer within %s", s.timeout), duration: s.timeout})
			}
		}
	}

	byJob := make(map[*job]result, len(done))
	total := 0
	for _, r := range done {
		byJob[r.j] = r
		total += len(r.samples)
	}
	const selfPerJob, selfPerTick = 5, 4
	b := &metric.Batch{Time: t, Samples: make([]metric.Sample, 0, total+selfPerJob*len(s.jobs)+selfPerTick)}
	self := metric.NewSink("picket")
	self.Grow(selfPerJob*len(s.jobs) + selfPerTick)
	for _, j := range s.jobs {
		r := byJob[j]
		for _, smp := range r.samples {
			if !smp.Finite() {
				s.nonFinite++
				continue
			}
			b.Samples = append(b.Samples, smp)
		}
		s.record(j, r, self)
	}
	self.Counter("ticks", float64(s.ticks), schedulerLabels...)
	self.Counter("ticks_skipped", float64(s.ticksSkipped), schedulerLabels...)
	self.Counter("write_errors", float64(s.writeErrors), schedulerLabels...)
	self.Counter("nonfinite_dropped", float64(s.nonFinite), schedulerLabels...)
	b.Samples = append(b.Samples, self.Samples()...)
	return b
}

var schedulerLabels = []metric.Label{{Key: "component", Value: "scheduler"}}

// collect runs one job, turning a panic into an error, and always clears running.
func (s *Scheduler) collect(ctx context.Context, j *job, results chan<- result) {
	defer j.running.Store(false)
	sink := metric.NewSink(j.name)
	sink.Grow(j.size)
	start := time.Now()
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			}
		}()
		// The label lets a CPU or heap profile of the agent say which collector costs what.
		pprof.Do(ctx, pprof.Labels("collector", j.name), func(ctx context.Context) {
			err = j.c.Collect(ctx, sink)
		})
	}()
	j.size = len(sink.Samples())
	results <- result{j: j, samples: sink.Samples(), err: err, duration: time.Since(start)}
}

// record adds a job's self-metrics and logs a change of its health.
func (s *Scheduler) record(j *job, r result, self *metric.Sink) {
	h := healthy
	switch {
	case errors.Is(r.err, collectors.ErrNoData):
		h = absent
	case errors.Is(r.err, collectors.ErrUnavailable):
		h = unavailable
	case r.err != nil:
		h = failing
	}
	success, up := 0.0, 1.0
	if h == healthy {
		success = 1
	}
	if h == absent || h == unavailable {
		up = 0
	}
	j.err = r.err
	self.Gauge("duration_seconds", r.duration.Seconds(), j.labels...)
	self.Gauge("success", success, j.labels...)
	self.Gauge("up", up, j.labels...)
	self.Counter("skipped", float64(j.skipped), j.labels...)
	self.Counter("timeouts", float64(j.timeouts), j.labels...)

	if h == j.health {
		return
	}
	switch h {
	case healthy:
		s.log.Info("collector recovered", "collector", j.name)
	case failing:
		s.log.Warn("collector failing; other collectors go on", "collector", j.name, "err", r.err)
	case absent:
		s.log.Info("collector has nothing to read on this host", "collector", j.name, "reason", r.err)
	case unavailable:
		s.log.Warn("collector down; other collectors go on", "collector", j.name, "reason", r.err)
	}
	j.health = h
}

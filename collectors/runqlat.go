package collectors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/bpf/probe"
	"github.com/picket-agent/picket/bpf/runqlat"
	"github.com/picket-agent/picket/collectors/cgroup"
)

var runqlatSeries = []Series{
	{Path: "runqlat.<le_Nus>", Kind: metric.Counter, Help: "waits for a CPU of at most N µs since picket started, N = 1, 2, 4 … 16777216 (16.8 s), cumulative: each counts the shorter waits too. A wait runs from a task becoming runnable (woken, or preempted) to its running (eBPF: sched_wakeup, sched_wakeup_new, sched_switch)"},
	{Path: "runqlat.count", Kind: metric.Counter, Help: "waits for a CPU: le_16777216us and the longer ones"},
	{Path: "runqlat.sum_us", Kind: metric.Counter, Unit: "microseconds", Help: "time spent waiting for a CPU"},
	{Path: "runqlat.cgroup.<cgroup>.<le_Nus>", Kind: metric.Counter, Help: "the same per cgroup of the task that waited: its path in the cpu controller's hierarchy (cgroup v1) or the unified one (v2), `/` → `_`. The 512 cgroups that waited first each get a histogram in the kernel; when none is free, waits count under `overflow` until a cgroup is removed and its histogram freed. `unnamed` counts cgroups removed before picket could name them. A cgroup's counters go on from where they were when a cgroup of the same path comes back"},
	{Path: "runqlat.cgroup.<cgroup>.count", Kind: metric.Counter, Help: "waits for a CPU, per cgroup"},
	{Path: "runqlat.cgroup.<cgroup>.sum_us", Kind: metric.Counter, Unit: "microseconds", Help: "time spent waiting for a CPU, per cgroup"},
	{Path: "picket.bpf.runqlat.missed_waits", Kind: metric.Counter, Help: "waits the run-queue latency probe could not measure: no room for the task's start stamp (on kernels without task-local storage, another task took its slot)"},
	{Path: "picket.bpf.runqlat.cgroups", Kind: metric.Gauge, Help: "cgroups holding one of the probe's 512 per-cgroup histograms, as of the collector's last reading"},
	{Path: "picket.bpf.runqlat.maps_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "kernel memory of the run-queue latency probe's maps (on 64 CPUs: 3.6 MiB, the per-CPU histograms); task-local storage adds about 100 bytes per task that waited, the tid table of kernels without it 512 KiB"},
	{Path: "picket.bpf.runqlat.<program>.run_time_seconds", Kind: metric.Counter, Unit: "seconds", Help: "time the kernel spent in the probe's program for hook <program>; only while BPF statistics are on (--bpf.stats, or sysctl kernel.bpf_stats_enabled=1)"},
	{Path: "picket.bpf.runqlat.<program>.run_count", Kind: metric.Counter, Help: "runs of the probe's program for hook <program>; only while BPF statistics are on"},
}

// runqlatProbe is what the collector needs of a loaded *runqlat.Probe; tests feed
// recorded readings through a fake.
type runqlatProbe interface {
	Read() (runqlat.Snapshot, error)
	Free(ids []uint64) (map[uint64]runqlat.Hist, error)
	Stamps() (runqlat.Stamps, error)
	Stats() ([]probe.ProgramStats, bool, error)
	MapBytes() (map[string]uint64, error)
	Close() error
}

// Labels of the cgroups that are not one cgroup. Real paths start with "/", so they
// cannot collide with one.
const (
	// rqOverflow counts the waits of cgroups that found no histogram free in the kernel.
	rqOverflow = "overflow"
	// rqUnnamed counts the waits of cgroups removed before picket could name them.
	rqUnnamed = "unnamed"
)

// maxRunqlatPaths bounds the cgroup paths whose counters the collector keeps: the
// kernel's 512 live ones and as many that are gone, so a cgroup that comes back under the
// same path (a restarted service) goes on counting from where it was. Past the bound the
// gone paths that changed longest ago are forgotten: if one comes back after all, its
// counters start again from zero, which Graphite's nonNegativeDerivative reads as a reset.
const maxRunqlatPaths = 2 * runqlat.MaxCgroups

var (
	runqlatBPFLabels = []metric.Label{{Key: "component", Value: "bpf"}, {Key: "probe", Value: "runqlat"}}
	// runqlatHooks are the tracepoints the probe attaches to.
	runqlatHooks = runqlat.Hooks
	// runqlatLe are the bucket fields, le_1us … le_16777216us.
	runqlatLe = func() []string {
		out := make([]string, runqlat.NumBuckets-1)
		for k := range out {
			bound, _ := runqlat.Bound(k)
			out[k] = "le_" + strconv.FormatUint(bound, 10) + "us"
		}
		return out
	}()
)

// runqlatCollector reports the run-queue latency histograms the eBPF probe keeps in the
// kernel. Each Collect reads them once; the kernel's per-cgroup histograms are keyed by
// cgroup id, and the collector keeps 64-bit counters per cgroup path, to which it adds
// what each id gained since the last reading. So a path's counters only grow: when its
// cgroup is removed (its histogram freed in the kernel) and made again (a new id, a new
// histogram from zero), the new one's waits add to the old counts.
type runqlatCollector struct {
	log    *slog.Logger
	procfs string
	sysfs  string
	stats  bool
	load   func(runqlat.Options) (runqlatProbe, error)

	// Set by Load, before Run and the first Collect. resolver is nil when the probe
	// counts host-wide only.
	probe    runqlatProbe
	resolver *cgroup.Resolver
	mapBytes uint64

	mu      sync.Mutex
	loaded  bool
	closed  bool
	loadErr error
	tick    uint64
	host    runqlat.Hist
	missed  uint64
	// ids are the cgroups that hold a histogram in the kernel, paths the counters
	// reported.
	ids   map[uint64]*rqCgroup
	paths map[string]*rqPath

	programs programStats
}

// rqCgroup is a cgroup with a histogram in the kernel.
type rqCgroup struct {
	path string
	// last is its histogram at the last reading.
	last runqlat.Hist
}

// rqPath is the counters of one cgroup path.
type rqPath struct {
	labels []metric.Label
	total  runqlat.Hist
	// ids counts the cgroups (at most one but for a moment) holding a histogram under it.
	ids int
	// changed is the tick its counts last grew.
	changed uint64
}

func newRunqlat(o Options) (Collector, error) {
	load := o.loadRunqlat
	if load == nil {
		load = func(opts runqlat.Options) (runqlatProbe, error) { return runqlat.Load(opts) }
	}
	return &runqlatCollector{
		log:    o.Logger.With("collector", "runqlat"),
		procfs: o.ProcFS,
		sysfs:  o.SysFS,
		stats:  o.BPFStats,
		load:   load,
		ids:    map[uint64]*rqCgroup{},
		paths:  map[string]*rqPath{},

		programs: programStats{base: runqlatBPFLabels},
	}, nil
}

// Load finds the cpu controller's hierarchy and loads the probe.
func (c *runqlatCollector) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	mode := runqlat.CgroupNone
	h, herr := cgroup.Find(c.procfs, c.sysfs, "cpu")
	if herr == nil {
		mode = runqlat.CgroupV2
		if h.V1 {
			mode = runqlat.CgroupV1
		}
	}
	p, err := c.load(runqlat.Options{SysFS: c.sysfs, Cgroups: mode, Stats: c.stats})
	if err != nil {
		c.loadErr = fmt.Errorf("%w: %w", ErrUnavailable, err)
		return c.loadErr
	}
	if herr != nil {
		c.log.Warn("run-queue latency is host-wide only: the cpu controller's cgroup hierarchy was not found (mount it, or point --path.sysfs at the host's /sys)", "error", herr)
	} else {
		c.resolver = cgroup.NewResolver(h.Dir)
	}
	if stamps, why := p.Stamps(); stamps != runqlat.StampsTaskStorage {
		c.log.Info("run-queue latency stamps are kept in a table indexed by thread id: task-local storage did not load (kernel before 5.11?); a wait whose slot another task took is not measured, and counted in picket.bpf.runqlat.missed_waits", "stamps", stamps, "error", why)
	}
	if mem, err := p.MapBytes(); err == nil {
		for _, b := range mem {
			c.mapBytes += b
		}
	}
	if c.stats {
		// Collect does not report it every tick: the probe runs well without them.
		if _, _, err := p.Stats(); err != nil {
			c.log.Warn("no run time and count for the run-queue latency probe (--bpf.stats)", "error", err)
		}
	}
	c.probe, c.loaded = p, true
	return nil
}

// Run waits for ctx to end, then releases the probe. The kernel does the work between
// ticks; there is nothing to serve.
func (c *runqlatCollector) Run(ctx context.Context) error {
	<-ctx.Done()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.probe.Close()
}

// Collect reads the histograms and adds runqlat.* and runqlat.cgroup.<cgroup>.*.
func (c *runqlatCollector) Collect(_ context.Context, s *metric.Sink) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loadErr != nil {
		return c.loadErr
	}
	if !c.loaded || c.closed {
		return fmt.Errorf("%w: the probe is not loaded", ErrUnavailable)
	}
	snap, err := c.probe.Read()
	if err != nil {
		return fmt.Errorf("reading the run-queue latency probe: %w", err)
	}
	c.tick++
	var errs []error
	if c.resolver != nil {
		errs = append(errs, c.account(&snap))
	}
	c.host, c.missed = snap.Host, snap.Missed

	s.Grow((len(c.paths) + 1) * (runqlat.NumBuckets + 1))
	addHist(s, &c.host, nil)
	for _, p := range slices.Sorted(maps.Keys(c.paths)) {
		addHist(s, &c.paths[p].total, c.paths[p].labels)
	}
	return errors.Join(errs...)
}

// addHist adds one histogram's series: cumulative le_ buckets, count and sum_us.
func addHist(s *metric.Sink, h *runqlat.Hist, labels []metric.Label) {
	var cum uint64
	for k, field := range runqlatLe {
		cum += h.Buckets[k]
		s.Counter(field, float64(cum), labels...)
	}
	s.Counter("count", float64(cum+h.Buckets[runqlat.NumBuckets-1]), labels...)
	s.Counter("sum_us", float64(h.SumNS/1000), labels...)
}

// account adds what each cgroup's histogram gained since the last reading to its path's
// counters, names the cgroups new since then, and frees the histograms of the cgroups
// that are gone. Called with c.mu held.
func (c *runqlatCollector) account(snap *runqlat.Snapshot) error {
	// Cgroups new since the last reading, and known ones no longer where they were: one
	// search of the hierarchy names them all. The ids were read before the search began,
	// so a cgroup the whole search did not find was removed (or renamed while it ran).
	var unknown, moved []uint64
	for id := range snap.Cgroups {
		if cg := c.ids[id]; cg == nil {
			unknown = append(unknown, id)
		} else if cg.path != rqUnnamed && !c.resolver.Alive(cg.path, id) {
			moved = append(moved, id)
		}
	}
	var gone []uint64
	if len(unknown)+len(moved) > 0 {
		found, complete := c.resolver.Lookup(append(slices.Clip(unknown), moved...))
		for _, id := range unknown {
			p, ok := found[id]
			if !ok {
				// Gone already, or not to be found (a hierarchy too large to search):
				// counted, without a name.
				p = rqUnnamed
				if complete {
					gone = append(gone, id)
				}
			}
			c.ids[id] = &rqCgroup{path: p}
			c.path(p).ids++
		}
		for _, id := range moved {
			cg := c.ids[id]
			if p, ok := found[id]; ok {
				// Renamed: its counts so far stay with the old path, the rest go to the new.
				c.paths[cg.path].ids--
				cg.path = p
				c.path(p).ids++
			} else if complete {
				gone = append(gone, id)
			}
		}
	}
	for id, h := range snap.Cgroups {
		c.add(c.ids[id], &h)
	}
	var err error
	if len(gone) > 0 {
		// A gone cgroup has no tasks, so no waits since the reading above: what Free
		// returns is what that reading said, unless it raced with the removal.
		var final map[uint64]runqlat.Hist
		final, err = c.probe.Free(gone)
		for _, id := range gone {
			cg := c.ids[id]
			if h, ok := final[id]; ok {
				c.add(cg, &h)
			}
			c.paths[cg.path].ids--
			delete(c.ids, id)
		}
		if err != nil {
			err = fmt.Errorf("freeing the histograms of removed cgroups: %w", err)
		}
	}
	if snap.Overflow.Count() > 0 {
		o := c.path(rqOverflow)
		if o.total.Count() != snap.Overflow.Count() {
			o.changed = c.tick
		}
		o.total = snap.Overflow
	}
	c.evict()
	return err
}

// path returns the counters of path p, new ones if there are none.
func (c *runqlatCollector) path(p string) *rqPath {
	rp := c.paths[p]
	if rp == nil {
		rp = &rqPath{labels: []metric.Label{{Key: "cgroup", Value: p, Named: true}}, changed: c.tick}
		c.paths[p] = rp
	}
	return rp
}

// add adds what cgroup cg's histogram gained since the last reading, h, to its path.
func (c *runqlatCollector) add(cg *rqCgroup, h *runqlat.Hist) {
	d, ok := h.Sub(&cg.last)
	if !ok {
		// Not a later reading of the same histogram (the probe lost it): all of h is new.
		d = *h
	}
	cg.last = *h
	if d.Count() == 0 && d.SumNS == 0 {
		return
	}
	p := c.path(cg.path)
	p.total.Add(&d)
	p.changed = c.tick
}

// evict forgets the paths of gone cgroups, the ones that changed longest ago first, while
// there are more than maxRunqlatPaths.
func (c *runqlatCollector) evict() {
	if len(c.paths) <= maxRunqlatPaths {
		return
	}
	var idle []string
	for p, rp := range c.paths {
		if rp.ids == 0 && p != rqOverflow && p != rqUnnamed {
			idle = append(idle, p)
		}
	}
	slices.SortFunc(idle, func(a, b string) int {
		return cmp.Or(cmp.Compare(c.paths[a].changed, c.paths[b].changed), cmp.Compare(a, b))
	})
	for _, p := range idle[:min(len(idle), len(c.paths)-maxRunqlatPaths)] {
		delete(c.paths, p)
	}
}

// Report adds picket.bpf.runqlat.*.
func (c *runqlatCollector) Report(s *metric.Sink) {
	c.mu.Lock()
	loaded, missed, cgroups := c.loaded, c.missed, len(c.ids)
	c.mu.Unlock()
	if !loaded {
		return
	}
	s.Counter("missed_waits", float64(missed), runqlatBPFLabels...)
	s.Gauge("cgroups", float64(cgroups), runqlatBPFLabels...)
	s.Gauge("maps_bytes", float64(c.mapBytes), runqlatBPFLabels...)
	c.programs.report(s, c.probe)
}

package collectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/bpf/oom"
	"github.com/picket-agent/picket/bpf/probe"
	"github.com/picket-agent/picket/collectors/cgroup"
)

var oomSeries = []Series{
	{Path: "oom.kills", Kind: metric.Counter, Help: "OOM-killer victims since picket started (eBPF, tracepoint mark_victim)"},
	{Path: "oom.cgroup.<cgroup>.kills", Kind: metric.Counter, Help: "the same per memory cgroup of the victim: its path in the memory hierarchy (cgroup v1) or the unified one (v2), sanitized (`/kubepods/x` → `_kubepods_x`); a cgroup removed before picket could name it in full gets the part known under `/...`; kills in new cgroups beyond the 512 kept count under `overflow`"},
	{Path: "picket.bpf.oom.lost_events", Kind: metric.Counter, Help: "OOM kills the kernel could not report because the probe's ring buffer was full"},
	{Path: "picket.bpf.oom.maps_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "kernel memory of the OOM probe's maps"},
	{Path: "picket.bpf.oom.<program>.run_time_seconds", Kind: metric.Counter, Unit: "seconds", Help: "time the kernel spent in the probe's program, by hook (mark_victim); only while BPF statistics are on (--bpf.stats, or sysctl kernel.bpf_stats_enabled=1)"},
	{Path: "picket.bpf.oom.<program>.run_count", Kind: metric.Counter, Help: "runs of the probe's program, by hook; only while BPF statistics are on"},
}

// oomProbe is what the collector needs of a loaded *oom.Probe; tests replay recorded
// kills through a fake.
type oomProbe interface {
	Run(ctx context.Context, handle func(*oom.Event)) error
	Lost() (uint64, error)
	Stats() ([]probe.ProgramStats, bool, error)
	MapBytes() (map[string]uint64, error)
	Close() error
}

// maxOOMCgroups bounds the per-cgroup counters: a host that runs a container per job could
// otherwise grow them without end. When full, cgroups that no longer exist are dropped
// (their series simply stop); kills in new cgroups beyond the bound count under overflow.
const maxOOMCgroups = 512

// overflowCgroup labels the kills in cgroups beyond maxOOMCgroups. Real paths start with
// "/", so it cannot collide with one.
const overflowCgroup = "overflow"

// oomCollector counts OOM kills from the eBPF probe. Load loads the probe, Run reads its
// ring buffer on a goroutine of its own (a kill is logged when it happens, not at the next
// tick), Collect reports the counts.
type oomCollector struct {
	log    *slog.Logger
	procfs string
	sysfs  string
	stats  bool
	load   func(oom.Options) (oomProbe, error)

	// Set by Load, before Run and the first Collect.
	probe    oomProbe
	resolver *cgroup.Resolver
	mapBytes uint64

	mu      sync.Mutex
	loaded  bool
	loadErr error
	runErr  error
	kills   uint64
	cgroups map[string]*oomCgroup

	// programLabels are Report's, by hook; only Report's goroutine touches them.
	programLabels map[string][]metric.Label
}

type oomCgroup struct {
	labels []metric.Label
	kills  uint64
}

var (
	oomBPFLabels = []metric.Label{{Key: "component", Value: "bpf"}, {Key: "probe", Value: "oom"}}
	// oomHooks are the tracepoints the probe attaches to.
	oomHooks = []string{oom.Hook}
)

func newOOM(o Options) (Collector, error) {
	load := o.loadOOM
	if load == nil {
		load = func(opts oom.Options) (oomProbe, error) { return oom.Load(opts) }
	}
	return &oomCollector{
		log:     o.Logger.With("collector", "oom"),
		procfs:  o.ProcFS,
		sysfs:   o.SysFS,
		stats:   o.BPFStats,
		load:    load,
		cgroups: map[string]*oomCgroup{},

		programLabels: map[string][]metric.Label{},
	}, nil
}

// Load finds the memory cgroup hierarchy and loads the probe.
func (c *oomCollector) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Without the hierarchy (no memory controller, cgroupfs not mounted where expected)
	// kills are still counted, and cgroups named from what the kernel copied.
	h, _ := cgroup.Find(c.procfs, c.sysfs, "memory")
	p, err := c.load(oom.Options{SysFS: c.sysfs, MemcgV1: h.V1, Stats: c.stats})
	if err != nil {
		c.loadErr = fmt.Errorf("%w: %w", ErrUnavailable, err)
		return c.loadErr
	}
	if mem, err := p.MapBytes(); err == nil {
		for _, b := range mem {
			c.mapBytes += b
		}
	}
	c.probe, c.resolver, c.loaded = p, cgroup.NewResolver(h.Dir), true
	return nil
}

// Run reads kills until ctx ends.
func (c *oomCollector) Run(ctx context.Context) error {
	if err := c.probe.Run(ctx, c.handle); err != nil {
		c.mu.Lock()
		c.runErr = fmt.Errorf("reading OOM kills stopped: %w", err)
		c.mu.Unlock()
		return err
	}
	return nil
}

// handle logs one kill and counts it, in that order: once a kill shows in the counters,
// its log line is out.
func (c *oomCollector) handle(e *oom.Event) {
	path := c.resolver.Path(e.CgroupID, e.Names, e.Complete())

	attrs := make([]any, 0, 32)
	attrs = append(attrs, "pid", e.TGID, "tid", e.PID, "comm", e.Comm, "uid", e.UID,
		"cgroup", path, "constraint", e.Constraint())
	if e.LimitUp >= 0 {
		attrs = append(attrs, "limit_cgroup", ancestor(path, e.LimitUp), "limit_bytes", e.LimitBytes)
	}
	attrs = append(attrs, "rss_anon_bytes", e.RSSAnon, "rss_file_bytes", e.RSSFile,
		"rss_shmem_bytes", e.RSSShmem, "oom_score_adj", e.OOMScoreAdj)
	if pod, container := cgroup.Kubernetes(path); pod != "" {
		attrs = append(attrs, "pod_uid", pod)
		if container != "" {
			attrs = append(attrs, "container_id", container)
		}
	}
	c.log.Warn("OOM kill", attrs...)
	c.count(path)
}

// count adds a kill to the totals.
func (c *oomCollector) count(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kills++
	cg := c.cgroups[path]
	if cg == nil && len(c.cgroups) >= maxOOMCgroups {
		for p := range c.cgroups {
			if p != overflowCgroup && !c.resolver.Exists(p) {
				delete(c.cgroups, p)
			}
		}
		if len(c.cgroups) >= maxOOMCgroups {
			path = overflowCgroup
			cg = c.cgroups[path]
		}
	}
	if cg == nil {
		cg = &oomCgroup{labels: []metric.Label{{Key: "cgroup", Value: path, Named: true}}}
		c.cgroups[path] = cg
	}
	cg.kills++
}

// ancestor is path with its last up nodes removed ("/a/b/c", 1 → "/a/b"). A path known
// only in part ("/.../b/c") keeps its marker when the ancestor lies above what is known.
func ancestor(path string, up int) string {
	nodes := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if path == "/" {
		nodes = nil
	}
	if up >= len(nodes) || (nodes[0] == "..." && up >= len(nodes)-1) {
		if nodes != nil && nodes[0] == "..." {
			return "/..."
		}
		return "/"
	}
	return "/" + strings.Join(nodes[:len(nodes)-up], "/")
}

// Collect adds oom.kills and oom.cgroup.<cgroup>.kills.
func (c *oomCollector) Collect(_ context.Context, s *metric.Sink) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loadErr != nil {
		return c.loadErr
	}
	if !c.loaded {
		return fmt.Errorf("%w: the probe was not loaded", ErrUnavailable)
	}
	s.Counter("kills", float64(c.kills))
	for _, p := range slices.Sorted(maps.Keys(c.cgroups)) {
		cg := c.cgroups[p]
		s.Counter("kills", float64(cg.kills), cg.labels...)
	}
	// A failure to turn on statistics the user asked for is reported here, every tick.
	_, _, err := c.probe.Stats()
	return errors.Join(c.runErr, err)
}

// Report adds picket.bpf.oom.*.
func (c *oomCollector) Report(s *metric.Sink) {
	c.mu.Lock()
	loaded := c.loaded
	c.mu.Unlock()
	if !loaded {
		return
	}
	if lost, err := c.probe.Lost(); err == nil {
		s.Counter("lost_events", float64(lost), oomBPFLabels...)
	}
	s.Gauge("maps_bytes", float64(c.mapBytes), oomBPFLabels...)
	stats, on, _ := c.probe.Stats()
	if !on {
		return
	}
	for _, st := range stats {
		labels := c.programLabels[st.Hook]
		if labels == nil {
			labels = append(slices.Clip(oomBPFLabels), metric.Label{Key: "program", Value: st.Hook})
			c.programLabels[st.Hook] = labels
		}
		s.Counter("run_time_seconds", st.RunTime.Seconds(), labels...)
		s.Counter("run_count", float64(st.RunCount), labels...)
	}
}

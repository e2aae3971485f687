package collectors

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/bpf/oom"
	"github.com/picket-agent/picket/bpf/probe"
	"github.com/picket-agent/picket/collectors/cgroup"
)

var oomSeries = []Series{
	{Path: "oom.kills", Kind: metric.Counter, Help: "OOM kills since picket started, as the kernel counts them: one per killed process, whatever its threads (eBPF: tracepoint mark_victim, counted in the kernel; kernels before 6.8 whose mark_victim passes only a pid: the kernel log). The kernel's own count since boot is vmstat.oom_kill"},
	{Path: "oom.cgroup.<cgroup>.kills", Kind: metric.Counter, Help: "the same per memory cgroup of the victim: its path in the memory hierarchy (cgroup v1) or the unified one (v2), sanitized (`/kubepods/x` → `_kubepods_x`); a cgroup removed before picket could name it in full gets the part known under `/...`; a kill whose record was lost (picket.bpf.oom.lost_events) is in oom.kills only. At most 512 cgroups are reported: then a removed one's series stop (its count is kept, and goes on if a cgroup comes back at its path), and kills in further cgroups count under `overflow`"},
	{Path: "picket.bpf.oom.lost_events", Kind: metric.Counter, Help: "OOM kill records that did not reach picket (the probe's ring buffer was full, or the kernel log was overwritten before picket read it): their kills are in oom.kills, their cgroup and log line are missing"},
	{Path: "picket.bpf.oom.maps_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "kernel memory of the OOM probe's maps"},
	{Path: "picket.bpf.oom.<program>.run_time_seconds", Kind: metric.Counter, Unit: "seconds", Help: "time the kernel spent in the probe's program, by hook (mark_victim); only while BPF statistics are on (--bpf.stats, or sysctl kernel.bpf_stats_enabled=1)"},
	{Path: "picket.bpf.oom.<program>.run_count", Kind: metric.Counter, Help: "runs of the probe's program, by hook: one per thread the kernel marks as a victim, so more than the kills; only while BPF statistics are on"},
}

// oomProbe is what the collector needs of a loaded *oom.Probe; tests replay recorded
// kills through a fake.
type oomProbe interface {
	Run(ctx context.Context, handle func(*oom.Event)) error
	Counts() (oom.Counts, error)
	Source() string
	StackConstraint() error
	Stats() ([]probe.ProgramStats, bool, error)
	MapBytes() (map[string]uint64, error)
	Close() error
}

// maxOOMCgroups bounds the per-cgroup counters reported: a host that runs a container per
// job could otherwise grow them without end. When full, cgroups that no longer exist stop
// being reported; kills in new cgroups beyond the bound count under overflow.
const maxOOMCgroups = 512

// maxOOMRetired bounds the counts kept of cgroups no longer reported, so that a cgroup
// that comes back at a path goes on from the path's count rather than from zero (which
// would read as a counter reset). Each is 8 bytes of hash and 8 of count; past the bound
// the oldest are forgotten, so a path could restart only after this many other cgroups
// with kills were removed since it was.
const maxOOMRetired = 8 * maxOOMCgroups

// overflowCgroup labels the kills in cgroups beyond maxOOMCgroups. Real paths start with
// "/", so it cannot collide with one.
const overflowCgroup = "overflow"

// oomCollector counts OOM kills from the eBPF probe. Load loads the probe, Run reads its
// ring buffer on a goroutine of its own (a kill is logged when it happens, not at the next
// tick), Collect reports the counts: the host total counted in the kernel, per cgroup
// what the records said.
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
	// cgroups are the per-cgroup counters reported, by path, and overflow the kills
	// beyond them. Only handle (Run's goroutine) changes them, under mu; it reads them
	// without.
	cgroups  map[string]*oomCgroup
	overflow *oomCgroup
	// retired are the counts of paths no longer reported, by pathHash, and retiredOrder
	// their hashes, oldest first.
	retired      map[uint64]uint64
	retiredOrder []uint64

	programs programStats
}

type oomCgroup struct {
	labels []metric.Label
	// id is the cgroup last counted under the path (0: unknown), to tell it from one made
	// again at the same path.
	id    uint64
	kills uint64
}

var (
	oomBPFLabels = []metric.Label{{Key: "component", Value: "bpf"}, {Key: "probe", Value: "oom"}}
	// oomHooks are the tracepoints the probe attaches to.
	oomHooks = []string{oom.Hook}
)

// oomVariant says how the oom collector reads kills on a kernel whose hook has params.
func oomVariant(_ string, params []btf.FuncParam) (string, error) { return oom.Variant(params) }

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
		retired: map[uint64]uint64{},

		programs: programStats{base: oomBPFLabels},
	}, nil
}

// Load finds the memory cgroup hierarchy and loads the probe. What it cannot do of what
// was asked (BPF statistics, the stack that tells memcg from global) is logged here, once.
func (c *oomCollector) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Without the hierarchy (no memory controller, cgroupfs not mounted where expected)
	// kills are still counted, and cgroups named from what the kernel copied.
	h, _ := cgroup.Find(c.procfs, c.sysfs, "memory")
	p, err := c.load(oom.Options{SysFS: c.sysfs, ProcFS: c.procfs, MemcgV1: h.V1, Stats: c.stats})
	if err != nil {
		c.loadErr = fmt.Errorf("%w: %w", ErrUnavailable, err)
		return c.loadErr
	}
	if mem, err := p.MapBytes(); err == nil {
		for _, b := range mem {
			c.mapBytes += b
		}
	}
	switch err := p.StackConstraint(); {
	case p.Source() == "kmsg":
		c.log.Info("mark_victim passes only a pid on this kernel: OOM kills are read from the kernel log (/dev/kmsg)")
	case err != nil:
		c.log.Info("OOM kills are told memcg or global from memory usage, not the kernel stack: a global OOM under a memory cgroup near its limit reads as memcg", "error", err)
	}
	if c.stats {
		// Collect does not report it every tick: the probe runs well without them.
		if _, _, err := p.Stats(); err != nil {
			c.log.Warn("no run time and count for the OOM probe (--bpf.stats)", "error", err)
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

// handle logs one kill and counts it for its cgroup, in that order: once a kill shows in
// a cgroup's counter, its log line is out.
func (c *oomCollector) handle(e *oom.Event) {
	path := "/..."
	if e.CgroupLevel >= 0 {
		path = c.resolver.Path(e.CgroupID, e.Names, e.Complete())
	}

	attrs := make([]any, 0, 36)
	attrs = append(attrs, "pid", e.TGID, "tid", e.PID, "comm", e.Comm, "uid", e.UID,
		"cgroup", path, "constraint", e.Constraint(), "constraint_from", e.ConstraintFrom)
	if e.LimitUp >= 0 {
		attrs = append(attrs, "limit_cgroup", ancestor(path, e.LimitUp))
		if e.LimitBytes > 0 {
			attrs = append(attrs, "limit_bytes", e.LimitBytes)
		}
	}
	attrs = append(attrs, "rss_anon_bytes", e.RSSAnon, "rss_file_bytes", e.RSSFile,
		"rss_shmem_bytes", e.RSSShmem, "oom_score_adj", e.OOMScoreAdj)
	if e.Kills > 1 {
		// Kills in the cgroup whose victims were marked before: counted with this one.
		attrs = append(attrs, "kills", e.Kills)
	}
	if pod, container := cgroup.Kubernetes(path); pod != "" {
		attrs = append(attrs, "pod_uid", pod)
		if container != "" {
			attrs = append(attrs, "container_id", container)
		}
	}
	c.log.Warn("OOM kill", attrs...)

	id := e.CgroupID
	if id == 0 && e.Complete() {
		// The kernel log names the cgroup but not its id: the one at the path now.
		id = c.resolver.ID(path)
	}
	c.count(path, id, max(e.Kills, 1))
}

// count adds n kills to the cgroup at path, whose id is id. Called by handle only.
func (c *oomCollector) count(path string, id, n uint64) {
	cg := c.cgroups[path]
	if cg == nil && len(c.cgroups) >= maxOOMCgroups {
		c.retireGone()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case cg != nil:
	case len(c.cgroups) < maxOOMCgroups:
		// A path that was reported before goes on from its count.
		h := pathHash(path)
		cg = &oomCgroup{labels: []metric.Label{{Key: "cgroup", Value: path, Named: true}}, kills: c.retired[h]}
		if _, ok := c.retired[h]; ok {
			delete(c.retired, h)
			c.retiredOrder = slices.DeleteFunc(c.retiredOrder, func(x uint64) bool { return x == h })
		}
		c.cgroups[path] = cg
	default:
		if c.overflow == nil {
			c.overflow = &oomCgroup{labels: []metric.Label{{Key: "cgroup", Value: overflowCgroup, Named: true}}}
		}
		c.overflow.kills += n
		return
	}
	if id != 0 {
		cg.id = id
	}
	cg.kills += n
}

// retireGone stops reporting the cgroups that no longer exist at their path (removed,
// renamed, or removed and made again), keeping their counts. The checks, a stat per
// cgroup, run without c.mu: Collect does not wait for them.
func (c *oomCollector) retireGone() {
	var gone []string
	for p, cg := range c.cgroups {
		if !c.resolver.Alive(p, cg.id) {
			gone = append(gone, p)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range gone {
		h := pathHash(p)
		c.retired[h] = c.cgroups[p].kills
		c.retiredOrder = append(c.retiredOrder, h)
		delete(c.cgroups, p)
	}
	for len(c.retiredOrder) > maxOOMRetired {
		delete(c.retired, c.retiredOrder[0])
		c.retiredOrder = c.retiredOrder[1:]
	}
}

// pathHash names a retired path in 8 bytes.
func pathHash(p string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(p))
	return h.Sum64()
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

// Collect adds oom.kills, as the kernel side counted them, and oom.cgroup.<cgroup>.kills.
func (c *oomCollector) Collect(_ context.Context, s *metric.Sink) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loadErr != nil {
		return c.loadErr
	}
	if !c.loaded {
		return fmt.Errorf("%w: the probe was not loaded", ErrUnavailable)
	}
	// After Run closed the probe (shutdown), the counts it had at the end.
	n, err := c.probe.Counts()
	if err != nil {
		return fmt.Errorf("reading the OOM kill count: %w", err)
	}
	s.Counter("kills", float64(n.Kills))
	for _, p := range slices.Sorted(maps.Keys(c.cgroups)) {
		cg := c.cgroups[p]
		s.Counter("kills", float64(cg.kills), cg.labels...)
	}
	if c.overflow != nil {
		s.Counter("kills", float64(c.overflow.kills), c.overflow.labels...)
	}
	return c.runErr
}

// Report adds picket.bpf.oom.*.
func (c *oomCollector) Report(s *metric.Sink) {
	c.mu.Lock()
	loaded := c.loaded
	c.mu.Unlock()
	if !loaded {
		return
	}
	if n, err := c.probe.Counts(); err == nil {
		s.Counter("lost_events", float64(n.Lost), oomBPFLabels...)
	}
	s.Gauge("maps_bytes", float64(c.mapBytes), oomBPFLabels...)
	c.programs.report(s, c.probe)
}

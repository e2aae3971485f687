// Package collectors reads the kernel's state from procfs and sysfs and adds it to a
// metric.Sink. Collectors know nothing of wire formats, delivery or scheduling: the agent
// calls Collect once per tick, under a deadline, and ships whatever was added.
package collectors

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/bpf/oom"
	"github.com/picket-agent/picket/bpf/runqlat"
)

// Collector reads one source.
type Collector interface {
	// Collect adds this tick's samples to s. The agent calls it once per tick, never twice
	// at once, with ctx carrying the tick's deadline. Samples added before an error are
	// kept and shipped; independent sub-sources are joined with errors.Join so one bad
	// file does not hide the others. ErrNoData (wrapped) means the source does not exist
	// on this host, which is not a failure.
	Collect(ctx context.Context, s *metric.Sink) error
}

// ErrNoData means the collector's source is absent on this host (no /proc/pressure on an
// old kernel, no conntrack module): the collector is reported down, once, not as failing.
var ErrNoData = errors.New("source not present on this host")

// ErrUnavailable means the collector cannot run here as picket runs now: its eBPF probe
// did not load (no privilege, no BTF, a tracepoint this kernel lacks or a verifier that
// refused it). The wrapping error names the cause and the fix. The collector is reported
// down (picket.collector.<name>.up 0), logged once as a warning, and the rest run on.
var ErrUnavailable = errors.New("cannot run here")

// Probe is a collector whose source is a probe in the kernel (eBPF): loaded once, fed by
// the kernel between ticks, released when the agent stops.
type Probe interface {
	Collector
	// Load checks that the probe can run here, then loads and attaches it. The agent calls
	// it once, before the first tick. An error (wrapping ErrUnavailable) names the cause and
	// the fix; Collect then returns it every tick, and `picket run --strict` exits with it.
	Load() error
	// Run serves the loaded probe (reads its ring buffer, say) until ctx ends, then
	// releases every kernel object and returns. The agent calls it once, after Load
	// succeeded, on a goroutine of its own. An error means the probe stopped early;
	// Collect reports it from then on.
	Run(ctx context.Context) error
	// Report adds the probe's own cost to the agent's samples, as picket.bpf.<probe>.*:
	// its programs' run time and count, its lost events, its maps' memory. The agent calls
	// it once per tick from its self collector, concurrently with Collect and Run.
	Report(s *metric.Sink)
}

// Options are what every collector is built from. Patterns are Go regular expressions
// matched against the whole name; an empty include matches everything.
type Options struct {
	Logger *slog.Logger
	// ProcFS and SysFS are the roots read instead of /proc and /sys: a fixture tree in
	// tests, the host's mounts from inside a container.
	ProcFS string
	SysFS  string
	// RootFS is where the host's root filesystem is seen: mount points from the mount
	// table are statfs'ed under it ("/host" with the host's / mounted there).
	RootFS string

	// PerCPU adds cpu.<n>.<mode> beside cpu.total.<mode>; off for very wide hosts.
	PerCPU bool

	DiskInclude string
	DiskExclude string
	NetInclude  string
	NetExclude  string

	FSMountExclude string
	FSTypeExclude  string

	// BPFStats turns on the kernel's BPF run-time statistics while picket runs, so the
	// probes' picket.bpf.<probe>.<program>.run_time_seconds and run_count have values.
	// They cost every BPF program on the host, picket's or not, two clock reads per run.
	BPFStats bool

	// loadOOM stands in for loading the OOM probe in tests; nil means the real one.
	loadOOM func(oom.Options) (oomProbe, error)
	// loadRunqlat stands in for loading the run-queue latency probe in tests.
	loadRunqlat func(runqlat.Options) (runqlatProbe, error)

	// statfs stands in for unix.Statfs in tests; nil means the real one.
	statfs func(path string, st *unix.Statfs_t) error
	// pageSize stands in for os.Getpagesize in tests, whose fixtures count 4 KiB pages;
	// 0 means the real one.
	pageSize int
}

// Series documents one family of series a collector emits: the README's metric reference
// is generated from these, and the golden tests check every emitted sample against them.
type Series struct {
	// Path follows <prefix>.<host>.; a node in angle brackets stands for any one node
	// (a label value, or a field named after the kernel's own name for it).
	Path string
	Kind metric.Kind
	// Unit of the value: "seconds", "bytes", or "" for a plain count.
	Unit string
	Help string
}

// Factory builds one collector.
type Factory struct {
	Name string
	// Default says whether the collector runs unless --no-collector.<name> is given.
	Default bool
	Help    string
	Series  []Series
	// Hooks are the kernel tracepoints an eBPF collector's probe attaches to: `picket
	// check` reports whether this kernel has each, and with which prototype.
	Hooks []string
	// Variant, when set, says what the probe makes of the prototype params that this
	// kernel gives hook, for `picket check`: the variant it loads, or an error (wrapping
	// probe.ErrPrototype) when it cannot use it. Nil means any prototype the kernel has
	// is one the probe loads with.
	Variant func(hook string, params []btf.FuncParam) (string, error)
	New     func(Options) (Collector, error)
}

// Default patterns, the same as the CLI's defaults. They leave out what node_exporter
// leaves out: loop/ram devices and partitions, per-container virtual interfaces, pseudo
// and container-layer filesystems.
const (
	DefaultDiskExclude    = `^(z?ram|loop|fd|sr|nbd)\d+$|^(h|s|v|xv)d[a-z]+\d+$|^nvme\d+n\d+p\d+$|^mmcblk\d+p\d+$`
	DefaultNetExclude     = `^(veth|cali|lxc|vnet|tap|flannel|cni|kube-ipvs|cilium_|gke|vxlan)`
	DefaultFSMountExclude = `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+|var/lib/kubelet/pods/.+)($|/)`
	DefaultFSTypeExclude  = `^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|efivarfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs|ramfs|nfsd|fuse\.lxcfs)$`
)

// DefaultOptions returns the options picket runs with when nothing is configured.
func DefaultOptions() Options {
	return Options{
		Logger:         slog.Default(),
		ProcFS:         "/proc",
		SysFS:          "/sys",
		RootFS:         "/",
		PerCPU:         true,
		DiskExclude:    DefaultDiskExclude,
		NetExclude:     DefaultNetExclude,
		FSMountExclude: DefaultFSMountExclude,
		FSTypeExclude:  DefaultFSTypeExclude,
	}
}

// Nodes returns a sample's Graphite path after <prefix>.<host>., one element per node,
// before sanitizing.
func Nodes(s *metric.Sample) []string {
	n := make([]string, 0, 2+2*len(s.Labels))
	n = append(n, s.Collector)
	for _, l := range s.Labels {
		if l.Named {
			n = append(n, l.Key)
		}
		n = append(n, l.Value)
	}
	return append(n, s.Field)
}

// Matches reports whether sample s belongs to the documented series.
func (doc Series) Matches(s *metric.Sample) bool {
	if doc.Kind != s.Kind {
		return false
	}
	want := strings.Split(doc.Path, ".")
	got := Nodes(s)
	if len(want) != len(got) {
		return false
	}
	for i, w := range want {
		if strings.HasPrefix(w, "<") && strings.HasSuffix(w, ">") {
			if got[i] == "" {
				return false
			}
			continue
		}
		if w != got[i] {
			return false
		}
	}
	return true
}

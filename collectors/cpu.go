package collectors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/prometheus/procfs"
)

var cpuSeries = []Series{
	{Path: "cpu.total.<mode>", Kind: metric.Counter, Unit: "seconds",
		Help: "time all CPUs together spent in each mode since boot, from /proc/stat: user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice (user includes guest, nice includes guest_nice, as the kernel counts them)"},
	{Path: "cpu.<cpu>.<mode>", Kind: metric.Counter, Unit: "seconds",
		Help: "the same per online CPU, named by the kernel's CPU number; only with per-CPU metrics on"},
}

// cpuModes are the fields of a cpu line of /proc/stat, in the kernel's order.
var cpuModes = [...]string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"}

type cpuCollector struct {
	fs     procfs.FS
	path   string
	perCPU bool
	total  []metric.Label
	// perCPULabels holds one labels slice per CPU number, built the first time the CPU is
	// seen. It is bounded by the host's possible CPUs, whatever hotplug does.
	perCPULabels map[int64][]metric.Label
}

func newCPU(o Options) (Collector, error) {
	pfs, err := procfs.NewFS(o.ProcFS)
	if err != nil {
		return nil, err
	}
	return &cpuCollector{
		fs:           pfs,
		path:         filepath.Join(o.ProcFS, "stat"),
		perCPU:       o.PerCPU,
		total:        []metric.Label{{Key: "cpu", Value: "total"}},
		perCPULabels: map[int64][]metric.Label{},
	}, nil
}

func (c *cpuCollector) Collect(_ context.Context, s *metric.Sink) error {
	st, err := c.fs.Stat()
	if err != nil {
		return procFileErr(c.path, err)
	}
	// procfs leaves a missing line at zero. The kernel writes btime after every cpu line,
	// so without it the cpu lines may be cut short too.
	if st.BootTime == 0 {
		return fmt.Errorf("parsing %s: no btime line: file truncated", c.path)
	}
	errs := []error{addCPUTimes(s, st.CPUTotal, c.total)}
	if c.perCPU {
		// procfs hands the CPUs over as a map: sort them, so every tick writes them in the
		// same order (and errors name the lowest failing CPU first).
		for _, n := range slices.Sorted(maps.Keys(st.CPU)) {
			t := st.CPU[n]
			l, ok := c.perCPULabels[n]
			if !ok {
				l = []metric.Label{{Key: "cpu", Value: strconv.FormatInt(n, 10)}}
				c.perCPULabels[n] = l
			}
			errs = append(errs, addCPUTimes(s, t, l))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("parsing %s: %w", c.path, err)
	}
	return nil
}

// addCPUTimes adds one cpu line's modes, or none of them if a value is not a time: fmt's
// float scanning in procfs accepts "nan" and "inf".
func addCPUTimes(s *metric.Sink, t procfs.CPUStat, l []metric.Label) error {
	v := [len(cpuModes)]float64{t.User, t.Nice, t.System, t.Idle, t.Iowait, t.IRQ, t.SoftIRQ, t.Steal, t.Guest, t.GuestNice}
	for i, x := range v {
		if !(x >= 0 && x <= maxSeconds) {
			return fmt.Errorf("cpu %s: %s time %v out of range", l[0].Value, cpuModes[i], x)
		}
	}
	for i, x := range v {
		s.Counter(cpuModes[i], x, l...)
	}
	return nil
}

// maxSeconds bounds any time a kernel counter can hold (about 31,000 years): larger values,
// and +Inf, are garbage rather than data.
const maxSeconds = 1e12

// procFileErr names the file at fault exactly once: os errors carry the path already,
// procfs's parse errors do not.
func procFileErr(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("reading %s: %w", path, pe.Err)
	}
	return fmt.Errorf("parsing %s: %w", path, err)
}

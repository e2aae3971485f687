package collectors

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/prometheus/procfs"
)

var statSeries = []Series{
	{Path: "stat.context_switches", Kind: metric.Counter, Help: "context switches since boot (ctxt in /proc/stat)"},
	{Path: "stat.forks", Kind: metric.Counter, Help: "processes and threads created since boot (processes)"},
	{Path: "stat.interrupts", Kind: metric.Counter, Help: "interrupts serviced since boot, all sources together (intr)"},
	{Path: "stat.procs_running", Kind: metric.Gauge, Help: "threads runnable now (procs_running)"},
	{Path: "stat.procs_blocked", Kind: metric.Gauge, Help: "threads waiting for I/O now (procs_blocked)"},
	{Path: "stat.boot_time", Kind: metric.Gauge, Unit: "seconds", Help: "when the host booted, unix seconds (btime)"},
}

type statCollector struct {
	fs   procfs.FS
	path string
}

func newStat(o Options) (Collector, error) {
	pfs, err := procfs.NewFS(o.ProcFS)
	if err != nil {
		return nil, err
	}
	return &statCollector{fs: pfs, path: filepath.Join(o.ProcFS, "stat")}, nil
}

func (c *statCollector) Collect(_ context.Context, s *metric.Sink) error {
	st, err := c.fs.Stat()
	if err != nil {
		return procFileErr(c.path, err)
	}
	// procfs leaves a missing line at zero, and a zero here would be shipped as data. The
	// kernel always writes both lines, and procs_running counts at least the reader itself.
	if st.BootTime == 0 || st.ProcessesRunning == 0 {
		return fmt.Errorf("parsing %s: no btime or procs_running line: file truncated", c.path)
	}
	s.Counter("context_switches", float64(st.ContextSwitches))
	s.Counter("forks", float64(st.ProcessCreated))
	s.Counter("interrupts", float64(st.IRQTotal))
	s.Gauge("procs_running", float64(st.ProcessesRunning))
	s.Gauge("procs_blocked", float64(st.ProcessesBlocked))
	s.Gauge("boot_time", float64(st.BootTime))
	return nil
}

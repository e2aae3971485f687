package collectors

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/prometheus/procfs"
)

var loadSeries = []Series{
	{Path: "load.load1", Kind: metric.Gauge, Help: "load average over 1 minute: runnable plus uninterruptible threads (/proc/loadavg)"},
	{Path: "load.load5", Kind: metric.Gauge, Help: "load average over 5 minutes"},
	{Path: "load.load15", Kind: metric.Gauge, Help: "load average over 15 minutes"},
}

type loadCollector struct {
	fs   procfs.FS
	path string
}

func newLoad(o Options) (Collector, error) {
	pfs, err := procfs.NewFS(o.ProcFS)
	if err != nil {
		return nil, err
	}
	return &loadCollector{fs: pfs, path: filepath.Join(o.ProcFS, "loadavg")}, nil
}

func (c *loadCollector) Collect(_ context.Context, s *metric.Sink) error {
	l, err := c.fs.LoadAvg()
	if err != nil {
		return procFileErr(c.path, err)
	}
	// strconv.ParseFloat in procfs takes "NaN" and "Inf", which no load can be.
	for _, v := range [...]float64{l.Load1, l.Load5, l.Load15} {
		if !(v >= 0 && v <= maxLoad) {
			return fmt.Errorf("parsing %s: load %v out of range", c.path, v)
		}
	}
	s.Gauge("load1", l.Load1)
	s.Gauge("load5", l.Load5)
	s.Gauge("load15", l.Load15)
	return nil
}

// maxLoad is PID_MAX_LIMIT: a load average cannot exceed the number of tasks, so only
// garbage is above it.
const maxLoad = 1 << 22

package collectors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/prometheus/procfs"
)

var pressureSeries = []Series{
	{Path: "pressure.<resource>.some_seconds", Kind: metric.Counter, Unit: "seconds",
		Help: "time at least one task stalled waiting for the resource (cpu, memory, io) since boot, from /proc/pressure/<resource> total="},
	{Path: "pressure.<resource>.full_seconds", Kind: metric.Counter, Unit: "seconds",
		Help: "time all non-idle tasks stalled at once on the resource (cpu, memory, io, irq); irq has only this line"},
}

// pressureResources are the files of /proc/pressure. irq needs CONFIG_IRQ_TIME_ACCOUNTING
// and is absent on many kernels; a missing file is left out.
var pressureResources = [...]string{"cpu", "io", "irq", "memory"}

type pressureCollector struct {
	fs     procfs.FS
	dir    string
	labels [len(pressureResources)][]metric.Label
}

func newPressure(o Options) (Collector, error) {
	pfs, err := procfs.NewFS(o.ProcFS)
	if err != nil {
		return nil, err
	}
	c := &pressureCollector{fs: pfs, dir: filepath.Join(o.ProcFS, "pressure")}
	for i, r := range pressureResources {
		c.labels[i] = []metric.Label{{Key: "resource", Value: r}}
	}
	return c, nil
}

func (c *pressureCollector) Collect(_ context.Context, s *metric.Sink) error {
	// The kernel creates /proc/pressure only when PSI is built in and not disabled with psi=0.
	if _, err := os.Stat(c.dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", c.dir, ErrNoData)
	}
	var errs []error
	found := false
	for i, r := range pressureResources {
		path := filepath.Join(c.dir, r)
		st, err := c.fs.PSIStatsForResource(r)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		found = true
		if err != nil {
			errs = append(errs, procFileErr(path, err))
			continue
		}
		if st.Some == nil && st.Full == nil {
			errs = append(errs, fmt.Errorf("parsing %s: no some or full line", path))
			continue
		}
		// total= is in microseconds.
		if st.Some != nil {
			s.Counter("some_seconds", float64(st.Some.Total)/1e6, c.labels[i]...)
		}
		if st.Full != nil {
			s.Counter("full_seconds", float64(st.Full.Total)/1e6, c.labels[i]...)
		}
	}
	if !found {
		return fmt.Errorf("reading %s: no resource files: %w", c.dir, ErrNoData)
	}
	return errors.Join(errs...)
}

package collectors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/prometheus/procfs"
)

var conntrackSeries = []Series{
	{Path: "conntrack.entries", Kind: metric.Gauge, Help: "connections tracked by netfilter now"},
	{Path: "conntrack.entries_limit", Kind: metric.Gauge, Help: "size of the table (nf_conntrack_max); new connections are dropped when entries reach it"},
}

type conntrackCollector struct {
	fs   procfs.FS
	root string
}

func newConntrack(o Options) (Collector, error) {
	fs, err := procfs.NewFS(o.ProcFS)
	if err != nil {
		return nil, err
	}
	return &conntrackCollector{fs: fs, root: o.ProcFS}, nil
}

// Collect reads /proc/sys/net/netfilter/nf_conntrack_count and nf_conntrack_max, which
// exist only while the nf_conntrack module is loaded.
func (c *conntrackCollector) Collect(_ context.Context, s *metric.Sink) error {
	n, err := c.read("nf_conntrack_count")
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: no %s (nf_conntrack not loaded)", ErrNoData, c.path("nf_conntrack_count"))
	}
	if err != nil {
		return err
	}
	s.Gauge("entries", n)
	limit, err := c.read("nf_conntrack_max")
	if err != nil {
		return err
	}
	s.Gauge("entries_limit", limit)
	return nil
}

func (c *conntrackCollector) path(name string) string {
	return filepath.Join(c.root, "sys", "net", "netfilter", name)
}

// read returns the single integer of a netfilter sysctl.
func (c *conntrackCollector) read(name string) (float64, error) {
	v, err := c.fs.SysctlInts("net.netfilter." + name)
	if errors.Is(err, procfs.ErrFileParse) {
		return 0, fmt.Errorf("parsing %s: %w", c.path(name), err)
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("parsing %s: %d values, want 1", c.path(name), len(v))
	}
	return float64(v[0]), nil
}

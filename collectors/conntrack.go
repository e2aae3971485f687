package collectors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"

	"github.com/picket-agent/picket/agent/metric"
)

var conntrackSeries = []Series{
	{Path: "conntrack.entries", Kind: metric.Gauge, Help: "connections tracked by netfilter now"},
	{Path: "conntrack.entries_limit", Kind: metric.Gauge, Help: "size of the table (nf_conntrack_max); new connections are dropped when entries reach it"},
}

type conntrackCollector struct {
	count, max string
}

func newConntrack(o Options) (Collector, error) {
	dir := filepath.Join(o.ProcFS, "sys", "net", "netfilter")
	return &conntrackCollector{
		count: filepath.Join(dir, "nf_conntrack_count"),
		max:   filepath.Join(dir, "nf_conntrack_max"),
	}, nil
}

// Collect reads /proc/sys/net/netfilter/nf_conntrack_count and nf_conntrack_max, which
// exist only while the nf_conntrack module is loaded.
func (c *conntrackCollector) Collect(_ context.Context, s *metric.Sink) error {
	err := addUintGauge(s, "entries", c.count)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w (nf_conntrack not loaded)", c.count, ErrNoData)
	}
	if err != nil {
		return err
	}
	return addUintGauge(s, "entries_limit", c.max)
}

// addUintGauge adds the one number of a /proc/sys file as the gauge field.
func addUintGauge(s *metric.Sink, field, path string) error {
	v, err := readProcFile(path, parseUintLine)
	if err != nil {
		return err
	}
	s.Gauge(field, float64(v))
	return nil
}

// parseUintLine reads a file whose one line is one unsigned decimal number, as most of
// /proc/sys is.
func parseUintLine(r io.Reader) (uint64, error) {
	f, err := firstLineFields(r, "number")
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(f[0]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("line 1: %w", err)
	}
	return v, nil
}

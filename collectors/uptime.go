package collectors

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/picket-agent/picket/agent/metric"
)

var uptimeSeries = []Series{
	{Path: "uptime.seconds", Kind: metric.Gauge, Unit: "seconds",
		Help: "time since boot, suspend included (/proc/uptime); a gauge because its value, not its rate, is what one reads"},
	{Path: "uptime.idle_seconds", Kind: metric.Counter, Unit: "seconds",
		Help: "time the CPUs spent idle since boot, summed over CPUs"},
}

type uptimeCollector struct {
	path string
}

func newUptime(o Options) (Collector, error) {
	return &uptimeCollector{path: filepath.Join(o.ProcFS, "uptime")}, nil
}

func (c *uptimeCollector) Collect(_ context.Context, s *metric.Sink) error {
	t, err := readProcFile(c.path, parseUptime)
	if err != nil {
		return err
	}
	s.Gauge("seconds", t[0])
	s.Counter("idle_seconds", t[1])
	return nil
}

// parseUptime reads /proc/uptime, one line "<uptime> <idle>" in seconds with two decimals.
func parseUptime(r io.Reader) ([2]float64, error) {
	var t [2]float64
	f, err := firstLineFields(r, "uptime idle")
	if err != nil {
		return t, err
	}
	if t[0], err = parseSeconds(f[0]); err != nil {
		return [2]float64{}, fmt.Errorf("line 1: uptime: %w", err)
	}
	if t[1], err = parseSeconds(f[1]); err != nil {
		return [2]float64{}, fmt.Errorf("line 1: idle: %w", err)
	}
	return t, nil
}

// parseSeconds parses a kernel time in seconds. ParseFloat alone would take "NaN", "Inf"
// and negative values, none of which the kernel writes.
func parseSeconds(b []byte) (float64, error) {
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, err
	}
	if !(v >= 0 && v <= maxSeconds) {
		return 0, fmt.Errorf("%.30q is out of range", b)
	}
	return v, nil
}

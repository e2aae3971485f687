package collectors

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
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
	f, err := os.Open(c.path)
	if err != nil {
		return procFileErr(c.path, err)
	}
	defer f.Close()
	up, idle, err := parseUptime(f)
	if err != nil {
		return procFileErr(c.path, err)
	}
	s.Gauge("seconds", up)
	s.Counter("idle_seconds", idle)
	return nil
}

// parseUptime reads /proc/uptime, one line "<uptime> <idle>" in seconds with two decimals.
func parseUptime(r io.Reader) (up, idle float64, err error) {
	sc := bufio.NewScanner(r)
	sc.Split(scanKernelLines)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return 0, 0, fmt.Errorf("line 1: %w", err)
		}
		return 0, 0, errEmptyFile
	}
	f := bytes.Fields(sc.Bytes())
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("line 1: want \"uptime idle\", got %.60q", sc.Bytes())
	}
	if up, err = parseSeconds(f[0]); err != nil {
		return 0, 0, fmt.Errorf("line 1: uptime: %w", err)
	}
	if idle, err = parseSeconds(f[1]); err != nil {
		return 0, 0, fmt.Errorf("line 1: idle: %w", err)
	}
	return up, idle, nil
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

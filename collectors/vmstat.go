package collectors

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/picket-agent/picket/agent/metric"
)

var vmstatSeries = []Series{
	{Path: "vmstat.<event>", Kind: metric.Counter,
		Help: "every /proc/vmstat field that counts events since boot, named and valued as the kernel gives it (pgfault, pgmajfault, pswpin, oom_kill, numa_hit, workingset_refault_file, nr_dirtied…): all fields but the gauges below"},
	{Path: "vmstat.<nr_field>", Kind: metric.Gauge,
		Help: "every /proc/vmstat field that is a current amount, as the kernel gives it (mostly pages, nr_kernel_stack in kB): nr_* fields except the cumulative nr_dirtied, nr_written, nr_throttled_written, nr_vmscan_write, nr_vmscan_immediate_reclaim, nr_foll_pin_acquired, nr_foll_pin_released and nr_tlb_*; and workingset_nodes"},
}

type vmstatCollector struct {
	path string
}

func newVmstat(o Options) (Collector, error) {
	return &vmstatCollector{path: filepath.Join(o.ProcFS, "vmstat")}, nil
}

func (c *vmstatCollector) Collect(_ context.Context, s *metric.Sink) error {
	fields, err := readProcFile(c.path, parseVmstat)
	for _, fl := range fields {
		if vmstatIsGauge(fl.Name) {
			s.Gauge(fl.Name, float64(fl.Value))
		} else {
			s.Counter(fl.Name, float64(fl.Value))
		}
	}
	return err
}

// vmstatIsGauge says whether a /proc/vmstat field is a current amount rather than an event
// count. The kernel's own split is by enum (zone, NUMA, node, writeback, event), which the
// file does not show and whose order changes between versions; nr_ is the kernel's prefix
// for amounts, and the few nr_ names that count events are listed.
func vmstatIsGauge(name string) bool {
	switch name {
	case "workingset_nodes":
		return true
	case "nr_dirtied", "nr_written", "nr_throttled_written", "nr_vmscan_write",
		"nr_vmscan_immediate_reclaim", "nr_foll_pin_acquired", "nr_foll_pin_released":
		return false
	}
	return strings.HasPrefix(name, "nr_") && !strings.HasPrefix(name, "nr_tlb_")
}

// vmstatField is one line of /proc/vmstat.
type vmstatField struct {
	Name  string
	Value uint64
}

// parseVmstat reads /proc/vmstat lines "name value". It stops at the first bad line and
// returns the fields before it with the error, so the caller can keep them.
func parseVmstat(r io.Reader) ([]vmstatField, error) {
	fields := make([]vmstatField, 0, 256)
	err := scanLines(r, func(line []byte) error {
		name, val, ok := bytes.Cut(line, []byte(" "))
		if !ok || len(name) == 0 || len(val) == 0 {
			return fmt.Errorf("want \"name value\", got %.60q", line)
		}
		v, err := strconv.ParseUint(string(val), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fields = append(fields, vmstatField{Name: string(name), Value: v})
		return nil
	})
	return fields, err
}

package collectors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/picket-agent/picket/agent/metric"
)

var diskSeries = []Series{
	{Path: "disk.<dev>.reads_completed", Kind: metric.Counter, Help: "reads completed"},
	{Path: "disk.<dev>.reads_merged", Kind: metric.Counter, Help: "adjacent reads merged into one request"},
	{Path: "disk.<dev>.read_bytes", Kind: metric.Counter, Unit: "bytes", Help: "bytes read (512-byte sectors)"},
	{Path: "disk.<dev>.read_time_seconds", Kind: metric.Counter, Unit: "seconds", Help: "time reads spent queued and in service, summed over requests"},
	{Path: "disk.<dev>.writes_completed", Kind: metric.Counter, Help: "writes completed"},
	{Path: "disk.<dev>.writes_merged", Kind: metric.Counter, Help: "adjacent writes merged into one request"},
	{Path: "disk.<dev>.written_bytes", Kind: metric.Counter, Unit: "bytes", Help: "bytes written (512-byte sectors)"},
	{Path: "disk.<dev>.write_time_seconds", Kind: metric.Counter, Unit: "seconds", Help: "time writes spent queued and in service, summed over requests"},
	{Path: "disk.<dev>.io_now", Kind: metric.Gauge, Help: "requests in flight"},
	{Path: "disk.<dev>.io_time_seconds", Kind: metric.Counter, Unit: "seconds", Help: "time the device had at least one request in flight (utilisation)"},
	{Path: "disk.<dev>.io_time_weighted_seconds", Kind: metric.Counter, Unit: "seconds", Help: "time in flight weighted by the number of requests (queue depth)"},
	{Path: "disk.<dev>.discards_completed", Kind: metric.Counter, Help: "discards completed (Linux 4.18+)"},
	{Path: "disk.<dev>.discards_merged", Kind: metric.Counter, Help: "adjacent discards merged (Linux 4.18+)"},
	{Path: "disk.<dev>.discarded_bytes", Kind: metric.Counter, Unit: "bytes", Help: "bytes discarded (Linux 4.18+)"},
	{Path: "disk.<dev>.discards_time_seconds", Kind: metric.Counter, Unit: "seconds", Help: "time discards spent queued and in service (Linux 4.18+)"},
	{Path: "disk.<dev>.flushes_completed", Kind: metric.Counter, Help: "cache flushes completed (Linux 5.5+)"},
	{Path: "disk.<dev>.flushes_time_seconds", Kind: metric.Counter, Unit: "seconds", Help: "time flushes spent queued and in service (Linux 5.5+)"},
}

// The kernel counts /proc/diskstats in 512-byte sectors whatever the device's block size,
// and its times in milliseconds. Dividing by 1000, rather than multiplying by 0.001,
// keeps 700 ms at 0.7 s instead of 0.7000000000000001.
const (
	diskSectorBytes    = 512
	diskTicksPerSecond = 1000
)

type diskCollector struct {
	path   string
	filter deviceFilter
}

func newDisk(o Options) (Collector, error) {
	f, err := newDeviceFilter("collector.disk.device", o.DiskInclude, o.DiskExclude)
	if err != nil {
		return nil, err
	}
	return &diskCollector{path: filepath.Join(o.ProcFS, "diskstats"), filter: f}, nil
}

// Collect reads /proc/diskstats. Whole devices are told from partitions by name, through
// the default exclude pattern, as node_exporter does.
func (c *diskCollector) Collect(_ context.Context, s *metric.Sink) error {
	stats, err := readProcFile(c.path, parseDiskstats)
	if errors.Is(err, errEmptyFile) {
		// The kernel lists no line at all on a host without block devices.
		err = nil
	}
	for _, d := range stats {
		if !c.filter.keep(d.name) {
			continue
		}
		v := &d.values
		l := []metric.Label{{Key: "dev", Value: d.name}}
		s.Counter("reads_completed", float64(v[0]), l...)
		s.Counter("reads_merged", float64(v[1]), l...)
		s.Counter("read_bytes", float64(v[2])*diskSectorBytes, l...)
		s.Counter("read_time_seconds", float64(v[3])/diskTicksPerSecond, l...)
		s.Counter("writes_completed", float64(v[4]), l...)
		s.Counter("writes_merged", float64(v[5]), l...)
		s.Counter("written_bytes", float64(v[6])*diskSectorBytes, l...)
		s.Counter("write_time_seconds", float64(v[7])/diskTicksPerSecond, l...)
		s.Gauge("io_now", float64(v[8]), l...)
		s.Counter("io_time_seconds", float64(v[9])/diskTicksPerSecond, l...)
		s.Counter("io_time_weighted_seconds", float64(v[10])/diskTicksPerSecond, l...)
		if d.counters >= diskDiscardCounters {
			s.Counter("discards_completed", float64(v[11]), l...)
			s.Counter("discards_merged", float64(v[12]), l...)
			s.Counter("discarded_bytes", float64(v[13])*diskSectorBytes, l...)
			s.Counter("discards_time_seconds", float64(v[14])/diskTicksPerSecond, l...)
		}
		if d.counters >= diskFlushCounters {
			s.Counter("flushes_completed", float64(v[15]), l...)
			s.Counter("flushes_time_seconds", float64(v[16])/diskTicksPerSecond, l...)
		}
	}
	return err
}

// The counters a /proc/diskstats line has after major, minor and name: 11 before Linux
// 4.18, 15 with the discard counters, 17 with the flush counters of 5.5.
const (
	diskBaseCounters    = 11
	diskDiscardCounters = 15
	diskFlushCounters   = 17
)

// diskstat is one line of /proc/diskstats.
type diskstat struct {
	name string
	// counters is how many the line had, one of the counts above; values holds them in
	// the kernel's order, zero past counters.
	counters int
	values   [diskFlushCounters]uint64
}

// parseDiskstats parses /proc/diskstats: "major minor name" and 11, 15 or 17 counters
// (more, from a kernel newer than this code, are left out). procfs has a parser for it,
// but one that drops a line cut short without a word. It returns the lines parsed before
// the first bad one with the error.
func parseDiskstats(r io.Reader) ([]diskstat, error) {
	var stats []diskstat
	err := scanLines(r, func(line []byte) error {
		f := bytes.Fields(line)
		if len(f) < 3 {
			return fmt.Errorf("%d fields, want major, minor, name and counters", len(f))
		}
		d := diskstat{name: string(f[2]), counters: len(f) - 3}
		switch {
		case d.counters == diskBaseCounters, d.counters == diskDiscardCounters, d.counters >= diskFlushCounters:
		default:
			return fmt.Errorf("%s: %d counters, want %d, %d or %d", d.name, d.counters, diskBaseCounters, diskDiscardCounters, diskFlushCounters)
		}
		d.counters = min(d.counters, diskFlushCounters)
		for i := range d.counters {
			v, err := strconv.ParseUint(string(f[3+i]), 10, 64)
			if err != nil {
				// Numbered as in the kernel's Documentation/admin-guide/iostats.rst.
				return fmt.Errorf("%s: field %d %q: %w", d.name, i+1, f[3+i], errors.Unwrap(err))
			}
			d.values[i] = v
		}
		stats = append(stats, d)
		return nil
	})
	return stats, err
}

// deviceFilter keeps the device names an include/exclude pair lets through; the disk and
// net collectors share it.
type deviceFilter struct {
	include, exclude *regexp.Regexp
}

// newDeviceFilter compiles include and exclude; option is the flag's name without its
// -include/-exclude suffix, so that a bad pattern names the flag to fix.
func newDeviceFilter(option, include, exclude string) (deviceFilter, error) {
	var f deviceFilter
	var err error
	if f.include, err = compileFilterPattern(option+"-include", include); err != nil {
		return f, err
	}
	if f.exclude, err = compileFilterPattern(option+"-exclude", exclude); err != nil {
		return f, err
	}
	return f, nil
}

// keep reports whether name passes: matched by include (an empty include matches
// everything) and not by exclude.
func (f deviceFilter) keep(name string) bool {
	if f.include != nil && !f.include.MatchString(name) {
		return false
	}
	return f.exclude == nil || !f.exclude.MatchString(name)
}

// compileFilterPattern compiles expr as it is, adding no anchors: the defaults carry their
// own. An empty expr gives nil, which filters nothing.
func compileFilterPattern(option, expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", option, err)
	}
	return re, nil
}

package collectors

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/prometheus/procfs/blockdevice"
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
	{Path: "disk.<dev>.discards_bytes", Kind: metric.Counter, Unit: "bytes", Help: "bytes discarded (Linux 4.18+)"},
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
	fs     blockdevice.FS
	path   string
	filter deviceFilter
}

func newDisk(o Options) (Collector, error) {
	f, err := newDeviceFilter("collector.disk.device", o.DiskInclude, o.DiskExclude)
	if err != nil {
		return nil, err
	}
	fs, err := blockdevice.NewFS(o.ProcFS, o.SysFS)
	if err != nil {
		return nil, err
	}
	return &diskCollector{fs: fs, path: filepath.Join(o.ProcFS, "diskstats"), filter: f}, nil
}

// Collect reads /proc/diskstats. Whole devices are told from partitions by name, through
// the default exclude pattern, as node_exporter does.
func (c *diskCollector) Collect(_ context.Context, s *metric.Sink) error {
	stats, err := c.fs.ProcDiskstats()
	for _, d := range stats {
		if !c.filter.keep(d.DeviceName) {
			continue
		}
		l := []metric.Label{{Key: "dev", Value: d.DeviceName}}
		s.Counter("reads_completed", float64(d.ReadIOs), l...)
		s.Counter("reads_merged", float64(d.ReadMerges), l...)
		s.Counter("read_bytes", float64(d.ReadSectors)*diskSectorBytes, l...)
		s.Counter("read_time_seconds", float64(d.ReadTicks)/diskTicksPerSecond, l...)
		s.Counter("writes_completed", float64(d.WriteIOs), l...)
		s.Counter("writes_merged", float64(d.WriteMerges), l...)
		s.Counter("written_bytes", float64(d.WriteSectors)*diskSectorBytes, l...)
		s.Counter("write_time_seconds", float64(d.WriteTicks)/diskTicksPerSecond, l...)
		s.Gauge("io_now", float64(d.IOsInProgress), l...)
		s.Counter("io_time_seconds", float64(d.IOsTotalTicks)/diskTicksPerSecond, l...)
		s.Counter("io_time_weighted_seconds", float64(d.WeightedIOTicks)/diskTicksPerSecond, l...)
		// IoStatsCount counts the columns the line had, name and numbers included: 14 before
		// Linux 4.18, 18 with the discard columns, 20 with the flush columns of 5.5.
		if d.IoStatsCount >= 18 {
			s.Counter("discards_completed", float64(d.DiscardIOs), l...)
			s.Counter("discards_merged", float64(d.DiscardMerges), l...)
			s.Counter("discards_bytes", float64(d.DiscardSectors)*diskSectorBytes, l...)
			s.Counter("discards_time_seconds", float64(d.DiscardTicks)/diskTicksPerSecond, l...)
		}
		if d.IoStatsCount >= 20 {
			s.Counter("flushes_completed", float64(d.FlushRequestsCompleted), l...)
			s.Counter("flushes_time_seconds", float64(d.TimeSpentFlushing)/diskTicksPerSecond, l...)
		}
	}
	if err != nil {
		return fmt.Errorf("parsing %s: %w", c.path, err)
	}
	return nil
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

package agent

import (
	"context"
	"errors"
	"os"
	"runtime/metrics"

	"github.com/prometheus/procfs"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/collectors"
)

// selfCollector reports what picket itself costs the host: the same numbers an operator
// would read from ps and the Go runtime. It reads /proc/self of the /proc picket runs
// under, never --path.procfs: a container reading the host's procfs would not find itself
// there under its own pid.
type selfCollector struct {
	proc      procfs.Proc
	runtime   []metrics.Sample
	reporters []reporter
}

// reporter is a part of the agent with self-metrics of its own (an exporter, the spool).
type reporter interface {
	// Report adds the part's picket.* samples. It is called once per tick from the self
	// collector's goroutine, concurrently with the part's own work.
	Report(s *metric.Sink)
}

var (
	processLabels = []metric.Label{{Key: "component", Value: "process"}}
	goLabels      = []metric.Label{{Key: "component", Value: "go"}}
)

// runtimeMetrics maps runtime/metrics names to picket.go.<field>. Reading them does not
// stop the world, unlike runtime.ReadMemStats.
var runtimeMetrics = []struct {
	name, field string
	kind        metric.Kind
}{
	{"/sched/goroutines:goroutines", "goroutines", metric.Gauge},
	{"/gc/cycles/total:gc-cycles", "gc_cycles", metric.Counter},
	{"/cpu/classes/gc/total:cpu-seconds", "gc_cpu_seconds", metric.Counter},
	{"/memory/classes/heap/objects:bytes", "heap_objects_bytes", metric.Gauge},
	{"/memory/classes/total:bytes", "memory_bytes", metric.Gauge},
	{"/gc/heap/allocs:bytes", "heap_allocs_bytes", metric.Counter},
}

// selfSeries documents picket.*: the self collector's and the scheduler's series.
var selfSeries = []collectors.Series{
	{Path: "picket.collector.<collector>.duration_seconds", Kind: metric.Gauge, Unit: "seconds", Help: "how long the collector took this tick"},
	{Path: "picket.collector.<collector>.success", Kind: metric.Gauge, Help: "1 if the collector returned no error this tick"},
	{Path: "picket.collector.<collector>.up", Kind: metric.Gauge, Help: "0 if the collector's source does not exist on this host"},
	{Path: "picket.collector.<collector>.skipped", Kind: metric.Counter, Help: "ticks skipped because the collector's previous call had not returned"},
	{Path: "picket.collector.<collector>.timeouts", Kind: metric.Counter, Help: "calls that missed the tick's deadline"},
	{Path: "picket.scheduler.ticks", Kind: metric.Counter, Help: "ticks run"},
	{Path: "picket.scheduler.ticks_skipped", Kind: metric.Counter, Help: "ticks left out because the one before overran"},
	{Path: "picket.scheduler.write_errors", Kind: metric.Counter, Help: "batches the output failed to take"},
	{Path: "picket.scheduler.nonfinite_dropped", Kind: metric.Counter, Help: "NaN or infinite samples left out (no wire format carries them)"},
	{Path: "picket.<exporter>.sent", Kind: metric.Counter, Help: "datapoints written to the endpoint, replays included"},
	{Path: "picket.<exporter>.acked", Kind: metric.Counter, Help: "datapoints the endpoint provably received and read (graphite: seen in TCP; influx: answered 2xx)"},
	{Path: "picket.<exporter>.replayed", Kind: metric.Counter, Help: "datapoints sent from the backlog or the replay window"},
	{Path: "picket.<exporter>.dropped_spool_full", Kind: metric.Counter, Help: "datapoints dropped undelivered because the spool reached --spool.max-bytes"},
	{Path: "picket.<exporter>.dropped_expired", Kind: metric.Counter, Help: "datapoints dropped undelivered because they grew older than --spool.max-age"},
	{Path: "picket.<exporter>.dropped_corrupt", Kind: metric.Counter, Help: "datapoints dropped because their spool record was damaged on disk"},
	{Path: "picket.<exporter>.dropped_nonfinite", Kind: metric.Counter, Help: "NaN or infinite datapoints the wire format cannot carry"},
	{Path: "picket.influx.dropped_rejected", Kind: metric.Counter, Help: "datapoints InfluxDB refused (a field type conflict, a partial write) or line protocol cannot carry; the rest of their batch is written"},
	{Path: "picket.<exporter>.backlog_datapoints", Kind: metric.Gauge, Help: "datapoints in the spool not yet confirmed delivered"},
	{Path: "picket.<exporter>.backlog_age_seconds", Kind: metric.Gauge, Unit: "seconds", Help: "age of the oldest datapoint not yet confirmed delivered (0 when none)"},
	{Path: "picket.<exporter>.reconnects", Kind: metric.Counter, Help: "connections (graphite) or requests (influx) that failed and were retried"},
	{Path: "picket.<exporter>.endpoint", Kind: metric.Gauge, Help: "index of the endpoint in use in the configured list (0 the primary), -1 when none"},
	{Path: "picket.spool.bytes", Kind: metric.Gauge, Unit: "bytes", Help: "size of the spool on disk"},
	{Path: "picket.spool.segments", Kind: metric.Gauge, Help: "segment files in the spool"},
	{Path: "picket.spool.corrupt_bytes", Kind: metric.Counter, Unit: "bytes", Help: "spool bytes found unreadable since picket started (a damaged record header: its datapoints cannot be counted, so the bytes are)"},
	{Path: "picket.process.rss_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "resident memory of picket"},
	{Path: "picket.process.cpu_seconds", Kind: metric.Counter, Unit: "seconds", Help: "CPU time picket used, user and system"},
	{Path: "picket.process.open_fds", Kind: metric.Gauge, Help: "file descriptors picket holds"},
	{Path: "picket.process.start_time", Kind: metric.Gauge, Unit: "seconds", Help: "when picket started, unix time"},
	{Path: "picket.go.goroutines", Kind: metric.Gauge, Help: "live goroutines"},
	{Path: "picket.go.gc_cycles", Kind: metric.Counter, Help: "completed GC cycles"},
	{Path: "picket.go.gc_cpu_seconds", Kind: metric.Counter, Unit: "seconds", Help: "CPU time spent in GC (estimate by the Go runtime)"},
	{Path: "picket.go.heap_objects_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "heap memory in live and not yet swept objects"},
	{Path: "picket.go.memory_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "all memory the Go runtime has mapped"},
	{Path: "picket.go.heap_allocs_bytes", Kind: metric.Counter, Unit: "bytes", Help: "bytes allocated on the heap since start"},
}

func newSelfCollector(reporters []reporter) *selfCollector {
	c := &selfCollector{runtime: make([]metrics.Sample, len(runtimeMetrics)), reporters: reporters}
	for i, m := range runtimeMetrics {
		c.runtime[i].Name = m.name
	}
	return c
}

// Collect adds picket.process.* and picket.go.*.
func (c *selfCollector) Collect(_ context.Context, s *metric.Sink) error {
	for _, r := range c.reporters {
		r.Report(s)
	}
	metrics.Read(c.runtime)
	for i, m := range runtimeMetrics {
		var v float64
		switch c.runtime[i].Value.Kind() {
		case metrics.KindUint64:
			v = float64(c.runtime[i].Value.Uint64())
		case metrics.KindFloat64:
			v = c.runtime[i].Value.Float64()
		default:
			continue
		}
		if m.kind == metric.Counter {
			s.Counter(m.field, v, goLabels...)
		} else {
			s.Gauge(m.field, v, goLabels...)
		}
	}

	if c.proc.PID == 0 {
		p, err := procfs.Self()
		if err != nil {
			return err
		}
		c.proc = p
	}
	stat, err := c.proc.Stat()
	if err != nil {
		return err
	}
	s.Gauge("rss_bytes", float64(stat.ResidentMemory()), processLabels...)
	s.Counter("cpu_seconds", stat.CPUTime(), processLabels...)
	var errs []error
	if start, err := stat.StartTime(); err == nil {
		s.Gauge("start_time", start, processLabels...)
	} else {
		errs = append(errs, err)
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.Gauge("open_fds", float64(len(fds)), processLabels...)
	} else {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

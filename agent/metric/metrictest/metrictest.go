// Package metrictest provides a realistic batch of samples, and the loops that measure an
// encoder over it, for the exporters' tests and benchmarks, as net/http/httptest does for
// HTTP handlers. Every encoder is measured over the same batch, so their numbers compare.
package metrictest

import (
	"strconv"
	"testing"

	"github.com/picket-agent/picket/agent/metric"
)

// MixedBatch returns 1,000 samples shaped like one tick of a 16-CPU host: per-CPU times,
// per-interface counters (a VLAN among them), memory gauges without labels, filesystems
// with slashes in their mount points, and per-cgroup OOM and run-queue counters.
func MixedBatch() []metric.Sample {
	var out []metric.Sample
	add := func(collector, field string, v float64, labels ...metric.Label) {
		out = append(out, metric.Sample{Collector: collector, Labels: labels, Field: field, Value: v, Kind: metric.Counter})
	}
	modes := []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"}
	ifaces := []string{"lo", "eth0", "eth0.100", "eth1", "docker0", "veth1a2b3c4d"}
	netFields := []string{"rx_bytes", "rx_packets", "rx_errs", "rx_drop", "tx_bytes", "tx_packets", "tx_errs", "tx_drop"}
	memFields := []string{"mem_total", "mem_free", "mem_available", "buffers", "cached", "active_anon", "inactive_file", "swap_total"}
	mounts := []string{"/", "/boot", "/var/lib/docker", "/home"}
	fsFields := []string{"size_bytes", "free_bytes", "avail_bytes", "files", "files_free"}
	for len(out) < 1000 {
		for cpu := 0; cpu < 16; cpu++ {
			l := []metric.Label{{Key: "cpu", Value: strconv.Itoa(cpu)}}
			for i, m := range modes {
				add("cpu", m, float64(cpu*1000+i)*1.25, l...)
			}
		}
		for i, ifc := range ifaces {
			l := []metric.Label{{Key: "iface", Value: ifc}}
			for j, f := range netFields {
				add("net", f, float64(i*1e9+j*12345), l...)
			}
		}
		for i, f := range memFields {
			add("memory", f, float64(i)*4096*1024*1024)
		}
		for i, m := range mounts {
			l := []metric.Label{{Key: "mount", Value: m}}
			for j, f := range fsFields {
				add("fs", f, float64(i*1e12+j), l...)
			}
		}
		add("load", "load1", 0.42)
		add("load", "load5", 1.07)
		for i := 0; i < 20; i++ {
			l := []metric.Label{{Key: "cgroup", Value: "/system.slice/service-" + strconv.Itoa(i) + ".service", Named: true}}
			add("oom", "kills", float64(i), l...)
			add("runqlat", "sum_us", 1.5e9+float64(i)/3, l...)
		}
	}
	return out[:1000]
}

// AppendFunc appends one sample to dst, as an encoder does; what the encoder returns
// besides (a bool, an error) is the caller's to check or to drop.
type AppendFunc func(dst []byte, s *metric.Sample) []byte

// Benchmark encodes MixedBatch into one reused buffer per iteration and reports
// datapoints/s, the figure the budget of a few million per second per core is stated in.
func Benchmark(b *testing.B, appendSample AppendFunc) {
	b.Helper()
	samples := MixedBatch()
	buf := make([]byte, 0, 128*len(samples))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		buf = buf[:0]
		for i := range samples {
			buf = appendSample(buf, &samples[i])
		}
		n += len(samples)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "datapoints/s")
}

// AllocsPerBatch returns the average number of allocations of encoding all of MixedBatch
// into a buffer that is already big enough: an encoder meets its budget when it is 0. It
// counts the whole process's allocations, so the test calling it must not run in parallel.
func AllocsPerBatch(appendSample AppendFunc) float64 {
	samples := MixedBatch()
	buf := make([]byte, 0, 1<<20)
	return testing.AllocsPerRun(10, func() {
		buf = buf[:0]
		for i := range samples {
			buf = appendSample(buf, &samples[i])
		}
	})
}

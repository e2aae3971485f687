package influx

import (
	"strconv"
	"testing"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/picket-agent/picket/agent/metric"
)

// mixedBatch returns 1,000 samples shaped like one tick of a 16-CPU host: per-CPU times,
// per-interface counters (a VLAN among them), memory gauges without labels, filesystems
// with slashes in their mount points, and per-cgroup OOM and run-queue counters. It is the
// batch of the graphite benchmarks, so the numbers compare.
func mixedBatch() []metric.Sample {
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

func BenchmarkInflux(b *testing.B) {
	samples := mixedBatch()
	buf := make([]byte, 0, 128*len(samples))
	var e Encoder
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		buf = buf[:0]
		for i := range samples {
			buf, _ = e.Append(buf, "web1", &samples[i], tick)
		}
		n += len(samples)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "datapoints/s")
}

// BenchmarkInfluxChecked encodes the batch of BenchmarkInflux through lineprotocol alone,
// as Append does for samples with names that need escaping.
func BenchmarkInfluxChecked(b *testing.B) {
	samples := mixedBatch()
	buf := make([]byte, 0, 128*len(samples))
	var e Encoder
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		buf = buf[:0]
		for i := range samples {
			s := &samples[i]
			e.order = sortLabels(e.order[:0], s.Labels)
			fv, _ := lineprotocol.FloatValue(s.Value)
			buf, _ = e.appendChecked(buf, "web1", s, fv, tick)
		}
		n += len(samples)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "datapoints/s")
}

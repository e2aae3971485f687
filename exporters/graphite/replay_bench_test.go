package graphite

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingSink reads as fast as it can and counts lines: the cheapest carbon-compatible
// peer, so the benchmark measures picket, not the receiver.
func countingSink(b *testing.B) (addr string, lines *atomic.Int64) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	lines = &atomic.Int64{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					n, err := c.Read(buf)
					lines.Add(int64(bytes.Count(buf[:n], []byte{'\n'})))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String(), lines
}

// BenchmarkReplay sends a backlog of spooled datapoints (ticks of 2,000 series), unpaced,
// to a local sink, until every one is confirmed. peak-heap-MiB is the largest live heap
// seen while replaying and peak-RSS-MiB the process's peak resident size (the benchmark's
// own included): neither may grow with the backlog, 1 or 4 million datapoints.
func BenchmarkReplay(b *testing.B) {
	for _, ticks := range []int{500, 2000} {
		b.Run(fmt.Sprintf("datapoints=%dM", ticks*2000/1e6), func(b *testing.B) { benchmarkReplay(b, ticks) })
	}
}

func benchmarkReplay(b *testing.B, ticks int) {
	const series = 2000
	addr, _ := countingSink(b)
	for b.Loop() {
		b.StopTimer()
		e, sp := testExporter(b, addr)
		// One tick at a time: the benchmark must not hold the backlog in memory itself.
		tick := batches(1, series)[0]
		for i := range ticks {
			tick.Time = time.Unix(1700000000+int64(i)*10, 0)
			if err := sp.Append(tick); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var peak atomic.Uint64
		stopSampling := make(chan struct{})
		go func() {
			s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
			for {
				metrics.Read(s)
				if v := s[0].Value.Uint64(); v > peak.Load() {
					peak.Store(v)
				}
				select {
				case <-stopSampling:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		}()
		resetPeakRSS(b)
		b.StartTimer()
		stop := run(e)
		for e.acked.Load() < uint64(ticks*series) {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		stop()
		close(stopSampling)
		b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(peakRSS(b))/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(float64(e.reconnects.Load()), "reconnects")
		b.StartTimer()
	}
	b.ReportMetric(float64(ticks*series)*float64(b.N)/b.Elapsed().Seconds(), "datapoints/s")
}

// resetPeakRSS resets the process's peak resident set size (VmHWM) to its current size.
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("resetting the peak RSS: %v", err)
	}
}

// peakRSS returns the process's peak resident set size (VmHWM) in bytes.
func peakRSS(b *testing.B) uint64 {
	s, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(s)) {
		if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(kb), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmHWM in /proc/self/status: %v", err)
			}
			return n << 10
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}

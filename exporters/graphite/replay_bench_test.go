package graphite

import (
	"bytes"
	"net"
	"runtime"
	"runtime/metrics"
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

// BenchmarkReplay sends a backlog of 1,000,000 spooled datapoints (500 ticks of 2,000
// series), unpaced, to a local sink, until every one is confirmed. peak-heap-MiB is the
// largest live heap seen while replaying: it must not grow with the backlog.
func BenchmarkReplay(b *testing.B) {
	const ticks, series = 500, 2000
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
		b.StartTimer()
		stop := run(e)
		for e.acked.Load() < ticks*series {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		stop()
		close(stopSampling)
		b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(e.reconnects.Load()), "reconnects")
		b.StartTimer()
	}
	b.ReportMetric(float64(ticks*series)*float64(b.N)/b.Elapsed().Seconds(), "datapoints/s")
}

package graphite

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/exporters/spool"
)

// BenchmarkSteadyTick is the exporter's steady state at ~2,000 series (issue 3,
// "Performance"): each iteration is one tick, appended to the spool (fdatasync included)
// and sent, and ends when the exporter has confirmed it, read by a local sink. It reports
// per tick:
//
//   - cpu-ms/tick: the process's user+system CPU (getrusage), so everything picket does
//     for a tick counts: the spool write and read, encoding, the socket, the polling for a
//     quiet point, the garbage collector. The sink runs in the same process and counts too;
//     the send baseline shows its share.
//   - disk-B/tick: what the spool grew by, the record as written.
//   - io-write-B/tick: what the process sent to the block layer (write_bytes of
//     /proc/self/io): whole pages, so the partly filled last page of the segment, written
//     again by the next tick's fdatasync, and the cursor file count here.
//
// Baselines in the same run: encode is the tick's Graphite lines alone; append is the spool
// append alone (its encoder, write and fdatasync); send is the lines written to the same
// sink over TCP until it has read them all, without the spool and without confirmation.
// ns/op of tick is mostly waiting for a quiet point (polled every 10 ms; it can take up to
// a keepalive interval, 1 s), which costs wall time, not CPU. The wall clock of this VM is
// noisy; the CPU numbers much less: -benchtime 50x -count 6 gives stable medians.
func BenchmarkSteadyTick(b *testing.B) {
	const series = 2000
	tick := batches(1, series)[0]
	next := func(i int) *metric.Batch {
		tick.Time = time.Unix(1700000000+int64(i)*10, 0)
		return tick
	}
	addr, lines := countingSink(b)

	b.Run("baseline=encode", func(b *testing.B) {
		e, _ := testExporter(b, addr)
		buf, _ := e.encode(nil, next(0))
		var u usage
		u.start()
		for b.Loop() {
			buf, _ = e.encode(buf[:0], tick)
		}
		u.report(b)
	})

	b.Run("baseline=append", func(b *testing.B) {
		_, sp := testExporter(b, addr)
		var u usage
		u.start()
		u.spool(sp)
		i := 0
		for b.Loop() {
			if err := sp.Append(next(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		u.report(b)
	})

	b.Run("baseline=send", func(b *testing.B) {
		e, _ := testExporter(b, addr)
		c, err := (&net.Dialer{}).Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		var buf []byte
		var u usage
		u.start()
		i := 0
		for b.Loop() {
			want := lines.Load() + series
			buf, _ = e.encode(buf[:0], next(i))
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
			waitUntil(func() bool { return lines.Load() >= want })
			i++
		}
		u.report(b)
	})

	b.Run("tick", func(b *testing.B) {
		e, sp := testExporter(b, addr)
		stop := run(e)
		defer stop()
		// The first tick connects and fills the caches; it is not measured.
		if err := sp.Append(next(0)); err != nil {
			b.Fatal(err)
		}
		waitUntil(func() bool { return e.acked.Load() >= series })
		var u usage
		u.start()
		u.spool(sp)
		i := 1
		for b.Loop() {
			if err := sp.Append(next(i)); err != nil {
				b.Fatal(err)
			}
			i++
			waitUntil(func() bool { return e.acked.Load() >= uint64(i*series) })
		}
		u.report(b)
		if r := e.reconnects.Load(); r != 0 {
			b.Errorf("%d reconnects: the steady state was not steady", r)
		}
	})
}

// waitUntil polls cond with a backoff up to 20 ms, so that the benchmark's own waiting
// costs little of the CPU it measures (about 60 wake-ups a second).
func waitUntil(cond func() bool) {
	for d := 100 * time.Microsecond; !cond(); d = min(2*d, 20*time.Millisecond) {
		time.Sleep(d)
	}
}

// usage measures what the process spends while a benchmark loop runs.
type usage struct {
	cpu     time.Duration
	ioWrite int64
	sp      *spool.Spool
	bytes   int64
}

func (u *usage) start() {
	u.cpu, u.ioWrite = cpuTime(), ioWriteBytes()
}

// spool makes report include what sp grew by.
func (u *usage) spool(sp *spool.Spool) {
	u.sp, u.bytes = sp, sp.Stats().Bytes
}

func (u *usage) report(b *testing.B) {
	n := float64(b.N)
	b.ReportMetric(float64(cpuTime()-u.cpu)/float64(time.Millisecond)/n, "cpu-ms/tick")
	if u.sp != nil {
		b.ReportMetric(float64(u.sp.Stats().Bytes-u.bytes)/n, "disk-B/tick")
		if u.ioWrite >= 0 {
			b.ReportMetric(float64(ioWriteBytes()-u.ioWrite)/n, "io-write-B/tick")
		}
	}
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ioWriteBytes is write_bytes from /proc/self/io, -1 where the kernel does not keep it.
func ioWriteBytes() int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("write_bytes: ")); ok {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/scheduler"
)

// fixtureRoot is the host snapshot the end-to-end tests read (proc/ and sys/).
const fixtureRoot = "cmd/picket/testdata/host"

// newTickScheduler builds the scheduler `picket run` would, on the real /proc (root "") or
// on a fixture root. fs is left out on the fixture: its statfs would reach the real mounts.
func newTickScheduler(tb testing.TB, root string) *scheduler.Scheduler {
	tb.Helper()
	args := []string{"once", "--config", writeConfig(tb, "")}
	if root != "" {
		args = append(args, "--path.procfs", root+"/proc", "--path.sysfs", root+"/sys", "--no-collector.fs")
	}
	cli, _, err := parse(args, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := cli.newScheduler(&Env{Ctx: context.Background(), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTick is one full default tick: every collector, the scheduler's bookkeeping and
// the self-metrics. cpu-ms/tick is the process's user+system CPU (GC included) per tick.
func BenchmarkTick(b *testing.B) {
	for _, bc := range []struct{ name, root string }{{"host", ""}, {"fixture", fixtureRoot}} {
		b.Run(bc.name, func(b *testing.B) {
			s := newTickScheduler(b, bc.root)
			ctx := context.Background()
			t := time.Unix(1700000000, 0)
			b.ReportAllocs()
			start := cpuTime()
			n := 0
			for b.Loop() {
				s.Tick(ctx, t.Add(time.Duration(n)*10*time.Second))
				n++
			}
			b.ReportMetric(float64(cpuTime()-start)/1e6/float64(n), "cpu-ms/tick")
		})
	}
}

// TestTickAllocationsDoNotGrow: a long-running agent allocates the same per tick at tick
// 20 as at tick 400 — no state that grows with the ticks already run.
func TestTickAllocationsDoNotGrow(t *testing.T) {
	s := newTickScheduler(t, fixtureRoot)
	ctx := context.Background()
	n := 0
	tick := func() {
		s.Tick(ctx, time.Unix(1700000000+int64(n)*10, 0))
		n++
	}
	early := testing.AllocsPerRun(20, tick)
	for range 400 {
		tick()
	}
	late := testing.AllocsPerRun(20, tick)
	if late > early*1.01+2 {
		t.Errorf("allocations per tick grew from %.0f to %.0f over 400 ticks", early, late)
	}
	if early == 0 {
		t.Error("no allocations measured: the tick did nothing")
	}
}

// nodeExporterArgs make node_exporter read what picket's default collectors read, all
// fields included, so that one scrape and one tick do the same work.
var nodeExporterArgs = []string{
	"--collector.disable-defaults",
	"--collector.cpu", "--collector.loadavg", "--collector.meminfo", "--collector.vmstat",
	"--collector.stat", "--collector.netdev", "--collector.netstat", "--collector.sockstat",
	"--collector.diskstats", "--collector.filesystem", "--collector.pressure",
	"--collector.filefd", "--collector.conntrack",
	"--collector.vmstat.fields=.*", "--collector.netstat.fields=.*",
}

// processCPU is a process's user+system CPU time from /proc/<pid>/stat.
func processCPU(tb testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100
}

// BenchmarkNodeExporterScrape is the baseline for BenchmarkTick/host: Debian's
// node_exporter, on this host, scraped over loopback. cpu-ms/scrape is node_exporter's own
// CPU per scrape, read from /proc; run both in one `make bench` and compare medians.
func BenchmarkNodeExporterScrape(b *testing.B) {
	bin, err := exec.LookPath("prometheus-node-exporter")
	if err != nil {
		if os.Getenv("PICKET_REQUIRE_PRIVILEGED") != "" {
			b.Fatal("prometheus-node-exporter not installed (make bench installs it)")
		}
		b.Skip("prometheus-node-exporter not installed (make bench installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, append([]string{"--web.listen-address=" + addr}, nodeExporterArgs...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	url := "http://" + addr + "/metrics"
	scrape := func() {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("node_exporter did not start listening:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	scrape() // first scrape warms node_exporter's caches, as a tick's first run does
	start := processCPU(b, cmd.Process.Pid)
	n := 0
	for b.Loop() {
		scrape()
		n++
	}
	b.ReportMetric(float64(processCPU(b, cmd.Process.Pid)-start)/1e6/float64(n), "cpu-ms/scrape")
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// binary is picket, built once for all tests the way `make build` builds it.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "picket-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "picket")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	build := exec.Command(goTool, "build", "-trimpath", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building picket: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// emptyConfig returns an empty config file, so the machine's /etc/picket does not leak
// into a test.
func emptyConfig(t *testing.T) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// picket runs the binary with an empty config file and returns stdout; a non-zero exit
// fails the test.
func picket(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append(args, "--config", emptyConfig(t))...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("picket %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// volatileLine matches the agent's own series whose values differ each run: collector
// durations and the process's and Go runtime's numbers. The rest of picket.* (success, up,
// the scheduler's counters) stays in the golden files, so a collector that fails or finds
// nothing on the fixture shows there.
var volatileLine = regexp.MustCompile(`^(hosts\.fixture\.)?picket[.,;].*(duration_seconds|\bprocess\b|\bgo\b)`)

// normalize drops the volatile picket.* lines and replaces the timestamp column with <ts>.
func normalize(out, format string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if volatileLine.MatchString(line) {
			continue
		}
		if format != "table" {
			if i := strings.LastIndexByte(line, ' '); i >= 0 {
				line = line[:i] + " <ts>"
			}
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestOnceFixture: `picket once` over a fixture root, in every format, against golden files.
func TestOnceFixture(t *testing.T) {
	for _, format := range []string{"graphite", "graphite-tagged", "influx", "table"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			out := picket(t, "once", "--format", format, "--hostname", "fixture",
				"--path.procfs", "testdata/host/proc", "--path.sysfs", "testdata/host/sys",
				"--no-collector.fs", "--collector.processes")
			got := normalize(out, format)
			golden := filepath.Join("testdata", "once."+format+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s; run go test -update and review the diff\n--- got\n%s", golden, got)
			}
		})
	}
}

// graphiteLine is a valid plaintext line: sanitized nodes, a number, a unix time.
var graphiteLine = regexp.MustCompile(`^hosts\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+ -?[0-9][0-9.e+-]* [0-9]+$`)

// TestOnceHost: `picket once` against this machine's real /proc.
func TestOnceHost(t *testing.T) {
	out := picket(t, "once", "--hostname", "host")
	stamps := map[string]bool{}
	names := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !graphiteLine.MatchString(line) {
			t.Errorf("not a valid Graphite line: %q", line)
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Errorf("%q: %v", line, err)
		}
		names[f[0]] = v
		stamps[f[2]] = true
	}
	if len(stamps) != 1 {
		t.Errorf("one collection carries %d timestamps, want 1", len(stamps))
	}
	for ts := range stamps {
		if n, _ := strconv.ParseInt(ts, 10, 64); n%10 != 0 {
			t.Errorf("timestamp %d is not aligned to the 10s interval", n)
		}
	}

	// Kinds come from the table format: no counter may be negative.
	for _, line := range strings.Split(picket(t, "once", "--format", "table"), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) == 3 && f[1] == "counter" && strings.HasPrefix(f[2], "-") {
			t.Errorf("negative counter: %s", line)
		}
	}

	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	cpus := regexp.MustCompile(`(?m)^cpu([0-9]+) `).FindAllStringSubmatch(string(stat), -1)
	if len(cpus) == 0 {
		t.Fatal("no cpuN lines in /proc/stat")
	}
	modes := []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"}
	for _, cpu := range append([][]string{{"", "total"}}, cpus...) {
		for _, mode := range modes {
			if _, ok := names["hosts.host.cpu."+cpu[1]+"."+mode]; !ok {
				t.Errorf("cpu.%s.%s missing", cpu[1], mode)
			}
		}
	}
	for _, want := range []string{"hosts.host.load.load1", "hosts.host.memory.mem_total", "hosts.host.stat.context_switches", "hosts.host.picket.process.rss_bytes", "hosts.host.picket.collector.cpu.success"} {
		if _, ok := names[want]; !ok {
			t.Errorf("%s missing", want)
		}
	}
	if names["hosts.host.picket.collector.cpu.success"] != 1 {
		t.Error("the cpu collector did not succeed on this host")
	}
}

// TestRunTicks: `picket run --interval 1s` writes a tick a second, every line of a tick with
// the tick's timestamp, timestamps aligned and strictly increasing; SIGTERM ends it with 0.
func TestRunTicks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "run", "--interval", "1s", "--config", emptyConfig(t))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ticks []int64
	perTick := map[int64]int{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && len(ticks) < 4 {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			t.Fatalf("bad line %q", sc.Text())
		}
		ts, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("bad timestamp in %q", sc.Text())
		}
		if len(ticks) == 0 || ticks[len(ticks)-1] != ts {
			ticks = append(ticks, ts)
		}
		perTick[ts]++
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Keep reading so a write in flight cannot block the exit.
		for sc.Scan() {
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v (want exit 0)\nstderr:\n%s", err, stderr.String())
	}
	if len(ticks) < 4 {
		t.Fatalf("saw %d ticks: %v\nstderr:\n%s", len(ticks), ticks, stderr.String())
	}
	for i := 1; i < len(ticks); i++ {
		if ticks[i] <= ticks[i-1] {
			t.Errorf("tick %d at %d does not follow %d: ticks %v", i, ticks[i], ticks[i-1], ticks)
		}
	}
	// A tick's lines come out together, in one write: no timestamp may reappear later.
	if len(perTick) != len(ticks) {
		t.Errorf("a timestamp reappeared after the next tick started: %v", ticks)
	}
}

// TestShutdownWithStuckStdout: a reader that stopped reading blocks the tick's write, and
// SIGTERM still ends picket, after --shutdown-timeout, with a non-zero status saying why.
func TestShutdownWithStuckStdout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The smallest pipe: the first batch fills it and the write blocks.
	size, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, binary, "run", "--interval", "1s", "--shutdown-timeout", "1s", "--config", emptyConfig(t))
	cmd.Stdout = w
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for {
		n, err := unix.IoctlGetInt(int(r.Fd()), unix.TIOCINQ)
		if err != nil {
			t.Fatal(err)
		}
		if n >= size {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the pipe never filled: %d of %d bytes", n, size)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1\nstderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "did not finish within --shutdown-timeout 1s") {
		t.Errorf("stderr does not say why:\n%s", stderr.String())
	}
}

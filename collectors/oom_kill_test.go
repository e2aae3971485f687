package collectors

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/agent/testenv"
	"github.com/picket-agent/picket/bpf/oom"
	"github.com/picket-agent/picket/collectors/cgroup"
)

// The test binary, run again as a child, is a process that allocates oomChildBytes bytes
// and touches every page, in oomChildThreads threads at once (TestOOMChild).
const (
	oomChildBytes   = "PICKET_OOM_CHILD_BYTES"
	oomChildThreads = "PICKET_OOM_CHILD_THREADS"
)

// TestOOMChild is not a test: it is the process TestOOMKill has killed. It waits for a byte
// on stdin (sent once it sits in the test cgroup), then allocates until the kernel kills it:
// in one thread, or in many at once, each on an OS thread of its own, so that several
// threads are in the kernel's OOM path together.
func TestOOMChild(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(oomChildBytes))
	if err != nil {
		return
	}
	threads, err := strconv.Atoi(os.Getenv(oomChildThreads))
	if err != nil || threads < 1 {
		threads = 1
	}
	if _, err := os.Stdin.Read(make([]byte, 1)); err != nil {
		os.Exit(2)
	}
	var wg sync.WaitGroup
	for range threads {
		wg.Go(func() {
			runtime.LockOSThread()
			b := make([]byte, n/threads)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
		})
	}
	wg.Wait()
	fmt.Println("survived")
	os.Exit(3)
}

// syncBuffer is a log destination written by the collector's goroutine, read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// kills returns the "OOM kill" log lines written so far, decoded.
func (b *syncBuffer) kills(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m["msg"] == "OOM kill" {
			out = append(out, m)
		}
	}
	return out
}

// memcg is a memory cgroup made for a test, removed when the test ends.
type memcg struct {
	dir  string // in the hierarchy's mount
	path string // as picket names it: below the hierarchy's root
	v1   bool
}

// newMemcg makes the cgroup name below parent (a directory in hierarchy h), with a memory
// limit if limit > 0 (swap left no room, so the limit OOM-kills rather than swaps).
//
// The test's cgroups sit at the root of the hierarchy, not below the cgroup the test runs
// in: on v2 a cgroup with processes cannot hand the memory controller to its children
// (no internal processes), and the root is exempt. On v2 the parent enables the memory
// controller for its children (cgroup.subtree_control), so each test cgroup is a memory
// cgroup of its own.
func newMemcg(t *testing.T, h cgroup.Hierarchy, parent, name string, limit int64) memcg {
	t.Helper()
	if !h.V1 {
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0o644); err != nil {
			t.Fatalf("enabling the memory controller below %s: %v", parent, err)
		}
	}
	dir := testenv.Cgroup(t, parent, name)
	rel, err := filepath.Rel(h.Dir, dir)
	if err != nil {
		t.Fatal(err)
	}
	m := memcg{dir: dir, path: "/" + filepath.ToSlash(rel), v1: h.V1}
	if limit <= 0 {
		return m
	}
	v := strconv.FormatInt(limit, 10)
	files := []string{"memory.max", "memory.swap.max"}
	if h.V1 {
		files = []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"}
	}
	if err := os.WriteFile(filepath.Join(m.dir, files[0]), []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
	// Absent without swap accounting; then there is nothing to swap to anyway.
	swap := v
	if !h.V1 {
		swap = "0"
	}
	if err := os.WriteFile(filepath.Join(m.dir, files[1]), []byte(swap), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return m
}

// ownKills is the kernel's own count of OOM kills in m: oom_kill in memory.oom_control on
// v1, in memory.events on v2.
func (m memcg) ownKills(t *testing.T) uint64 {
	t.Helper()
	file := "memory.events"
	if m.v1 {
		file = "memory.oom_control"
	}
	return keyedValue(t, filepath.Join(m.dir, file), "oom_kill")
}

// keyedValue reads the value of key in a file of "key value" lines.
func keyedValue(t *testing.T, name, key string) uint64 {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			return n
		}
	}
	t.Fatalf("%s: no %s", name, key)
	return 0
}

// oomChild runs this test binary as a process that allocates 300 MiB inside m in threads
// threads, and returns its pid once the kernel killed it.
func oomChild(t *testing.T, m memcg, threads int) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestOOMChild$")
	cmd.Env = append(os.Environ(), oomChildBytes+"="+strconv.Itoa(300<<20), oomChildThreads+"="+strconv.Itoa(threads),
		"GOMAXPROCS="+strconv.Itoa(max(threads, 2)))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(m.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("moving %d into %s: %v", pid, m.dir, err)
	}
	if _, err := stdin.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child: %v, want killed\n%s", err, out.String())
	}
	if st, ok := exit.Sys().(syscall.WaitStatus); !ok || !st.Signaled() || st.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL from the OOM killer\n%s", err, out.String())
	}
	return pid
}

// oomCounts reads oom.kills, oom.cgroup.<path>.kills and the kills of cgroups not named
// (oom.cgroup./....kills).
func oomCounts(t *testing.T, c *oomCollector, path string) (total, inCgroup, unnamed uint64) {
	t.Helper()
	s := metric.NewSink("oom")
	if err := c.Collect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	for _, smp := range s.Samples() {
		switch {
		case len(smp.Labels) == 0:
			total = uint64(smp.Value)
		case smp.Labels[0].Value == path:
			inCgroup = uint64(smp.Value)
		case smp.Labels[0].Value == "/...":
			unnamed = uint64(smp.Value)
		}
	}
	return total, inCgroup, unnamed
}

// oomReading is what the test compares before and after a kill: the kernel's own counts
// (vmstat oom_kill for the host, the victim's cgroup's oom_kill) and each collector's.
type oomReading struct {
	vmstat, memcg          uint64
	total, cgroup, unnamed []uint64 // per collector
	runs                   float64  // mark_victim's run count (BPF statistics)
}

// read takes a reading. The host's counts move with any OOM kill on the host, the
// test's or another's: vmstat is read before and after the collectors, and the reading
// taken again until both agree, so that it is one moment's.
func (r *oomRun) read(t *testing.T, m memcg) oomReading {
	t.Helper()
	for {
		var o oomReading
		o.vmstat = keyedValue(t, "/proc/vmstat", "oom_kill")
		o.memcg = m.ownKills(t)
		for _, c := range r.cols {
			total, cg, unnamed := oomCounts(t, c.c, m.path)
			o.total, o.cgroup, o.unnamed = append(o.total, total), append(o.cgroup, cg), append(o.unnamed, unnamed)
		}
		o.runs = r.runCount(t)
		if keyedValue(t, "/proc/vmstat", "oom_kill") == o.vmstat {
			return o
		}
	}
}

// oomRun is the collectors under test: the eBPF probe's and the kernel log reader's.
type oomRun struct {
	cols []oomCol
}

type oomCol struct {
	name string
	c    *oomCollector
	log  *syncBuffer
}

func (r *oomRun) runCount(t *testing.T) float64 {
	t.Helper()
	self := metric.NewSink("picket")
	r.cols[0].c.Report(self)
	for _, smp := range self.Samples() {
		if strings.Join(Nodes(&smp), ".") == "picket.bpf.oom.mark_victim.run_count" {
			return smp.Value
		}
	}
	return 0
}

// TestOOMKill (root): real OOM kills in a memory cgroup limited to 50 MiB, by the eBPF
// probe and, side by side, by the kernel log reader that stands in for it on kernels before
// 6.8: a process allocating in one thread, one in an unlimited child of the limited cgroup
// (the log names the limited one as the cgroup at its limit), and rounds of a process
// allocating in 16 threads at once, whose threads the kernel marks as victims one by one
// (mark_victim fires up to once per thread). Each collector's oom.kills rises as the
// kernel's own count of the host (vmstat oom_kill) does, and its count for the victim's
// cgroup as the cgroup's own oom_kill count does: once per killed process. Every kill is
// logged once, with the victim's pid and comm and constraint memcg. It runs on the
// hierarchy that holds the memory controller: v1 on a hybrid host (this project's CI), v2
// where memory is on the unified hierarchy.
func TestOOMKill(t *testing.T) {
	testenv.RequireRoot(t)
	h, err := cgroup.Find("/proc", "/sys", "memory")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("memory controller on %s (v1 %v)", h.Dir, h.V1)

	var r oomRun
	for _, kernelLog := range []bool{false, true} {
		log := &syncBuffer{}
		o := testOptions("/")
		o.Logger = slog.New(slog.NewJSONHandler(log, nil))
		o.BPFStats = !kernelLog
		name := "ebpf"
		if kernelLog {
			name = "kmsg"
			o.loadOOM = func(opts oom.Options) (oomProbe, error) {
				opts.KernelLog = true
				return oom.Load(opts)
			}
		}
		col, err := newOOM(o)
		if err != nil {
			t.Fatal(err)
		}
		c := col.(*oomCollector)
		if err := c.Load(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
		r.cols = append(r.cols, oomCol{name, c, log})
	}

	limited := newMemcg(t, h, h.Dir, fmt.Sprintf("picket-oom-%d", os.Getpid()), 50<<20)
	comm := filepath.Base(os.Args[0])
	if len(comm) > 15 {
		comm = comm[:15]
	}

	const rounds = 10
	var fires, kills []float64
	// The victims in the limited cgroup first: on v2 it takes no more processes once it
	// hands the memory controller to the unlimited child (no internal processes).
	for _, v := range []struct {
		name    string
		memcg   func() memcg
		threads int
		rounds  int
	}{
		{"limited", func() memcg { return limited }, 1, 1},
		{"16-threads", func() memcg { return limited }, 16, rounds},
		{"unlimited-child", func() memcg { return newMemcg(t, h, limited.dir, "unlimited", 0) }, 1, 1},
	} {
		t.Run(v.name, func(t *testing.T) {
			m := v.memcg()
			for round := range v.rounds {
				before := r.read(t, m)
				seen := make([]int, len(r.cols))
				for i, c := range r.cols {
					seen[i] = len(c.log.kills(t))
				}
				pid := oomChild(t, m, v.threads)

				// The kill reaches each collector on its own goroutine (ring buffer, kernel
				// log); the eBPF probe counts the host total in the kernel.
				// The kernel log names the cgroup only while its rate limit (10 kills in 5 s,
				// the host's other kills included) lets the summary through; past it, v1
				// leaves the cgroup unknown: "/...".
				cgroupKills := func(o oomReading, i int) uint64 {
					if r.cols[i].name == "kmsg" {
						return o.cgroup[i] + o.unnamed[i]
					}
					return o.cgroup[i]
				}
				var after oomReading
				deadline := time.Now().Add(10 * time.Second)
				for {
					after = r.read(t, m)
					settled := after.memcg > before.memcg
					for i := range r.cols {
						settled = settled && cgroupKills(after, i)-cgroupKills(before, i) == after.memcg-before.memcg &&
							after.total[i]-before.total[i] == after.vmstat-before.vmstat
					}
					if settled || time.Now().After(deadline) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				own := after.memcg - before.memcg
				if own != 1 {
					t.Errorf("round %d: the cgroup's own oom_kill rose by %d, want 1 (one process killed)", round, own)
				}
				for i, c := range r.cols {
					if d := cgroupKills(after, i) - cgroupKills(before, i); d != own {
						t.Errorf("round %d: %s: oom.cgroup.%s.kills rose by %d, the cgroup's own oom_kill by %d", round, c.name, m.path, d, own)
					}
					if d, host := after.total[i]-before.total[i], after.vmstat-before.vmstat; d != host {
						t.Errorf("round %d: %s: oom.kills rose by %d, the host's vmstat oom_kill by %d", round, c.name, d, host)
					}
					checkKillLog(t, c, c.log.kills(t)[seen[i]:], pid, comm, m.path, limited.path)
				}
				fires = append(fires, after.runs-before.runs)
				kills = append(kills, float64(after.vmstat-before.vmstat))
			}
		})
	}
	t.Logf("mark_victim ran %v times for host-wide kills %v (one round each)", fires, kills)

	for _, c := range r.cols {
		if n, err := c.c.probe.Counts(); err != nil || n.Lost != 0 {
			t.Errorf("%s: lost events: %+v, %v", c.name, n, err)
		}
	}
	// The probe's own cost, with BPF statistics on: it ran at least once per kill.
	self := metric.NewSink("picket")
	r.cols[0].c.Report(self)
	got := map[string]float64{}
	for _, smp := range self.Samples() {
		got[strings.Join(Nodes(&smp), ".")] = smp.Value
	}
	if got["picket.bpf.oom.mark_victim.run_count"] < 2+rounds || got["picket.bpf.oom.mark_victim.run_time_seconds"] <= 0 || got["picket.bpf.oom.maps_bytes"] <= 0 {
		t.Errorf("self-cost: %v", got)
	}
	t.Logf("self-cost: %v", got)
}

// checkKillLog checks the log lines of one collector since the child was started: the
// child's kill once, with its pid, comm, cgroup and the limited cgroup at its limit.
// Other processes on the host may have been OOM-killed meanwhile: their lines are left
// alone.
func checkKillLog(t *testing.T, c oomCol, lines []map[string]any, pid int, comm, path, limited string) {
	t.Helper()
	var ours []map[string]any
	for _, k := range lines {
		if k["pid"] == float64(pid) {
			ours = append(ours, k)
		}
	}
	if len(ours) != 1 {
		t.Errorf("%s: %d log lines for pid %d, want 1:\n%v", c.name, len(ours), pid, lines)
		return
	}
	k := ours[0]
	var want map[string]any
	if c.name == "kmsg" && k["limit_cgroup"] == nil {
		// The kernel's rate limit left out the summary: the cgroup is read from /proc while
		// the victim is there, which v1 shows as "/" (no answer) once it is exiting.
		t.Logf("%s: the kernel's rate limit left out the summary naming the cgroups", c.name)
		want = map[string]any{"comm": comm, "uid": 0.0, "constraint": "memcg", "constraint_from": "kernel_log"}
		if k["cgroup"] != "/..." {
			want["cgroup"] = path
		}
	} else {
		from := "stack"
		if c.name == "kmsg" {
			from = "kernel_log"
		}
		want = map[string]any{
			"comm": comm, "uid": 0.0, "cgroup": path, "constraint": "memcg", "constraint_from": from, "limit_cgroup": limited,
		}
	}
	if c.name == "ebpf" {
		// The kernel log does not say the limit.
		want["limit_bytes"] = float64(50 << 20)
	}
	for key, v := range want {
		if k[key] != v {
			t.Errorf("%s: %s = %v, want %v", c.name, key, k[key], v)
		}
	}
	// At least the limit's worth was allocated in the cgroup; what the child's runtime
	// had before it was moved in stays charged elsewhere (v1 moves no charges) but counts
	// in its RSS: the race runtime's shadow memory is some 15 MiB.
	if rss, _ := k["rss_anon_bytes"].(float64); rss < 40<<20 || rss >= 300<<20 {
		t.Errorf("%s: rss_anon_bytes = %v, want at least about the 50 MiB limit, less than the 300 MiB asked", c.name, k["rss_anon_bytes"])
	}
	t.Logf("%s logged: %v", c.name, k)
}

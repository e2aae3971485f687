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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/agent/testenv"
	"github.com/picket-agent/picket/collectors/cgroup"
)

// oomChildEnv makes the test binary, run again as a child, a process that allocates this
// many bytes and touches every page (TestOOMChild).
const oomChildEnv = "PICKET_OOM_CHILD_BYTES"

// TestOOMChild is not a test: it is the process TestOOMKill has killed. It waits for a byte
// on stdin (sent once it sits in the test cgroup), then allocates until the kernel kills it.
func TestOOMChild(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(oomChildEnv))
	if err != nil {
		return
	}
	if _, err := os.Stdin.Read(make([]byte, 1)); err != nil {
		os.Exit(2)
	}
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = 1
	}
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

// ownMemcg is the memory cgroup this process runs in, as /proc/self/cgroup says: test
// cgroups go below it, so they stay inside whatever limits the test runs under.
func ownMemcg(t *testing.T, h cgroup.Hierarchy) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if (h.V1 && strings.Contains(","+f[1]+",", ",memory,")) || (!h.V1 && f[0] == "0" && f[1] == "") {
			return f[2]
		}
	}
	t.Fatalf("no memory cgroup in /proc/self/cgroup:\n%s", b)
	return ""
}

// newMemcg makes the cgroup name below parent, with a memory limit if limit > 0 (swap
// left no room, so the limit OOM-kills rather than swaps).
func newMemcg(t *testing.T, h cgroup.Hierarchy, parent, name string, limit int64) memcg {
	t.Helper()
	m := memcg{dir: filepath.Join(h.Dir, parent, name), path: filepath.Join(parent, name), v1: h.V1}
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The memcg lingers for a moment after its last task died.
		var err error
		for range 100 {
			if err = os.Remove(m.dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("removing %s: %v", m.dir, err)
	})
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

// oomChild runs this test binary as a process that allocates 300 MiB inside m, and
// returns its pid once the kernel killed it.
func oomChild(t *testing.T, m memcg) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestOOMChild$")
	cmd.Env = append(os.Environ(), oomChildEnv+"="+strconv.Itoa(300<<20))
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

// oomCounts reads oom.kills and oom.cgroup.<path>.kills.
func oomCounts(t *testing.T, c *oomCollector, path string) (total, inCgroup float64) {
	t.Helper()
	s := metric.NewSink("oom")
	if err := c.Collect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	for _, smp := range s.Samples() {
		switch {
		case len(smp.Labels) == 0:
			total = smp.Value
		case smp.Labels[0].Value == path:
			inCgroup = smp.Value
		}
	}
	return total, inCgroup
}

// TestOOMKill (root): a real OOM kill in a memory cgroup limited to 50 MiB is counted once,
// host-wide and for that cgroup, and logged with the victim's pid and comm and constraint
// memcg; so is a kill in an unlimited child of the limited cgroup, which the log names as
// the one at its limit. It runs on the hierarchy that holds the memory controller: v1 on
// a hybrid host (this project's CI), v2 where memory is on the unified hierarchy.
func TestOOMKill(t *testing.T) {
	testenv.RequireRoot(t)
	h, err := cgroup.Find("/proc", "/sys", "memory")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("memory controller on %s (v1 %v)", h.Dir, h.V1)

	log := &syncBuffer{}
	o := testOptions("/")
	o.Logger = slog.New(slog.NewJSONHandler(log, nil))
	o.BPFStats = true
	col, err := newOOM(o)
	if err != nil {
		t.Fatal(err)
	}
	c := col.(*oomCollector)
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	own := ownMemcg(t, h)
	limited := newMemcg(t, h, own, fmt.Sprintf("picket-oom-%d", os.Getpid()), 50<<20)
	unlimited := newMemcg(t, h, limited.path, "unlimited", 0)
	comm := filepath.Base(os.Args[0])
	if len(comm) > 15 {
		comm = comm[:15]
	}

	for _, victim := range []struct {
		name string
		memcg
	}{{"limited", limited}, {"unlimited-child", unlimited}} {
		t.Run(victim.name, func(t *testing.T) {
			total0, cg0 := oomCounts(t, c, victim.path)
			seen := len(log.kills(t))
			pid := oomChild(t, victim.memcg)

			// The kill reaches the collector through the ring buffer, on its own goroutine,
			// which logs a kill before counting it.
			var kills []map[string]any
			var total, cg float64
			deadline := time.Now().Add(10 * time.Second)
			for {
				total, cg = oomCounts(t, c, victim.path)
				kills = log.kills(t)[seen:]
				if (cg > cg0 && total-total0 == float64(len(kills))) || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if cg-cg0 != 1 {
				t.Fatalf("oom.cgroup.%s.kills rose by %v, want 1; kills logged: %v", victim.path, cg-cg0, kills)
			}
			// Another process on the host may be OOM-killed meanwhile: every kill is logged,
			// so the host-wide count must rise by the kills logged, ours exactly once.
			var ours []map[string]any
			for _, k := range kills {
				if k["cgroup"] == victim.path {
					ours = append(ours, k)
				}
			}
			if total-total0 != float64(len(kills)) || len(ours) != 1 {
				t.Fatalf("oom.kills rose by %v with %d kills logged (%d ours), want 1 and 1:\n%v", total-total0, len(kills), len(ours), kills)
			}
			if len(kills) > 1 {
				t.Logf("other OOM kills on the host meanwhile: %v", kills)
			}
			k := ours[0]
			for key, want := range map[string]any{
				"pid": float64(pid), "comm": comm, "uid": 0.0, "constraint": "memcg",
				"limit_cgroup": limited.path, "limit_bytes": float64(50 << 20),
			} {
				if k[key] != want {
					t.Errorf("%s = %v, want %v", key, k[key], want)
				}
			}
			// At least the limit's worth was allocated in the cgroup; what the child's runtime
			// had before it was moved in stays charged elsewhere (v1 moves no charges) but
			// counts in its RSS: the race runtime's shadow memory is some 15 MiB.
			if rss, _ := k["rss_anon_bytes"].(float64); rss < 40<<20 || rss >= 300<<20 {
				t.Errorf("rss_anon_bytes = %v, want at least about the 50 MiB limit, less than the 300 MiB asked", k["rss_anon_bytes"])
			}
			t.Logf("logged: %v", k)
		})
	}
	if lost, err := c.probe.Lost(); err != nil || lost != 0 {
		t.Errorf("lost events: %d, %v", lost, err)
	}
	// The probe's own cost, with BPF statistics on: it ran once per kill (at least: the
	// host may have had others), for some time.
	self := metric.NewSink("picket")
	c.Report(self)
	got := map[string]float64{}
	for _, smp := range self.Samples() {
		got[strings.Join(Nodes(&smp), ".")] = smp.Value
	}
	if got["picket.bpf.oom.mark_victim.run_count"] < 2 || got["picket.bpf.oom.mark_victim.run_time_seconds"] <= 0 || got["picket.bpf.oom.maps_bytes"] <= 0 {
		t.Errorf("self-cost: %v", got)
	}
	t.Logf("self-cost: %v", got)
}

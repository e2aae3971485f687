package collectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/bpf/oom"
	"github.com/picket-agent/picket/bpf/probe"
	"github.com/picket-agent/picket/collectors/cgroup"
)

// fakeOOM stands in for the loaded probe: it replays recorded kills. Counts are the
// kernel's totals; when absent, the kills of the events replayed so far.
type fakeOOM struct {
	Events      []oom.Event
	Totals      *oom.Counts          `json:"Counts"`
	ProgStats   []probe.ProgramStats `json:"Stats"`
	NoStack     string
	replayed    chan struct{}
	mu          sync.Mutex
	handedKills uint64
}

// readFakeOOM reads a case's kills.json: {"Events": [oom.Event…], "Counts": {"Kills": n,
// "Lost": n}, "Stats": […], "NoStack": "why the stack is not read"}.
func readFakeOOM(name string) (*fakeOOM, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	f := &fakeOOM{replayed: make(chan struct{})}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

func (f *fakeOOM) Run(ctx context.Context, handle func(*oom.Event)) error {
	for i := range f.Events {
		f.mu.Lock()
		f.handedKills += max(f.Events[i].Kills, 1)
		f.mu.Unlock()
		handle(&f.Events[i])
	}
	close(f.replayed)
	<-ctx.Done()
	return nil
}

func (f *fakeOOM) Counts() (oom.Counts, error) {
	if f.Totals != nil {
		return *f.Totals, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return oom.Counts{Kills: f.handedKills}, nil
}

func (f *fakeOOM) Source() string { return "tp_btf" }

func (f *fakeOOM) StackConstraint() error {
	if f.NoStack != "" {
		return errors.New(f.NoStack)
	}
	return nil
}

func (f *fakeOOM) Stats() ([]probe.ProgramStats, bool, error) {
	return f.ProgStats, f.ProgStats != nil, nil
}

func (f *fakeOOM) MapBytes() (map[string]uint64, error) {
	return map[string]uint64{"oom_events": 78408, "oom_counts": 328, "oom_memcg_kills": 11136, "oom_procs": 12160, ".rodata": 8192}, nil
}

func (f *fakeOOM) Close() error { return nil }

// waitReplayed lets the golden test's collect wait until a fake has handed over its kills.
func (c *oomCollector) waitReplayed() {
	if f, ok := c.probe.(*fakeOOM); ok {
		<-f.replayed
	}
}

func TestAncestor(t *testing.T) {
	for _, c := range []struct {
		path string
		up   int
		want string
	}{
		{"/a/b/c", 0, "/a/b/c"},
		{"/a/b/c", 1, "/a/b"},
		{"/a/b/c", 2, "/a"},
		{"/a/b/c", 3, "/"},
		{"/a/b/c", 9, "/"},
		{"/", 0, "/"},
		{"/", 1, "/"},
		{"/.../b/c", 1, "/.../b"},
		{"/.../b/c", 2, "/..."},
		{"/.../b/c", 5, "/..."},
		{"/...", 0, "/..."},
	} {
		if got := ancestor(c.path, c.up); got != c.want {
			t.Errorf("ancestor(%q, %d) = %q, want %q", c.path, c.up, got, c.want)
		}
	}
}

// oomWith returns a loaded oom collector fed by fake, logging as JSON into log.
func oomWith(t *testing.T, fake *fakeOOM, log *bytes.Buffer) *oomCollector {
	t.Helper()
	o := testOptions(t.TempDir())
	o.Logger = slog.New(slog.NewJSONHandler(log, nil))
	o.loadOOM = func(oom.Options) (oomProbe, error) { return fake, nil }
	c, err := newOOM(o)
	if err != nil {
		t.Fatal(err)
	}
	oc := c.(*oomCollector)
	if err := oc.Load(); err != nil {
		t.Fatal(err)
	}
	return oc
}

func runFake(t *testing.T, c *oomCollector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	c.waitReplayed()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestOOMLog: one structured line per kill with everything the issue asks for; pod UID and
// container ID appear for a Kubernetes cgroup only; a record standing for more than one
// kill says so; a kill whose cgroup the kernel log did not name is logged under "/...".
func TestOOMLog(t *testing.T) {
	const uid, cid = "0fb1c0e1-2c32-4a8f-8d7a-1a2b3c4d5e6f", "4c01db0b339c04bd8a0c1e4d9e9d0e9c5a7b8f6e1d2c3b4a5968778695a4b3c2"
	fake := &fakeOOM{replayed: make(chan struct{}), Events: []oom.Event{
		{Kills: 1, PID: 101, TGID: 100, UID: 1000, Comm: "java", CgroupID: 9, CgroupLevel: 4,
			Names: []string{cid, "pod" + uid, "burstable", "kubepods"}, Memcg: true, ConstraintFrom: "stack",
			LimitUp: 1, LimitBytes: 256 << 20, RSSAnon: 250 << 20, RSSFile: 1 << 20, RSSShmem: 4096, OOMScoreAdj: 999},
		{Kills: 2, PID: 7, TGID: 7, Comm: "bash", CgroupLevel: 0, ConstraintFrom: "stack", LimitUp: -1},
		{Kills: 1, PID: 8, TGID: 8, Comm: "sh", CgroupLevel: -1, Memcg: true, ConstraintFrom: "kernel_log", LimitUp: -1},
	}}
	var log bytes.Buffer
	runFake(t, oomWith(t, fake, &log))
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 log lines, got:\n%s", log.String())
	}
	var k8s, global, unnamed map[string]any
	for i, m := range []*map[string]any{&k8s, &global, &unnamed} {
		if err := json.Unmarshal([]byte(lines[i]), m); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]any{
		"msg": "OOM kill", "level": "WARN", "collector": "oom", "pid": 100.0, "tid": 101.0, "comm": "java", "uid": 1000.0,
		"cgroup": "/kubepods/burstable/pod" + uid + "/" + cid, "constraint": "memcg", "constraint_from": "stack",
		"limit_cgroup": "/kubepods/burstable/pod" + uid, "limit_bytes": float64(256 << 20),
		"rss_anon_bytes": float64(250 << 20), "rss_file_bytes": float64(1 << 20), "rss_shmem_bytes": 4096.0,
		"oom_score_adj": 999.0, "pod_uid": uid, "container_id": cid,
	}
	for k, v := range want {
		if k8s[k] != v {
			t.Errorf("%s = %v, want %v\n%s", k, k8s[k], v, lines[0])
		}
	}
	if k8s["kills"] != nil {
		t.Errorf("a single kill logs kills: %s", lines[0])
	}
	if global["constraint"] != "global" || global["cgroup"] != "/" || global["pod_uid"] != nil || global["limit_cgroup"] != nil || global["kills"] != 2.0 {
		t.Errorf("a global kill standing for two: %s", lines[1])
	}
	if unnamed["cgroup"] != "/..." || unnamed["constraint"] != "memcg" || unnamed["constraint_from"] != "kernel_log" {
		t.Errorf("a kill from the kernel log without its cgroup: %s", lines[2])
	}
}

// oomSamples collects c once and returns its samples by path.
func oomSamples(t *testing.T, c *oomCollector) map[string]float64 {
	t.Helper()
	s := metric.NewSink("oom")
	if err := c.Collect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, smp := range s.Samples() {
		got[strings.Join(Nodes(&smp), ".")] = smp.Value
	}
	return got
}

// TestOOMCgroupBound: at most maxOOMCgroups cgroups are reported. When that many are, a
// kill in a new cgroup retires the ones no longer at their path (removed, or removed and
// made again: a new id), and counts under overflow if none was; a retired path that is
// killed in again goes on from its count, never from zero. The host-wide count is the
// kernel's, whatever the cgroups.
func TestOOMCgroupBound(t *testing.T) {
	root := t.TempDir()
	mk := func(name string) uint64 {
		t.Helper()
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	ids := map[string]uint64{}
	for i := range maxOOMCgroups + 3 {
		name := fmt.Sprintf("job-%d", i)
		ids[name] = mk(name)
	}
	fake := &fakeOOM{replayed: make(chan struct{}), Totals: &oom.Counts{Kills: 9999}}
	var log bytes.Buffer
	c := oomWith(t, fake, &log)
	c.resolver = cgroup.NewResolver(root)
	kill := func(name string) {
		t.Helper()
		c.handle(&oom.Event{Kills: 1, CgroupID: ids[name], CgroupLevel: 1, Names: []string{name}, LimitUp: -1})
	}
	for i := range maxOOMCgroups {
		kill(fmt.Sprintf("job-%d", i))
	}
	kill("job-0")
	kill(fmt.Sprintf("job-%d", maxOOMCgroups)) // all alive: overflow
	got := oomSamples(t, c)
	if got["oom.kills"] != 9999 || got["oom.cgroup./job-0.kills"] != 2 || got["oom.cgroup./job-511.kills"] != 1 ||
		got["oom.cgroup.overflow.kills"] != 1 || len(got) != maxOOMCgroups+2 {
		t.Errorf("full of live cgroups: %d series, kills %v, job-0 %v, overflow %v", len(got), got["oom.kills"], got["oom.cgroup./job-0.kills"], got["oom.cgroup.overflow.kills"])
	}

	// job-0 removed, job-1 made again: both retired by the next kill in a new cgroup.
	if err := os.Remove(filepath.Join(root, "job-0")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "job-1"), filepath.Join(root, "old-job-1")); err != nil {
		t.Fatal(err)
	}
	ids["job-1"] = mk("job-1")
	kill(fmt.Sprintf("job-%d", maxOOMCgroups+1))
	got = oomSamples(t, c)
	if _, ok := got["oom.cgroup./job-0.kills"]; ok || got["oom.cgroup./job-1.kills"] != 0 || got["oom.cgroup./job-513.kills"] != 1 ||
		got["oom.cgroup.overflow.kills"] != 1 || len(got) != maxOOMCgroups+1 {
		t.Errorf("after retiring a removed and a remade cgroup: %d series, job-513 %v, overflow %v", len(got), got["oom.cgroup./job-513.kills"], got["oom.cgroup.overflow.kills"])
	}

	// The new job-1 is killed in: its path goes on from 1, not 0.
	kill("job-1")
	got = oomSamples(t, c)
	if got["oom.cgroup./job-1.kills"] != 2 || got["oom.cgroup./job-2.kills"] != 1 {
		t.Errorf("a retired path killed in again: job-1 %v, want 2", got["oom.cgroup./job-1.kills"])
	}
}

// TestOOMCollectAfterClose: a tick that reads the counts while the probe is closing (the
// agent stopping) gets the last counts, not an error.
func TestOOMCollectAfterClose(t *testing.T) {
	fake := &fakeOOM{replayed: make(chan struct{}), Events: []oom.Event{{Kills: 1, CgroupLevel: 0, LimitUp: -1}}}
	var log bytes.Buffer
	c := oomWith(t, fake, &log)
	runFake(t, c)
	if got := oomSamples(t, c); got["oom.kills"] != 1 || got["oom.cgroup./.kills"] != 1 {
		t.Errorf("after Run returned: %v", got)
	}
}

// TestOOMStatsUnavailable: BPF statistics that could not be turned on are logged once at
// Load, and Collect does not fail for them tick after tick.
func TestOOMStatsUnavailable(t *testing.T) {
	fake := &fakeOOM{replayed: make(chan struct{})}
	var log bytes.Buffer
	o := testOptions(t.TempDir())
	o.Logger = slog.New(slog.NewJSONHandler(&log, nil))
	o.BPFStats = true
	o.loadOOM = func(oom.Options) (oomProbe, error) { return statsFailing{fake}, nil }
	col, err := newOOM(o)
	if err != nil {
		t.Fatal(err)
	}
	c := col.(*oomCollector)
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		oomSamples(t, c)
	}
	if n := strings.Count(log.String(), "--bpf.stats"); n != 1 || !strings.Contains(log.String(), "needs CAP_SYS_ADMIN") {
		t.Errorf("want one warning at Load, got:\n%s", log.String())
	}
}

// statsFailing is a probe whose BPF statistics could not be turned on.
type statsFailing struct{ *fakeOOM }

func (statsFailing) Stats() ([]probe.ProgramStats, bool, error) {
	return nil, false, errors.New("turning on BPF run-time statistics: operation not permitted (needs CAP_SYS_ADMIN; or set sysctl kernel.bpf_stats_enabled=1)")
}

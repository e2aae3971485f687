package collectors

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/bpf/oom"
	"github.com/picket-agent/picket/bpf/probe"
	"github.com/picket-agent/picket/collectors/cgroup"
)

// fakeOOM stands in for the loaded probe: it replays recorded kills.
type fakeOOM struct {
	Events   []oom.Event
	Lost_    uint64               `json:"Lost"`
	Stats_   []probe.ProgramStats `json:"Stats"`
	replayed chan struct{}
}

// readFakeOOM reads a case's kills.json: {"Events": [oom.Event…], "Lost": n, "Stats": […]}.
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
		handle(&f.Events[i])
	}
	close(f.replayed)
	<-ctx.Done()
	return nil
}

func (f *fakeOOM) Lost() (uint64, error) { return f.Lost_, nil }

func (f *fakeOOM) Stats() ([]probe.ProgramStats, bool, error) { return f.Stats_, f.Stats_ != nil, nil }

func (f *fakeOOM) MapBytes() (map[string]uint64, error) {
	return map[string]uint64{"oom_events": 78408, "oom_lost": 320, ".rodata": 8192}, nil
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
// container ID appear for a Kubernetes cgroup only.
func TestOOMLog(t *testing.T) {
	const uid, cid = "0fb1c0e1-2c32-4a8f-8d7a-1a2b3c4d5e6f", "4c01db0b339c04bd8a0c1e4d9e9d0e9c5a7b8f6e1d2c3b4a5968778695a4b3c2"
	fake := &fakeOOM{replayed: make(chan struct{}), Events: []oom.Event{
		{PID: 101, TGID: 100, UID: 1000, Comm: "java", CgroupID: 9, CgroupLevel: 4,
			Names: []string{cid, "pod" + uid, "burstable", "kubepods"}, LimitUp: 1, LimitBytes: 256 << 20,
			RSSAnon: 250 << 20, RSSFile: 1 << 20, RSSShmem: 4096, OOMScoreAdj: 999},
		{PID: 7, TGID: 7, Comm: "bash", CgroupLevel: 0, LimitUp: -1},
	}}
	var log bytes.Buffer
	runFake(t, oomWith(t, fake, &log))
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 log lines, got:\n%s", log.String())
	}
	var k8s, global map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &k8s); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &global); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"msg": "OOM kill", "level": "WARN", "collector": "oom", "pid": 100.0, "tid": 101.0, "comm": "java", "uid": 1000.0,
		"cgroup": "/kubepods/burstable/pod" + uid + "/" + cid, "constraint": "memcg",
		"limit_cgroup": "/kubepods/burstable/pod" + uid, "limit_bytes": float64(256 << 20),
		"rss_anon_bytes": float64(250 << 20), "rss_file_bytes": float64(1 << 20), "rss_shmem_bytes": 4096.0,
		"oom_score_adj": 999.0, "pod_uid": uid, "container_id": cid,
	}
	for k, v := range want {
		if k8s[k] != v {
			t.Errorf("%s = %v, want %v\n%s", k, k8s[k], v, lines[0])
		}
	}
	if global["constraint"] != "global" || global["cgroup"] != "/" || global["pod_uid"] != nil || global["limit_cgroup"] != nil {
		t.Errorf("a global kill: %s", lines[1])
	}
}

// TestOOMCgroupBound: past maxOOMCgroups, cgroups that are gone make room, and kills in
// new cgroups beyond the bound count under overflow; the host-wide count has them all.
func TestOOMCgroupBound(t *testing.T) {
	fake := &fakeOOM{replayed: make(chan struct{})}
	for i := range maxOOMCgroups + 10 {
		fake.Events = append(fake.Events, oom.Event{CgroupLevel: 1, Names: []string{fmt.Sprintf("job-%d", i)}, LimitUp: 0})
	}
	var log bytes.Buffer
	c := oomWith(t, fake, &log)
	runFake(t, c)
	s := metric.NewSink("oom")
	// The cgroups are all gone (the test root has none): the first kill past the bound
	// drops their counters, and none goes to overflow.
	if err := c.Collect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, smp := range s.Samples() {
		got[strings.Join(Nodes(&smp), ".")] = smp.Value
	}
	if got["oom.kills"] != maxOOMCgroups+10 || got["oom.cgroup./job-0.kills"] != 0 || got["oom.cgroup./job-521.kills"] != 1 || got["oom.cgroup.overflow.kills"] != 0 {
		t.Errorf("after sweeping gone cgroups: %v", got)
	}

	// Cgroups that exist stay, and the ones past the bound overflow.
	c.resolver = nil
	c.cgroups = map[string]*oomCgroup{}
	c.kills = 0
	root := t.TempDir()
	for i := range maxOOMCgroups + 10 {
		if err := os.Mkdir(fmt.Sprintf("%s/job-%d", root, i), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c.resolver = cgroup.NewResolver(root)
	for i := range fake.Events {
		c.handle(&fake.Events[i])
	}
	s = metric.NewSink("oom")
	if err := c.Collect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	got = map[string]float64{}
	for _, smp := range s.Samples() {
		got[strings.Join(Nodes(&smp), ".")] = smp.Value
	}
	if got["oom.kills"] != maxOOMCgroups+10 || got["oom.cgroup./job-0.kills"] != 1 || got["oom.cgroup.overflow.kills"] != 10 || len(got) != maxOOMCgroups+1+1 {
		t.Errorf("with every cgroup present: %d series, kills %v, overflow %v", len(got), got["oom.kills"], got["oom.cgroup.overflow.kills"])
	}
}

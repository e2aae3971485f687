package collectors

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/bpf/probe"
	"github.com/picket-agent/picket/bpf/runqlat"
)

// fakeRunqlat stands in for the loaded probe: it plays back readings whose cgroups are
// named by path. A path that exists under dir (the fixture's cpu hierarchy) has the id
// the kernel would give it, the inode of its directory; one removed keeps the id it had
// until freed, as in the kernel; one that never existed gets an id of its own.
type fakeRunqlat struct {
	Reads  []fakeRunqlatRead
	Stats_ []probe.ProgramStats `json:"Stats"`

	dir   string
	next  int
	ids   map[string]uint64
	freed map[uint64]bool
	last  runqlat.Snapshot
}

// fakeRunqlatRead is one reading, cgroups by path.
type fakeRunqlatRead struct {
	Host     runqlat.Hist
	Cgroups  map[string]runqlat.Hist
	Overflow runqlat.Hist
	Missed   uint64
}

// readFakeRunqlat reads a case's runqlat.json: {"Reads": [reading…], "Stats": […]}.
func readFakeRunqlat(root string) (*fakeRunqlat, error) {
	name := filepath.Join(root, "runqlat.json")
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	f := newFakeRunqlat(filepath.Join(root, "sys", "fs", "cgroup", "cpu"))
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

func newFakeRunqlat(dir string) *fakeRunqlat {
	return &fakeRunqlat{dir: dir, ids: map[string]uint64{}, freed: map[uint64]bool{}}
}

// id is the id of the cgroup at path now.
func (f *fakeRunqlat) id(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(f.dir, path), &st); err == nil {
		f.ids[path] = st.Ino
	} else if f.ids[path] == 0 {
		f.ids[path] = 1<<62 + uint64(len(f.ids))
	}
	return f.ids[path]
}

// Read returns the next reading (the last one again once they run out).
func (f *fakeRunqlat) Read() (runqlat.Snapshot, error) {
	r := f.Reads[min(f.next, len(f.Reads)-1)]
	f.next++
	snap := runqlat.Snapshot{Host: r.Host, Overflow: r.Overflow, Missed: r.Missed}
	if r.Cgroups != nil {
		snap.Cgroups = map[uint64]runqlat.Hist{}
	}
	for path, h := range r.Cgroups {
		if id := f.id(path); !f.freed[id] {
			snap.Cgroups[id] = h
		}
	}
	f.last = snap
	return snap, nil
}

func (f *fakeRunqlat) Free(ids []uint64) (map[uint64]runqlat.Hist, error) {
	out := map[uint64]runqlat.Hist{}
	for _, id := range ids {
		if h, ok := f.last.Cgroups[id]; ok && !f.freed[id] {
			out[id] = h
		}
		f.freed[id] = true
	}
	return out, nil
}

func (f *fakeRunqlat) Stamps() (runqlat.Stamps, error) { return runqlat.StampsTaskStorage, nil }

func (f *fakeRunqlat) Stats() ([]probe.ProgramStats, bool, error) {
	return f.Stats_, f.Stats_ != nil, nil
}

func (f *fakeRunqlat) MapBytes() (map[string]uint64, error) {
	return map[string]uint64{"rq_cpu": 576, "rq_cgroup_hist": 119328, "rq_cgroup_slot": 42000, "rq_free_slots": 2364, "rq_start": 480, ".rodata": 8192}, nil
}

func (f *fakeRunqlat) Close() error { return nil }

// hist builds a histogram from its buckets, the sum one bucket's bound each.
func hist(buckets ...uint64) runqlat.Hist {
	var h runqlat.Hist
	copy(h.Buckets[:], buckets)
	for k, n := range buckets {
		bound, ok := runqlat.Bound(k)
		if !ok {
			bound = 1 << 25
		}
		h.SumNS += n * bound * 1000
	}
	return h
}

// runqlatWith returns a loaded runqlat collector fed by fake, whose cpu hierarchy is a
// fixture tree under root.
func runqlatWith(t *testing.T, root string, fake *fakeRunqlat) *runqlatCollector {
	t.Helper()
	o := testOptions(root)
	o.loadRunqlat = func(runqlat.Options) (runqlatProbe, error) { return fake, nil }
	c, err := newRunqlat(o)
	if err != nil {
		t.Fatal(err)
	}
	rc := c.(*runqlatCollector)
	if err := rc.Load(); err != nil {
		t.Fatal(err)
	}
	return rc
}

// cpuTree makes a fixture root whose cpu controller is on a v1 hierarchy, and returns it
// with the hierarchy's directory.
func cpuTree(t *testing.T) (root, dir string) {
	t.Helper()
	root = t.TempDir()
	dir = filepath.Join(root, "sys", "fs", "cgroup", "cpu")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc", "cgroups"), []byte("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, dir
}

// collectMap collects once and returns the samples by Graphite path.
func collectMap(t *testing.T, c Collector) map[string]float64 {
	t.Helper()
	s := metric.NewSink("runqlat")
	if err := c.Collect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, smp := range s.Samples() {
		if smp.Kind != metric.Counter {
			t.Errorf("%s is a %s", strings.Join(Nodes(&smp), "."), smp.Kind)
		}
		out[strings.Join(Nodes(&smp), ".")] = smp.Value
	}
	return out
}

// checkCumulative checks each histogram in got: the le_ counters never fall as the bound
// grows, and none exceeds count.
func checkCumulative(t *testing.T, got map[string]float64) {
	t.Helper()
	for path, count := range got {
		prefix, ok := strings.CutSuffix(path, ".count")
		if !ok {
			continue
		}
		prev := 0.0
		for _, field := range runqlatLe {
			v, ok := got[prefix+"."+field]
			if !ok {
				t.Errorf("%s.%s missing", prefix, field)
			}
			if v < prev || v > count {
				t.Errorf("%s.%s = %v after %v, count %v", prefix, field, v, prev, count)
			}
			prev = v
		}
	}
}

// TestRunqlatBuckets: the kernel's per-bucket counts become cumulative le_ counters, the
// waits beyond the last bound show in count only, and sum_us is whole microseconds.
func TestRunqlatBuckets(t *testing.T) {
	s := metric.NewSink("runqlat")
	h := hist(3, 0, 2)
	h.Buckets[runqlat.NumBuckets-1] = 4
	h.SumNS = 1_234_567_891
	addHist(s, &h, nil)
	got := map[string]float64{}
	for _, smp := range s.Samples() {
		got[smp.Field] = smp.Value
	}
	want := map[string]float64{"le_1us": 3, "le_2us": 3, "le_4us": 5, "le_8us": 5, "le_16777216us": 5, "count": 9, "sum_us": 1_234_567}
	for f, v := range want {
		if got[f] != v {
			t.Errorf("%s = %v, want %v", f, got[f], v)
		}
	}
	if len(got) != runqlat.NumBuckets+1 || runqlatLe[0] != "le_1us" || runqlatLe[len(runqlatLe)-1] != "le_16777216us" {
		t.Errorf("%d fields: %v", len(got), got)
	}
}

// TestRunqlatMonotonic plays a cgroup's life through the collector: removed (its
// histogram freed, its counters kept), made again at the same path (its new histogram,
// from zero, adds to the old counts), renamed, created and removed between two readings;
// every counter only grows, and the cumulative buckets hold at every reading.
func TestRunqlatMonotonic(t *testing.T) {
	root, dir := cpuTree(t)
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fake := newFakeRunqlat(dir)
	fake.Reads = []fakeRunqlatRead{
		{Host: hist(10, 10), Cgroups: map[string]runqlat.Hist{"/": hist(1), "/a": hist(2, 1), "/b": hist(3)}},
		// b removed: the kernel still has its histogram (with one more wait) until freed.
		{Host: hist(20, 20), Cgroups: map[string]runqlat.Hist{"/": hist(1), "/a": hist(4, 2), "/b": hist(4)}},
		// b made again: a new id, a new histogram from zero. A short-lived cgroup came
		// and went. The overflow has waits.
		{Host: hist(30, 30), Cgroups: map[string]runqlat.Hist{"/": hist(2), "/a": hist(4, 2), "/b": hist(0, 5), "/short": hist(7)}, Overflow: hist(0, 0, 1)},
		// a renamed to c.
		{Host: hist(40, 40), Cgroups: map[string]runqlat.Hist{"/": hist(2), "/c": hist(6, 2), "/b": hist(0, 6)}, Overflow: hist(0, 0, 2)},
		{Host: hist(40, 40), Cgroups: map[string]runqlat.Hist{"/": hist(2), "/c": hist(6, 3), "/b": hist(0, 6)}, Overflow: hist(0, 0, 2)},
	}
	c := runqlatWith(t, root, fake)
	steps := []struct {
		before func()
		want   map[string]float64
	}{
		{nil, map[string]float64{"runqlat.count": 20, "runqlat.cgroup./a.count": 3, "runqlat.cgroup./b.count": 3, "runqlat.cgroup./.count": 1}},
		{func() { rm(t, dir, "b") }, map[string]float64{"runqlat.count": 40, "runqlat.cgroup./a.count": 6, "runqlat.cgroup./b.count": 4}},
		{func() { mkdir(t, dir, "b") }, map[string]float64{"runqlat.cgroup./b.count": 9, "runqlat.cgroup./b.le_1us": 4, "runqlat.cgroup./b.le_2us": 9,
			"runqlat.cgroup.unnamed.count": 7, "runqlat.cgroup.overflow.count": 1, "runqlat.cgroup./a.count": 6}},
		{func() { mv(t, dir, "a", "c") }, map[string]float64{"runqlat.cgroup./a.count": 6, "runqlat.cgroup./c.count": 2, "runqlat.cgroup./b.count": 10, "runqlat.cgroup.overflow.count": 2}},
		{nil, map[string]float64{"runqlat.cgroup./a.count": 6, "runqlat.cgroup./c.count": 3}},
	}
	prev := map[string]float64{}
	for i, step := range steps {
		if step.before != nil {
			step.before()
		}
		got := collectMap(t, c)
		checkCumulative(t, got)
		for k, v := range step.want {
			if got[k] != v {
				t.Errorf("reading %d: %s = %v, want %v", i, k, got[k], v)
			}
		}
		for k, v := range prev {
			if got[k] < v {
				t.Errorf("reading %d: %s fell from %v to %v", i, k, v, got[k])
			}
			if _, ok := got[k]; !ok {
				t.Errorf("reading %d: %s is gone", i, k)
			}
		}
		prev = got
	}
	// The first b and the short-lived cgroup; not a, which only moved.
	if len(fake.freed) != 2 {
		t.Errorf("freed %v, want 2 histograms", fake.freed)
	}
}

// rm takes cgroup name out of the hierarchy at dir. It moves the directory out rather
// than removing it, so that no directory made after can get its inode number (tmpfs
// and ext4 reuse them; cgroupfs never reuses an id).
func rm(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, name), dir+".removed-"+name); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
}

func mv(t *testing.T, dir, from, to string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
		t.Fatal(err)
	}
}

// TestRunqlatEvict: past maxRunqlatPaths, the paths of gone cgroups that changed longest
// ago are forgotten; live ones, overflow and unnamed stay.
func TestRunqlatEvict(t *testing.T) {
	root, dir := cpuTree(t)
	mkdir(t, dir, "live")
	fake := newFakeRunqlat(dir)
	first := fakeRunqlatRead{Host: hist(1), Cgroups: map[string]runqlat.Hist{"/live": hist(1)}, Overflow: hist(1)}
	for i := range maxRunqlatPaths + 10 {
		mkdir(t, dir, fmt.Sprintf("job-%04d", i))
		first.Cgroups[fmt.Sprintf("/job-%04d", i)] = hist(1)
	}
	fake.Reads = []fakeRunqlatRead{first}
	c := runqlatWith(t, root, fake)
	collectMap(t, c)
	// All the jobs end; ten of them had a wait more just before.
	second := fakeRunqlatRead{Host: hist(2), Cgroups: map[string]runqlat.Hist{"/live": hist(1)}, Overflow: hist(1)}
	for i := range maxRunqlatPaths + 10 {
		name := fmt.Sprintf("job-%04d", i)
		rm(t, dir, name)
		second.Cgroups["/"+name] = hist(1)
		if i%100 == 0 {
			second.Cgroups["/"+name] = hist(2)
		}
	}
	fake.Reads = append(fake.Reads, second)
	got := collectMap(t, c)
	if n := len(c.paths); n != maxRunqlatPaths {
		t.Errorf("%d paths kept, want %d", n, maxRunqlatPaths)
	}
	for _, want := range []string{"/live", "overflow", "/job-0000", "/job-0100", "/job-1000"} {
		if _, ok := got["runqlat.cgroup."+want+".count"]; !ok {
			t.Errorf("%s was forgotten", want)
		}
	}
	if len(c.ids) != 1 {
		t.Errorf("%d cgroups hold a histogram, want /live alone", len(c.ids))
	}
}

// TestRunqlatReport: the probe's cost and state under picket.bpf.runqlat.
func TestRunqlatReport(t *testing.T) {
	root, dir := cpuTree(t)
	fake := newFakeRunqlat(dir)
	fake.Reads = []fakeRunqlatRead{{Host: hist(1), Cgroups: map[string]runqlat.Hist{"/": hist(1)}, Missed: 3}}
	fake.Stats_ = []probe.ProgramStats{{Hook: runqlat.HookSwitch, Kind: "tp_btf", RunTime: 2 * time.Millisecond, RunCount: 40}}
	c := runqlatWith(t, root, fake)
	collectMap(t, c)
	s := metric.NewSink("picket")
	c.Report(s)
	got := map[string]float64{}
	for _, smp := range s.Samples() {
		got[strings.Join(Nodes(&smp), ".")] = smp.Value
	}
	want := map[string]float64{
		"picket.bpf.runqlat.missed_waits": 3, "picket.bpf.runqlat.cgroups": 1, "picket.bpf.runqlat.maps_bytes": 172940,
		"picket.bpf.runqlat.sched_switch.run_count": 40, "picket.bpf.runqlat.sched_switch.run_time_seconds": 0.002,
	}
	if len(got) != len(want) {
		t.Errorf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

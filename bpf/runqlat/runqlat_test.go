package runqlat

import (
	"errors"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/picket-agent/picket/agent/testenv"
	"github.com/picket-agent/picket/bpf/probe"
	"github.com/picket-agent/picket/collectors/cgroup"
)

// TestSpec: the committed object holds the programs, maps and constants the Go side
// names, each program uses the maps its stamp store needs and no other, and the value
// layouts match.
func TestSpec(t *testing.T) {
	spec, err := loadRunqlat()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, set := range []programs{taskStorage, tidTable} {
		for _, v := range set {
			for _, name := range v {
				if name != "" {
					want = append(want, name)
				}
			}
		}
	}
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(spec.Programs)); !slices.Equal(got, want) {
		t.Errorf("programs %v, want %v", got, want)
	}
	for _, set := range []struct {
		progs programs
		start string
		other string
	}{{taskStorage, mapStartTask, mapStartTID}, {tidTable, mapStartTID, mapStartTask}} {
		for hook, v := range set.progs {
			for i, name := range v {
				if name == "" {
					continue
				}
				ps := spec.Programs[name]
				typ := []ebpf.ProgramType{ebpf.Tracing, ebpf.RawTracepoint}[i]
				if ps.Type != typ || ps.AttachTo != hook {
					t.Errorf("%s: type %s attached to %s, want %s attached to %s", name, ps.Type, ps.AttachTo, typ, hook)
				}
				refs := probe.References(ps)
				need := []string{set.start}
				if hook == HookSwitch {
					need = append(need, mapCPU, mapCgroupHist, mapCgroupSlot, mapFreeSlots, ".rodata")
				}
				for _, m := range need {
					if !refs[m] {
						t.Errorf("%s does not use %s (uses %v)", name, m, refs)
					}
				}
				if refs[set.other] {
					t.Errorf("%s uses %s, the other stamp store", name, set.other)
				}
			}
		}
	}
	for name, want := range map[string]struct {
		typ        ebpf.MapType
		entries    uint32
		value      uint32
		maxEntries bool
	}{
		mapCPU:        {ebpf.PerCPUArray, 1, uint32(unsafe.Sizeof(runqlatCpuState{})), true},
		mapCgroupHist: {ebpf.PerCPUArray, MaxCgroups + 1, uint32(unsafe.Sizeof(runqlatHist{})), true},
		mapCgroupSlot: {ebpf.Hash, MaxCgroups, 4, true},
		mapFreeSlots:  {ebpf.Queue, MaxCgroups, 4, true},
		mapStartTask:  {ebpf.TaskStorage, 0, 8, false},
		mapStartTID:   {ebpf.Array, 1 << 16, 8, true},
	} {
		m := spec.Maps[name]
		if m == nil || m.Type != want.typ || m.ValueSize != want.value || (want.maxEntries && m.MaxEntries != want.entries) {
			t.Errorf("%s: %+v, want %s of %d × %d bytes", name, m, want.typ, want.entries, want.value)
		}
	}
	if s := unsafe.Sizeof(runqlatHist{}); s != 8+4*NumBuckets {
		t.Errorf("struct hist is %d bytes, want %d buckets and the sum", s, NumBuckets)
	}
	for _, v := range []string{varCgroupMode, varSwitchState} {
		if spec.Variables[v] == nil || !spec.Variables[v].Constant() {
			t.Errorf("%s: %+v, want a constant", v, spec.Variables[v])
		}
	}
}

// bucketNoDiv is the kernel's bucket(), line by line: bucket k without a division.
func bucketNoDiv(ns uint64) int {
	b := 0
	for x := ns - 1; x != 0; x >>= 1 {
		b++
	}
	if b <= 10 {
		if ns > 1000 {
			return 1
		}
		return 0
	}
	k := b - 10
	if ns > 1000<<k {
		k++
	}
	return min(k, NumBuckets-1)
}

// TestBucket: a wait of ns nanoseconds counts in the first bucket whose bound it does not
// exceed (1000 ns is ≤ 1 µs, 1001 ns is not), the longest in the last; the kernel's
// division-free way gives the same bucket everywhere.
func TestBucket(t *testing.T) {
	for _, c := range []struct {
		ns   uint64
		want int
	}{
		{1, 0}, {999, 0}, {1000, 0}, {1001, 1}, {2000, 1}, {2001, 2}, {4000, 2}, {4001, 3},
		{1_000_000, 10}, {1_024_000, 10}, {1_024_001, 11},
		{1000 << 24, 24}, {1000<<24 + 1, 25}, {1 << 62, 25}, {^uint64(0), 25},
	} {
		if got := BucketOf(c.ns); got != c.want {
			t.Errorf("BucketOf(%d) = %d, want %d", c.ns, got, c.want)
		}
		if got := bucketNoDiv(c.ns); got != c.want {
			t.Errorf("bucketNoDiv(%d) = %d, want %d", c.ns, got, c.want)
		}
	}
	check := func(ns uint64) {
		k := BucketOf(ns)
		if bound, ok := Bound(k); ok && ns > bound*1000 || k > 0 && ns <= (1<<(k-1))*1000 {
			t.Fatalf("BucketOf(%d) = %d, outside its bounds", ns, k)
		}
		if got := bucketNoDiv(ns); got != k {
			t.Fatalf("bucketNoDiv(%d) = %d, BucketOf %d", ns, got, k)
		}
	}
	for k := range 64 {
		for _, d := range []int64{-1, 0, 1} {
			for _, base := range []uint64{1 << k, 1000 << k} {
				if ns := uint64(int64(base) + d); ns > 0 {
					check(ns)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		check(r.Uint64N(1<<r.IntN(64)) + 1)
	}
	if b, ok := Bound(0); b != 1 || !ok {
		t.Errorf("Bound(0) = %d, %v", b, ok)
	}
	if b, ok := Bound(NumBuckets - 2); b != 1<<24 || !ok {
		t.Errorf("Bound(last finite) = %d, %v", b, ok)
	}
	if _, ok := Bound(NumBuckets - 1); ok {
		t.Error("the last bucket has a bound")
	}
}

func cpuHist(sum uint64, le ...uint32) runqlatHist {
	h := runqlatHist{SumNs: sum}
	copy(h.Le[:], le)
	return h
}

// TestReader: per-CPU 32-bit buckets that wrap, on any CPU, between readings add up to
// exact 64-bit totals.
func TestReader(t *testing.T) {
	var r reader
	const near = 1<<32 - 5
	wrapped := func(n uint64) uint32 { return uint32(n) } // near+10 as the kernel's u32 holds it
	steps := []struct {
		cpus []runqlatHist
		want []uint64
		sum  uint64
	}{
		{[]runqlatHist{cpuHist(10, 1, 2), cpuHist(5, 3)}, []uint64{4, 2}, 15},
		{[]runqlatHist{cpuHist(20, near, 2), cpuHist(5, 3)}, []uint64{near + 3, 2}, 25},
		// CPU 0's first bucket wraps: +10.
		{[]runqlatHist{cpuHist(30, wrapped(near+10), 2), cpuHist(5, 3)}, []uint64{near + 13, 2}, 35},
		// CPU 1's wraps too (+2^32 - 3 + 7), and the sum of the CPUs wraps with it.
		{[]runqlatHist{cpuHist(30, wrapped(near+10), 2), cpuHist(6, 7, 1)}, []uint64{near + 13 + 4, 3}, 36},
		{[]runqlatHist{cpuHist(30, wrapped(near+10), 2), cpuHist(6, 7, 1)}, []uint64{near + 17, 3}, 36},
	}
	for i, s := range steps {
		for j := range s.cpus {
			r.add(&s.cpus[j])
		}
		h := r.done()
		if h.Buckets[0] != s.want[0] || h.Buckets[1] != s.want[1] || h.SumNS != s.sum {
			t.Errorf("reading %d: %v sum %d, want %v sum %d", i, h.Buckets[:2], h.SumNS, s.want, s.sum)
		}
	}
	var w wrap32
	for i, c := range []struct {
		v    uint32
		want uint64
	}{{5, 5}, {1<<32 - 1, 1<<32 - 1}, {3, 1<<32 + 3}, {3, 1<<32 + 3}} {
		if got := w.update(c.v); got != c.want {
			t.Errorf("wrap32 step %d: %d, want %d", i, got, c.want)
		}
	}
}

func TestHist(t *testing.T) {
	a := Hist{SumNS: 10}
	a.Buckets[0], a.Buckets[NumBuckets-1] = 2, 1
	b := a
	b.Add(&a)
	if b.Count() != 6 || b.SumNS != 20 {
		t.Errorf("Add: %+v", b)
	}
	if d, ok := b.Sub(&a); !ok || d != a {
		t.Errorf("Sub: %+v, %v", d, ok)
	}
	if _, ok := a.Sub(&b); ok {
		t.Error("Sub of a later reading from an earlier one succeeded")
	}
}

func param(t btf.Type) btf.FuncParam { return btf.FuncParam{Type: t} }

// TestCheckProtos: the wakeups take a task; sched_switch takes (preempt, prev, next) and,
// from 5.18, prev_state; anything else is refused with the prototype spelled out.
func TestCheckProtos(t *testing.T) {
	task := &btf.Pointer{Target: &btf.Struct{Name: "task_struct"}}
	boolean := &btf.Typedef{Name: "bool", Type: &btf.Int{Name: "_Bool", Size: 1, Encoding: btf.Bool}}
	uint := &btf.Int{Name: "unsigned int", Size: 4}
	if err := checkWakeup(HookWakeup, []btf.FuncParam{param(task)}); err != nil {
		t.Error(err)
	}
	for _, bad := range [][]btf.FuncParam{nil, {param(uint)}, {param(task), param(task)}} {
		if err := checkWakeup(HookWakeup, bad); !errors.Is(err, probe.ErrPrototype) {
			t.Errorf("wakeup%s: %v", probe.FormatProto(bad), err)
		}
	}
	for _, c := range []struct {
		params []btf.FuncParam
		state  bool
		err    bool
	}{
		{[]btf.FuncParam{param(boolean), param(task), param(task), param(uint)}, true, false},
		{[]btf.FuncParam{param(boolean), param(task), param(task)}, false, false},
		{[]btf.FuncParam{param(boolean), param(task), param(task), param(task)}, false, true},
		{[]btf.FuncParam{param(task), param(task)}, false, true},
		{nil, false, true},
	} {
		state, err := checkSwitch(c.params)
		if state != c.state || (err != nil) != c.err || (err != nil && !errors.Is(err, probe.ErrPrototype)) {
			t.Errorf("switch%s: %v, %v", probe.FormatProto(c.params), state, err)
		}
	}
}

// TestLoad (root): the probe loads with each stamp store (and, forced, as raw_tp), creates
// only the maps its programs use, counts waits host-wide and per cgroup, and Close
// releases it.
func TestLoad(t *testing.T) {
	testenv.RequireRoot(t)
	rawOnly := programs{}
	for hook, v := range tidTable {
		rawOnly[hook] = [2]string{"", v[1]}
	}
	for _, c := range []struct {
		name      string
		progs     programs
		kind      string
		stamps    Stamps
		start     string
		readState bool
	}{
		{"task-storage", taskStorage, "tp_btf", StampsTaskStorage, mapStartTask, false},
		// sched_switch as before 5.18, without prev_state: prev's state read from the task.
		{"task-storage-pre-5.18", taskStorage, "tp_btf", StampsTaskStorage, mapStartTask, true},
		{"tid-table", tidTable, "tp_btf", StampsTable, mapStartTID, false},
		{"tid-table-raw_tp", rawOnly, "raw_tp", StampsTable, mapStartTID, false},
		{"tid-table-raw_tp-pre-5.18", rawOnly, "raw_tp", StampsTable, mapStartTID, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := load(Options{SysFS: "/sys", Cgroups: CgroupV1, Stats: true, readState: c.readState}, c.progs)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if s, _ := p.Stamps(); s != c.stamps {
				t.Errorf("stamps in %s, want %s", s, c.stamps)
			}
			for _, a := range p.Attached() {
				if a.Kind != c.kind {
					t.Errorf("%s attached as %s, want %s", a.Hook, a.Kind, c.kind)
				}
			}
			mem, err := p.MapBytes()
			if err != nil {
				t.Fatal(err)
			}
			want := []string{".rodata", mapCgroupHist, mapCgroupSlot, mapCPU, mapFreeSlots, c.start}
			slices.Sort(want)
			if got := slices.Sorted(maps.Keys(mem)); !slices.Equal(got, want) {
				t.Errorf("maps %v, want %v", got, want)
			}
			var total uint64
			for _, b := range mem {
				total += b
			}
			t.Logf("maps: %v, %d bytes in all", mem, total)
			var snap Snapshot
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				if snap, err = p.Read(); err != nil {
					t.Fatal(err)
				}
				if snap.Host.Count() > 0 && len(snap.Cgroups) > 0 {
					break
				}
			}
			var inCgroups uint64
			for _, h := range snap.Cgroups {
				inCgroups += h.Count()
			}
			if snap.Host.Count() == 0 || inCgroups == 0 || snap.Host.Count() < inCgroups+snap.Overflow.Count() || snap.Host.SumNS == 0 {
				t.Errorf("host %d waits (%d ns), cgroups %d, overflow %d", snap.Host.Count(), snap.Host.SumNS, inCgroups, snap.Overflow.Count())
			}
			stats, on, err := p.Stats()
			if err != nil || !on || len(stats) != 3 {
				t.Errorf("Stats() = %+v, %v, %v", stats, on, err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Read(); err == nil {
				t.Error("Read works after Close")
			}
		})
	}
}

// TestLoadHostOnly (root): without a cgroup hierarchy the probe counts host-wide only,
// and its per-cgroup maps take next to no memory.
func TestLoadHostOnly(t *testing.T) {
	testenv.RequireRoot(t)
	p, err := Load(Options{SysFS: "/sys", Cgroups: CgroupNone})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	mem, err := p.MapBytes()
	if err != nil {
		t.Fatal(err)
	}
	if mem[mapCgroupHist] > 4096 {
		t.Errorf("%s takes %d bytes with no cgroups", mapCgroupHist, mem[mapCgroupHist])
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap, err := p.Read()
		if err != nil {
			t.Fatal(err)
		}
		if snap.Cgroups != nil || snap.Overflow.Count() != 0 {
			t.Fatalf("cgroups with no cgroup mode: %+v", snap)
		}
		if snap.Host.Count() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no waits counted in 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpuHierarchy is where this host's cpu controller is mounted, and the probe's mode for it.
func cpuHierarchy(t *testing.T) (cgroup.Hierarchy, CgroupMode) {
	t.Helper()
	h, err := cgroup.Find("/proc", "/sys", "cpu")
	if err != nil {
		t.Fatal(err)
	}
	if h.V1 {
		return h, CgroupV1
	}
	return h, CgroupV2
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestCgroupSlots (root): busy tasks in a test cgroup wait, and the waits are charged to
// it, not to an idle cgroup beside it; its counts only grow; once it is removed, Free
// returns its final counts and its slot serves the next cgroup.
func TestCgroupSlots(t *testing.T) {
	testenv.RequireRoot(t)
	for name, progs := range map[string]programs{"task-storage": taskStorage, "tid-table": tidTable} {
		t.Run(name, func(t *testing.T) { testCgroupSlots(t, progs) })
	}
}

func testCgroupSlots(t *testing.T, progs programs) {
	h, mode := cpuHierarchy(t)
	p, err := load(Options{SysFS: "/sys", Cgroups: mode}, progs)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pid := os.Getpid()
	busyDir := testenv.Cgroup(t, h.Dir, "picket-runqlat-busy-"+itoa(pid))
	idleDir := testenv.Cgroup(t, h.Dir, "picket-runqlat-idle-"+itoa(pid))
	busy, idle := inode(t, busyDir), inode(t, idleDir)
	testenv.Sleep(t, idleDir)
	stop := testenv.Spin(t, busyDir, 0, 4)

	var last Hist
	ms := BucketOf(1_000_000) // waits over 1 ms are in the buckets after this one
	longWaits := func(h Hist) (n uint64) {
		for _, b := range h.Buckets[ms+1:] {
			n += b
		}
		return n
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		time.Sleep(100 * time.Millisecond)
		snap, err := p.Read()
		if err != nil {
			t.Fatal(err)
		}
		cur := snap.Cgroups[busy]
		if _, ok := cur.Sub(&last); !ok {
			t.Fatalf("busy cgroup went backwards: %+v after %+v", cur, last)
		}
		last = cur
		if snap.Host.Count() < cur.Count() {
			t.Fatalf("host %d waits, fewer than the busy cgroup's %d", snap.Host.Count(), cur.Count())
		}
		if longWaits(cur) >= 30 {
			if n := longWaits(snap.Cgroups[idle]); n > 3 {
				t.Errorf("the idle cgroup has %d waits over 1 ms", n)
			}
			t.Logf("busy cgroup: %d waits, %d over 1 ms, mean %.0f µs; idle: %d waits", cur.Count(), longWaits(cur),
				float64(cur.SumNS)/float64(cur.Count())/1000, snap.Cgroups[idle].Count())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("busy cgroup: %d waits over 1 ms after 20 s, want 30: %+v", longWaits(cur), cur)
		}
	}

	stop()
	if err := os.Remove(busyDir); err != nil {
		t.Fatal(err)
	}
	final, err := p.Free([]uint64{busy, busy})
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := final[busy]; !ok || f.Count() < last.Count() || len(final) != 1 {
		t.Errorf("Free returned %+v, want the busy cgroup's counts, at least %d waits", final, last.Count())
	}
	if final, err := p.Free([]uint64{busy}); err != nil || len(final) != 0 {
		t.Errorf("freeing again: %v, %v", final, err)
	}
	snap, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Cgroups[busy]; ok {
		t.Error("a freed cgroup is still read")
	}
}

// TestCgroupV2 (root): charged to the unified hierarchy, waits go to the task's v2
// cgroup, whichever hierarchy the cpu controller is on (a hybrid host has both).
func TestCgroupV2(t *testing.T) {
	testenv.RequireRoot(t)
	var dir string
	for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(d + "/cgroup.controllers"); err == nil {
			dir = d
			break
		}
	}
	testenv.Require(t, dir != "", "no cgroup v2 hierarchy mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	p, err := Load(Options{SysFS: "/sys", Cgroups: CgroupV2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	busy := testenv.Cgroup(t, dir, "picket-runqlat-v2-"+itoa(os.Getpid()))
	id := inode(t, busy)
	testenv.Spin(t, busy, 0, 3)
	deadline := time.Now().Add(20 * time.Second)
	for {
		time.Sleep(100 * time.Millisecond)
		snap, err := p.Read()
		if err != nil {
			t.Fatal(err)
		}
		if h := snap.Cgroups[id]; h.Count() >= 30 {
			t.Logf("v2 cgroup %s: %d waits, mean %.0f µs", busy, h.Count(), float64(h.SumNS)/float64(h.Count())/1000)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("v2 cgroup %s: %d waits after 20 s, want 30", busy, snap.Cgroups[id].Count())
		}
	}
}

// TestOverflow (root): with one slot, the first cgroup to wait takes it and the busy test
// cgroup's waits count in the overflow; a slot freed goes to the next cgroup that waits.
func TestOverflow(t *testing.T) {
	testenv.RequireRoot(t)
	h, mode := cpuHierarchy(t)
	p, err := load(Options{SysFS: "/sys", Cgroups: mode, slots: 1}, taskStorage)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	busy := testenv.Cgroup(t, h.Dir, "picket-runqlat-overflow-"+itoa(os.Getpid()))
	busyID := inode(t, busy)
	testenv.Spin(t, busy, 0, 3)
	var holder uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		time.Sleep(100 * time.Millisecond)
		snap, err := p.Read()
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Cgroups) > 1 {
			t.Fatalf("%d cgroups hold the one slot", len(snap.Cgroups))
		}
		for id := range snap.Cgroups {
			holder = id
		}
		if holder != busyID && snap.Overflow.Count() >= 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: slot held by cgroup %d (busy is %d), %d waits in overflow", holder, busyID, snap.Overflow.Count())
		}
	}
	// Pretend the holder is gone: its slot goes back, and some cgroup takes it.
	if final, err := p.Free([]uint64{holder}); err != nil || len(final) != 1 {
		t.Fatalf("Free = %v, %v", final, err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		time.Sleep(100 * time.Millisecond)
		snap, err := p.Read()
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Cgroups) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a freed slot was not taken again in 20 s")
		}
	}
}

func itoa(n int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}

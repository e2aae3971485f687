package oom

import (
	"context"
	"errors"
	"maps"
	"os"
	"slices"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/picket-agent/picket/agent/testenv"
	"github.com/picket-agent/picket/bpf/probe"
)

// TestSpec: the committed object parses, holds the programs, maps and constant the Go
// side names, and the record layout is the one oom.bpf.c writes.
func TestSpec(t *testing.T) {
	spec, err := loadOom()
	if err != nil {
		t.Fatal(err)
	}
	progs := slices.Sorted(maps.Keys(spec.Programs))
	if want := []string{progTPBTF, progRawTP}; !slices.Equal(progs, want) {
		t.Errorf("programs %v, want %v", progs, want)
	}
	for name, typ := range map[string]ebpf.ProgramType{progTPBTF: ebpf.Tracing, progRawTP: ebpf.RawTracepoint} {
		ps := spec.Programs[name]
		if ps == nil || ps.Type != typ || ps.AttachTo != Hook {
			t.Errorf("%s: %+v, want type %s attached to %s", name, ps, typ, Hook)
			continue
		}
		refs := probe.References(ps)
		for _, m := range []string{mapEvents, mapCounts, mapMemcgKills, mapProcs, ".rodata"} {
			if !refs[m] {
				t.Errorf("%s does not use map %s (uses %v)", name, m, refs)
			}
		}
	}
	if m := spec.Maps[mapEvents]; m == nil || m.Type != ebpf.RingBuf || m.MaxEntries != 64<<10 {
		t.Errorf("%s: %+v, want a 64 KiB ring buffer", mapEvents, m)
	}
	if m := spec.Maps[mapCounts]; m == nil || m.Type != ebpf.Array || m.MaxEntries != 2 || m.ValueSize != 8 {
		t.Errorf("%s: %+v, want a two-entry u64 array", mapCounts, m)
	}
	for _, name := range []string{mapMemcgKills, mapProcs} {
		if m := spec.Maps[name]; m == nil || m.Type != ebpf.LRUHash || m.MaxEntries != 128 {
			t.Errorf("%s: %+v, want an LRU hash of 128", name, m)
		}
	}
	for _, name := range []string{varMemcgV1, varMargin, varMemcgOOMLo, varMemcgOOMHi} {
		if v := spec.Variables[name]; v == nil || !v.Constant() {
			t.Errorf("%s: %+v, want a constant", name, v)
		}
	}
	var ev *btf.Struct
	if err := spec.Types.TypeByName("oom_event", &ev); err != nil {
		t.Fatal(err)
	}
	if got, want := uintptr(ev.Size), unsafe.Sizeof(oomOomEvent{}); got != want {
		t.Errorf("struct oom_event is %d bytes in the object, %d in Go", got, want)
	}
}

func param(t btf.Type) btf.FuncParam { return btf.FuncParam{Type: t} }

// TestVariant: the 6.8+ prototype is the eBPF probe, the old (int pid) one the kernel
// log, and anything else is refused with the prototype spelled out. The prototypes are
// hand-made BTF, as the kernel's would be: Debian's kernels all have the new one.
func TestVariant(t *testing.T) {
	task := &btf.Pointer{Target: &btf.Struct{Name: "task_struct"}}
	uid := &btf.Typedef{Name: "uid_t", Type: &btf.Int{Name: "unsigned int", Size: 4}}
	pid := &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	for _, c := range []struct {
		name    string
		params  []btf.FuncParam
		variant string
		err     error
	}{
		{"task uid", []btf.FuncParam{param(task), param(uid)}, VariantTask, nil},
		{"typedef'd task", []btf.FuncParam{param(&btf.Typedef{Name: "t", Type: task}), param(uid)}, VariantTask, nil},
		{"pid", []btf.FuncParam{param(pid)}, VariantPID, nil},
		{"empty", nil, "", probe.ErrPrototype},
		{"pid and more", []btf.FuncParam{param(pid), param(uid)}, "", probe.ErrPrototype},
		{"garbage", []btf.FuncParam{param(uid), param(task)}, "", probe.ErrPrototype},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := Variant(c.params)
			if v != c.variant || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
				t.Errorf("Variant(%s) = %q, %v, want %q, %v", probe.FormatProto(c.params), v, err, c.variant, c.err)
			}
		})
	}
}

// TestDecode: a record becomes an Event: strings cut at their NUL, pages turned to bytes,
// cut names noticed, the path complete only when every level is named; the constraint as
// the stack told it, or guessed from a cgroup at its limit.
func TestDecode(t *testing.T) {
	var r oomOomEvent
	r.Kills, r.Pid, r.Tgid, r.Uid = 2, 42, 41, 1000
	copy8(r.Comm[:], "stress-ng-vm")
	r.CgroupId, r.CgroupLevel, r.NamesLen = 7, 2, 2
	copy8(r.Names[0][:], "leaf")
	copy8(r.Names[1][:], "parent")
	copy8(r.Names[2][:], "stale")
	r.LimitUp, r.LimitPages = 1, 12800
	r.RssAnon, r.RssFile, r.RssShmem, r.OomScoreAdj = 3, 2, 1, -17
	p := &Probe{page: 4096}
	var e Event
	p.decode(&r, &e)
	if e.Kills != 2 || e.PID != 42 || e.TGID != 41 || e.UID != 1000 || e.Comm != "stress-ng-vm" || e.CgroupID != 7 ||
		!slices.Equal(e.Names, []string{"leaf", "parent"}) || !e.Complete() || e.Constraint() != "memcg" || e.ConstraintFrom != "usage" ||
		e.LimitBytes != 50<<20 || e.RSSAnon != 3*4096 || e.RSSFile != 2*4096 || e.RSSShmem != 4096 || e.OOMScoreAdj != -17 {
		t.Errorf("decoded %+v", e)
	}

	long := make([]byte, nameLen-1)
	for i := range long {
		long[i] = 'x'
	}
	r.CgroupLevel, r.NamesLen, r.LimitUp = 3, 1, -1
	copy8(r.Names[0][:], string(long))
	p.decode(&r, &e)
	if !e.NameCut || e.Complete() || e.Constraint() != "global" || len(e.Names) != 1 {
		t.Errorf("a full-length name and a missing level: %+v", e)
	}

	for _, c := range []struct {
		constraint uint8
		limitUp    int8
		memcg      bool
		from       string
	}{
		{constraintMemcg, -1, true, "stack"},
		{constraintMemcg, 0, true, "stack"},
		{constraintGlobal, -1, false, "stack"},
		{0, 0, true, "usage"},
		{0, -1, false, "usage"},
	} {
		r.Constraint, r.LimitUp = c.constraint, c.limitUp
		p.decode(&r, &e)
		if e.Memcg != c.memcg || e.ConstraintFrom != c.from || e.LimitUp != int(c.limitUp) {
			t.Errorf("constraint %d, limit_up %d: memcg %v from %q, want %v from %q", c.constraint, c.limitUp, e.Memcg, e.ConstraintFrom, c.memcg, c.from)
		}
	}
}

func copy8(dst []int8, s string) {
	for i := range dst {
		dst[i] = 0
	}
	for i := range min(len(s), len(dst)-1) {
		dst[i] = int8(s[i])
	}
}

// TestLoad (root): the probe loads and attaches on this kernel, as tp_btf and, forced, as
// raw_tp; it creates only the maps its program uses, reports their memory, and Run returns
// once ctx ends, releasing it all.
func TestLoad(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []struct{ tp, raw, kind string }{{progTPBTF, progRawTP, "tp_btf"}, {"", progRawTP, "raw_tp"}} {
		t.Run(c.kind, func(t *testing.T) { testLoad(t, c.tp, c.raw, c.kind) })
	}
}

func testLoad(t *testing.T, tp, raw, kind string) {
	p, err := load(Options{SysFS: "/sys", MemcgV1: true, Stats: true}, tp, raw)
	if err != nil {
		t.Fatal(err)
	}
	att := p.Attached()
	if len(att) != 1 || att[0].Hook != Hook || att[0].Kind != kind {
		t.Fatalf("attached %+v, want %s", att, kind)
	}
	t.Logf("attached %s as %s", att[0].Program, att[0].Kind)
	mem, err := p.MapBytes()
	if err != nil {
		t.Fatal(err)
	}
	if names := slices.Sorted(maps.Keys(mem)); !slices.Equal(names, []string{".rodata", mapCounts, mapEvents, mapMemcgKills, mapProcs}) {
		t.Errorf("maps created: %v, want only the ones the program uses", names)
	}
	total := uint64(0)
	for n, b := range mem {
		t.Logf("map %s: %d bytes", n, b)
		total += b
	}
	t.Logf("maps total: %d bytes", total)
	if n, err := p.Counts(); err != nil || n != (Counts{}) {
		t.Errorf("Counts() = %+v, %v", n, err)
	}
	if p.Source() != kind {
		t.Errorf("Source() = %q, want %q", p.Source(), kind)
	}
	// Root reads kernel addresses: the constraint comes from the stack.
	if err := p.StackConstraint(); err != nil {
		t.Errorf("StackConstraint() = %v", err)
	}
	stats, on, err := p.Stats()
	if err != nil || !on || len(stats) != 1 {
		t.Errorf("Stats() = %+v, %v, %v", stats, on, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Another process on the host may be OOM-killed meanwhile: only a kill of this test's
	// own process would be a wrong event here.
	self := uint32(os.Getpid())
	if err := p.Run(ctx, func(e *Event) {
		if e.TGID == self {
			t.Errorf("an event for this test's process, which was not killed: %+v", e)
		} else {
			t.Logf("an OOM kill elsewhere on the host meanwhile: %+v", e)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Stats(); err == nil {
		t.Error("Stats works after Run returned: the probe was not closed")
	}
	// The counts outlive the probe: a tick racing with shutdown reads the last ones.
	if _, err := p.Counts(); err != nil {
		t.Errorf("Counts() after Close: %v", err)
	}
}

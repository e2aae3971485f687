package oom

import (
	"context"
	"errors"
	"maps"
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
		for _, m := range []string{mapEvents, mapLost, ".rodata"} {
			if !refs[m] {
				t.Errorf("%s does not use map %s (uses %v)", name, m, refs)
			}
		}
	}
	if m := spec.Maps[mapEvents]; m == nil || m.Type != ebpf.RingBuf || m.MaxEntries != 64<<10 {
		t.Errorf("%s: %+v, want a 64 KiB ring buffer", mapEvents, m)
	}
	if m := spec.Maps[mapLost]; m == nil || m.Type != ebpf.Array || m.MaxEntries != 1 || m.ValueSize != 8 {
		t.Errorf("%s: %+v, want a one-entry u64 array", mapLost, m)
	}
	if v := spec.Variables[varMemcgV1]; v == nil || !v.Constant() {
		t.Errorf("%s: %+v, want a constant", varMemcgV1, v)
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

// TestCheckProto: the 6.8+ prototype loads, the old one is refused with ErrOldKernel, and
// anything else with the prototype spelled out.
func TestCheckProto(t *testing.T) {
	task := &btf.Pointer{Target: &btf.Struct{Name: "task_struct"}}
	uid := &btf.Typedef{Name: "uid_t", Type: &btf.Int{Name: "unsigned int", Size: 4}}
	pid := &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	for _, c := range []struct {
		name   string
		params []btf.FuncParam
		want   error
	}{
		{"task uid", []btf.FuncParam{param(task), param(uid)}, nil},
		{"pid", []btf.FuncParam{param(pid)}, ErrOldKernel},
		{"empty", nil, probe.ErrPrototype},
		{"garbage", []btf.FuncParam{param(uid), param(task)}, probe.ErrPrototype},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkProto(c.params)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Errorf("checkProto(%s) = %v, want %v", probe.FormatProto(c.params), err, c.want)
			}
		})
	}
}

// TestDecode: a record becomes an Event: strings cut at their NUL, pages turned to bytes,
// cut names noticed, the path complete only when every level is named.
func TestDecode(t *testing.T) {
	var r oomOomEvent
	r.Pid, r.Tgid, r.Uid = 42, 41, 1000
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
	if e.PID != 42 || e.TGID != 41 || e.UID != 1000 || e.Comm != "stress-ng-vm" || e.CgroupID != 7 ||
		!slices.Equal(e.Names, []string{"leaf", "parent"}) || !e.Complete() || e.Constraint() != "memcg" ||
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
	if names := slices.Sorted(maps.Keys(mem)); !slices.Equal(names, []string{".rodata", mapEvents, mapLost}) {
		t.Errorf("maps created: %v, want only the ones the program uses", names)
	}
	total := uint64(0)
	for n, b := range mem {
		t.Logf("map %s: %d bytes", n, b)
		total += b
	}
	t.Logf("maps total: %d bytes", total)
	if lost, err := p.Lost(); err != nil || lost != 0 {
		t.Errorf("Lost() = %d, %v", lost, err)
	}
	stats, on, err := p.Stats()
	if err != nil || !on || len(stats) != 1 {
		t.Errorf("Stats() = %+v, %v, %v", stats, on, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx, func(*Event) { t.Error("an event without an OOM kill") }); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Lost(); err == nil {
		t.Error("Lost works after Run returned: the probe was not closed")
	}
}

package runqlat

import (
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/picket-agent/picket/agent/testenv"
)

// Sizes of kernel structures in the kernel's memory accounting of maps (map_mem_usage),
// as 6.18 has them; TestMapBytes checks them against what this kernel reports.
const (
	sizeofArray    = 312 // struct bpf_array
	sizeofHtab     = 832 // struct bpf_htab
	sizeofHtabElem = 48  // struct htab_elem, before its key and value
	sizeofBucket   = 16  // struct bucket
	sizeofQueue    = 312 // struct bpf_queue_stack
	htabLockCount  = 8   // HASHTAB_MAP_LOCK_COUNT
)

func round8(n uint32) uint64 { return uint64(n+7) &^ 7 }

// mapBytes is the kernel memory of map m with cpus possible CPUs, by the kernel's own
// formulas (array_map_mem_usage, htab_map_mem_usage, queue_stack_map_mem_usage). Task
// storage counts only its buckets here: each task's stamp is charged when it is made.
func mapBytes(m *ebpf.MapSpec, cpus int) uint64 {
	n, c := uint64(m.MaxEntries), uint64(cpus)
	switch m.Type {
	case ebpf.PerCPUArray:
		return sizeofArray + n*8 + n*round8(m.ValueSize)*c
	case ebpf.Array:
		return sizeofArray + n*round8(m.ValueSize)
	case ebpf.Hash:
		buckets := uint64(1) << bits.Len64(n-1)
		elem := sizeofHtabElem + round8(m.KeySize) + round8(m.ValueSize)
		// Preallocated, with one spare element per CPU and a per-CPU pointer to it.
		return sizeofHtab + sizeofBucket*buckets + 4*c*htabLockCount + elem*(n+c) + 8*c
	case ebpf.Queue:
		return sizeofQueue + (n+1)*uint64(m.ValueSize)
	}
	return 0
}

// layout is the probe's maps as Load creates them with store for the stamps.
func layout(t testing.TB, store string) map[string]*ebpf.MapSpec {
	t.Helper()
	spec, err := loadRunqlat()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*ebpf.MapSpec{}
	for _, name := range []string{mapCPU, mapCgroupHist, mapCgroupSlot, mapFreeSlots, store} {
		out[name] = spec.Maps[name]
	}
	return out
}

// TestMapMemory reports the kernel memory of the probe's maps on a 64-CPU host, where the
// per-CPU histograms dominate, and holds the per-cgroup part under 4 MiB.
func TestMapMemory(t *testing.T) {
	for _, store := range []string{mapStartTask, mapStartTID} {
		var total uint64
		var lines string
		layout := layout(t, store)
		for _, name := range slices.Sorted(maps.Keys(layout)) {
			b := mapBytes(layout[name], 64)
			total += b
			lines += fmt.Sprintf(" %s %d;", name, b)
		}
		t.Logf("64 CPUs, stamps in %s: %d bytes (%.2f MiB):%s", store, total, float64(total)/(1<<20), lines)
		if store == mapStartTask && total > 4<<20 {
			t.Errorf("%d bytes on 64 CPUs, over 4 MiB", total)
		}
	}
}

// TestMapBytes (root): the formulas give what this kernel charges for the maps, with its
// own number of CPUs.
func TestMapBytes(t *testing.T) {
	testenv.RequireRoot(t)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		progs programs
		store string
	}{{taskStorage, mapStartTask}, {tidTable, mapStartTID}} {
		p, err := load(Options{SysFS: "/sys", Cgroups: CgroupV1}, c.progs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.MapBytes()
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		for name, m := range layout(t, c.store) {
			if name == mapStartTask {
				continue
			}
			if want := mapBytes(m, cpus); got[name] != want {
				t.Errorf("%s: the kernel charges %d bytes on %d CPUs, the formula says %d", name, got[name], cpus, want)
			}
		}
	}
}

// Package runqlat measures run-queue latency: how long tasks wait between becoming
// runnable and running. Histograms of the waits (log2 buckets of microseconds) are kept
// in the kernel, host-wide and per cgroup, and read by user space once per tick; no event
// ever wakes user space.
//
// Three programs run on the scheduler's tracepoints: sched_wakeup and sched_wakeup_new
// stamp a task's start, sched_switch stamps a prev that stays runnable and ends the wait
// of next. The stamps live in task-local storage (tp_btf, kernels from 5.11) or, where
// that does not load, in a table indexed by thread id (tp_btf, else raw_tp); Load picks.
//
// Per cgroup, a wait counts for the cgroup of the task that waited: its cgroup in the cpu
// controller's hierarchy on cgroup v1, in the unified hierarchy on v2. The kernel hands
// each new cgroup one of MaxCgroups histogram slots; when none is left, its waits count
// in an overflow histogram. Cgroups that are gone must be released with Free, which is
// also how their slots come back.
//
// Read turns the kernel's numbers into monotonic 64-bit totals: the kernel keeps per-CPU
// 32-bit buckets that wrap, and Read sums them modulo 2^32 and adds the difference from its
// last reading. That is exact as long as fewer than 2^32 waits land in one bucket of one
// histogram between two reads (over 10 minutes at 6 million waits a second).
package runqlat

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/picket-agent/picket/bpf/probe"
)

// The tracepoints the probe attaches to.
const (
	HookWakeup    = "sched_wakeup"
	HookWakeupNew = "sched_wakeup_new"
	HookSwitch    = "sched_switch"
)

// Hooks are all of them.
var Hooks = []string{HookWakeup, HookWakeupNew, HookSwitch}

// Names in the object (see runqlat.bpf.c), pinned by the tests.
const (
	mapCPU         = "rq_cpu"
	mapCgroupHist  = "rq_cgroup_hist"
	mapCgroupSlot  = "rq_cgroup_slot"
	mapFreeSlots   = "rq_free_slots"
	mapStartTask   = "rq_start"
	mapStartTID    = "rq_start_tid"
	varCgroupMode  = "cgroup_mode"
	varSwitchState = "switch_has_state"
)

// programs names, per hook, the program variants one stamp store uses: a tp_btf program
// and its raw_tp fallback ("" for none).
type programs map[string][2]string

var (
	// taskStorage keeps start stamps in task-local storage: tp_btf only, because
	// bpf_task_storage_get needs a typed task pointer.
	taskStorage = programs{
		HookWakeup:    {"rq_wakeup", ""},
		HookWakeupNew: {"rq_wakeup_new", ""},
		HookSwitch:    {"rq_switch", ""},
	}
	// tidTable keeps them in a table indexed by thread id.
	tidTable = programs{
		HookWakeup:    {"rq_wakeup_t", "rq_wakeup_raw"},
		HookWakeupNew: {"rq_wakeup_new_t", "rq_wakeup_new_raw"},
		HookSwitch:    {"rq_switch_t", "rq_switch_raw"},
	}
)

// NumBuckets is the number of histogram buckets: bucket k < NumBuckets-1 counts waits of
// at most 2^k µs (and more than the bucket before); the last counts waits over 2^24 µs
// (16.8 s). RQ_BUCKETS in runqlat.bpf.c.
const NumBuckets = 26

// MaxCgroups is how many cgroups get a histogram of their own (RQ_CGROUPS).
const MaxCgroups = 512

// Bound returns the upper bound of bucket k in microseconds, and false for the last
// bucket, which has none.
func Bound(k int) (uint64, bool) {
	if k < 0 || k >= NumBuckets-1 {
		return 0, false
	}
	return 1 << k, true
}

// BucketOf returns the bucket of a wait of ns nanoseconds: the smallest k with
// ns ≤ 1000·2^k, or the last bucket. It is the kernel's bucket(), for tests and fakes.
func BucketOf(ns uint64) int {
	us := ns/1000 + min(ns%1000, 1) // ⌈ns/1000⌉ without overflow
	if us <= 1 {
		return 0
	}
	return min(bits.Len64(us-1), NumBuckets-1)
}

// Hist is a histogram of waits, counting since the probe started (or since the cgroup got
// its slot).
type Hist struct {
	// Buckets counts waits per bucket (see NumBuckets), not cumulatively.
	Buckets [NumBuckets]uint64
	// SumNS is the total of the waits in nanoseconds.
	SumNS uint64
}

// Count returns the number of waits.
func (h Hist) Count() uint64 {
	var n uint64
	for _, b := range h.Buckets {
		n += b
	}
	return n
}

// Add adds o to h.
func (h *Hist) Add(o *Hist) {
	for i, b := range o.Buckets {
		h.Buckets[i] += b
	}
	h.SumNS += o.SumNS
}

// Sub returns h − o per bucket, and false when some bucket of o exceeds h's (h is not a
// later reading of the same histogram).
func (h *Hist) Sub(o *Hist) (Hist, bool) {
	var d Hist
	for i := range h.Buckets {
		if h.Buckets[i] < o.Buckets[i] {
			return Hist{}, false
		}
		d.Buckets[i] = h.Buckets[i] - o.Buckets[i]
	}
	if h.SumNS < o.SumNS {
		return Hist{}, false
	}
	d.SumNS = h.SumNS - o.SumNS
	return d, true
}

// CgroupMode says which cgroup a wait is charged to.
type CgroupMode uint8

// The modes; the values are the kernel's (cgroup_mode in runqlat.bpf.c).
const (
	// CgroupNone keeps only the host-wide histogram.
	CgroupNone CgroupMode = 0
	// CgroupV1 charges the task's cgroup in the cpu controller's v1 hierarchy.
	CgroupV1 CgroupMode = 1
	// CgroupV2 charges the task's cgroup in the unified (v2) hierarchy.
	CgroupV2 CgroupMode = 2
)

// Options configure Load.
type Options struct {
	// SysFS is where sysfs is mounted, for the BTF check.
	SysFS string
	// Cgroups says which hierarchy the per-cgroup histograms follow.
	Cgroups CgroupMode
	// Stats turns on BPF run-time statistics (see probe.Options).
	Stats bool

	// slots, when not 0, replaces MaxCgroups (tests fill them).
	slots uint32
	// readState makes sched_switch read prev's state from the task, as on kernels before
	// 5.18, whose tracepoint has no prev_state (tests try it on a newer one).
	readState bool
}

// Stamps names where the probe keeps its start stamps.
type Stamps string

// The stamp stores.
const (
	StampsTaskStorage Stamps = "task storage"
	// StampsTable is a table of 65536 stamps indexed by thread id, which loses the
	// wait of a task whose slot another task's wakeup takes (counted in Missed).
	StampsTable Stamps = "tid table"
)

// Snapshot is one reading of the probe.
type Snapshot struct {
	Host Hist
	// Cgroups are the histograms of the cgroups that have a slot, by cgroup id (the inode
	// of the cgroup's directory in its hierarchy).
	Cgroups map[uint64]Hist
	// Overflow counts the waits of cgroups that found no slot free.
	Overflow Hist
	// Missed counts waits that were not measured because the kernel had no room for the
	// task's start stamp (task storage not allocated, or the table slot taken).
	Missed uint64
}

// Probe is the loaded and attached probe. Its methods are safe for concurrent use.
type Probe struct {
	// Cost is the programs' run time and count, the maps' memory, how they attached.
	probe.Cost

	coll   *probe.Collection
	stamps Stamps
	// why is the reason task-local storage did not load, when stamps is StampsTable.
	why  error
	mode CgroupMode

	cpu, hist, slots, free *ebpf.Map

	mu     sync.Mutex
	closed bool
	host   reader
	missed wrap32
	// bySlot follows each slot's histogram, slot 0 being the overflow.
	bySlot map[uint32]*slotReader
	// cpuBuf and histBuf are the per-CPU read buffers, reused.
	cpuBuf  []runqlatCpuState
	histBuf []runqlatHist
}

// slotReader is one slot's reader and the cgroup it belongs to.
type slotReader struct {
	id uint64
	r  reader
}

// Load checks BTF, privileges and the tracepoints' prototypes, then loads and attaches the
// probe, with task-local storage for the stamps if it loads, else the tid table. An error
// says why it cannot run here (wrapping probe.ErrNoBTF, probe.ErrPrivilege,
// probe.ErrNoHook or probe.ErrPrototype) or what failed; nothing stays loaded then.
func Load(opts Options) (*Probe, error) {
	p, err := load(opts, taskStorage)
	if err == nil {
		return p, nil
	}
	if errors.Is(err, probe.ErrNoBTF) || errors.Is(err, probe.ErrPrivilege) ||
		errors.Is(err, probe.ErrNoHook) || errors.Is(err, probe.ErrPrototype) {
		return nil, err
	}
	p, err2 := load(opts, tidTable)
	if err2 != nil {
		return nil, fmt.Errorf("with task-local storage: %w; with a tid table: %w", err, err2)
	}
	p.why = err
	return p, nil
}

// load is Load with one stamp store.
func load(opts Options, progs programs) (_ *Probe, err error) {
	spec, err := loadRunqlat()
	if err != nil {
		return nil, err
	}
	coll, err := probe.New(spec, probe.Options{SysFS: opts.SysFS, Stats: opts.Stats})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			coll.Close()
		}
	}()
	hasState, err := checkHooks(coll)
	if err != nil {
		return nil, err
	}
	s := coll.Spec()
	if err := s.Variables[varCgroupMode].Set(uint8(opts.Cgroups)); err != nil {
		return nil, fmt.Errorf("setting %s: %w", varCgroupMode, err)
	}
	if err := s.Variables[varSwitchState].Set(hasState && !opts.readState); err != nil {
		return nil, fmt.Errorf("setting %s: %w", varSwitchState, err)
	}
	slots := uint32(MaxCgroups)
	if opts.slots != 0 {
		slots = opts.slots
	}
	if opts.Cgroups == CgroupNone {
		// The program still names the per-cgroup maps (the verifier drops the code
		// that uses them): make them as small as they can be.
		slots = 1
	}
	s.Maps[mapCgroupHist].MaxEntries = slots + 1
	s.Maps[mapCgroupSlot].MaxEntries = slots
	s.Maps[mapFreeSlots].MaxEntries = slots

	// The free slots go in before any program runs, so the first cgroups find them.
	free, err := coll.Map(mapFreeSlots)
	if err != nil {
		return nil, err
	}
	for slot := uint32(1); slot <= slots && opts.Cgroups != CgroupNone; slot++ {
		if err := free.Update(nil, slot, ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("filling %s: %w", mapFreeSlots, err)
		}
	}
	// sched_switch last: it ends waits, which only mean something once the wakeups
	// are stamped.
	for _, hook := range []string{HookWakeup, HookWakeupNew, HookSwitch} {
		v := progs[hook]
		if err := coll.Attach(hook, v[0], v[1]); err != nil {
			return nil, err
		}
	}
	coll.Loaded()
	p := &Probe{Cost: coll.Cost(), coll: coll, stamps: StampsTable, mode: opts.Cgroups, free: free, bySlot: map[uint32]*slotReader{}}
	if progs[HookSwitch][0] == taskStorage[HookSwitch][0] {
		p.stamps = StampsTaskStorage
	}
	for _, m := range []struct {
		name string
		m    **ebpf.Map
	}{{mapCPU, &p.cpu}, {mapCgroupHist, &p.hist}, {mapCgroupSlot, &p.slots}} {
		if *m.m, err = coll.Map(m.name); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// checkHooks checks the prototypes of the three tracepoints and reports whether
// sched_switch passes prev_state (5.18+).
func checkHooks(coll *probe.Collection) (bool, error) {
	var hasState bool
	for _, hook := range Hooks {
		params, err := coll.Hook(hook)
		if err != nil {
			return false, err
		}
		if hook == HookSwitch {
			hasState, err = checkSwitch(params)
		} else {
			err = checkWakeup(hook, params)
		}
		if err != nil {
			return false, err
		}
	}
	return hasState, nil
}

// isTask reports whether t is a struct task_struct pointer.
func isTask(t btf.Type) bool {
	if p, ok := btf.UnderlyingType(t).(*btf.Pointer); ok {
		if s, ok := btf.UnderlyingType(p.Target).(*btf.Struct); ok && s.Name == "task_struct" {
			return true
		}
	}
	return false
}

// checkWakeup accepts (struct task_struct *).
func checkWakeup(hook string, params []btf.FuncParam) error {
	if len(params) == 1 && isTask(params[0].Type) {
		return nil
	}
	return fmt.Errorf("%s%s: %w", hook, probe.FormatProto(params), probe.ErrPrototype)
}

// checkSwitch accepts (bool preempt, prev, next) and, from 5.18, (…, unsigned int
// prev_state); it reports which.
func checkSwitch(params []btf.FuncParam) (bool, error) {
	if (len(params) == 3 || len(params) == 4) && isTask(params[1].Type) && isTask(params[2].Type) {
		if len(params) == 3 {
			return false, nil
		}
		if _, ok := btf.UnderlyingType(params[3].Type).(*btf.Int); ok {
			return true, nil
		}
	}
	return false, fmt.Errorf("%s%s: %w", HookSwitch, probe.FormatProto(params), probe.ErrPrototype)
}

// Stamps reports where the start stamps are kept and, for the table, why task-local
// storage was not used.
func (p *Probe) Stamps() (Stamps, error) { return p.stamps, p.why }

// Read returns the histograms, as totals since Load (for a cgroup: since it got its
// slot, which is since its first wait unless it was freed and came back).
func (p *Probe) Read() (Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Snapshot{}, errors.New("runqlat probe is closed")
	}
	var snap Snapshot
	var errs []error
	// The cgroups first, then the host: the kernel counts a wait for the host before its
	// cgroup, so the host's counts are never below the sum of the cgroups'.
	if p.mode != CgroupNone {
		errs = append(errs, p.readCgroups(&snap))
	}
	if err := p.cpu.Lookup(uint32(0), &p.cpuBuf); err != nil {
		return snap, errors.Join(append(errs, fmt.Errorf("reading %s: %w", mapCPU, err))...)
	}
	var missed uint32
	for i := range p.cpuBuf {
		p.host.add(&p.cpuBuf[i].Host)
		missed += p.cpuBuf[i].Missed
	}
	snap.Host = p.host.done()
	snap.Missed = p.missed.update(missed)
	return snap, errors.Join(errs...)
}

// readCgroups reads the slots in use into snap. Called with p.mu held.
func (p *Probe) readCgroups(snap *Snapshot) error {
	owners := map[uint32]uint64{0: 0}
	var id uint64
	var slot uint32
	it := p.slots.Iterate()
	for it.Next(&id, &slot) {
		owners[slot] = id
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", mapCgroupSlot, err)
	}
	snap.Cgroups = make(map[uint64]Hist, len(owners))
	var errs []error
	for slot, id := range owners {
		h, err := p.readSlot(slot, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if slot == 0 {
			snap.Overflow = h
		} else {
			snap.Cgroups[id] = h
		}
	}
	return errors.Join(errs...)
}

// readSlot reads slot, which belongs to cgroup id now. Called with p.mu held.
func (p *Probe) readSlot(slot uint32, id uint64) (Hist, error) {
	if err := p.hist.Lookup(slot, &p.histBuf); err != nil {
		return Hist{}, fmt.Errorf("reading %s[%d]: %w", mapCgroupHist, slot, err)
	}
	sr := p.bySlot[slot]
	if sr == nil || sr.id != id {
		// A slot is zeroed before it is handed out again: a new owner starts at zero.
		sr = &slotReader{id: id}
		p.bySlot[slot] = sr
	}
	for i := range p.histBuf {
		sr.r.add(&p.histBuf[i])
	}
	return sr.r.done(), nil
}

// Free releases the slots of cgroups that no longer exist and returns their final
// histograms (what Read would return for them now). The caller must be sure: the kernel
// may still charge a cgroup that exists to the slot it had, which then belongs to another.
// Ids without a slot are left out.
func (p *Probe) Free(ids []uint64) (map[uint64]Hist, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("runqlat probe is closed")
	}
	out := make(map[uint64]Hist, len(ids))
	var errs []error
	var zero []runqlatHist
	for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
		var slot uint32
		if err := p.slots.Lookup(id, &slot); err != nil {
			if !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("cgroup %d: %w", id, err))
			}
			continue
		}
		if err := p.slots.Delete(id); err != nil {
			errs = append(errs, fmt.Errorf("cgroup %d: %w", id, err))
			continue
		}
		h, err := p.readSlot(slot, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[id] = h
		delete(p.bySlot, slot)
		if zero == nil {
			// readSlot sized the buffer: one histogram per possible CPU.
			zero = make([]runqlatHist, len(p.histBuf))
		}
		if err := p.hist.Update(slot, zero, ebpf.UpdateExist); err != nil {
			// Not handed out again: a slot that kept counts would start its next owner
			// above zero.
			errs = append(errs, fmt.Errorf("zeroing %s[%d]: %w", mapCgroupHist, slot, err))
			continue
		}
		if err := p.free.Update(nil, slot, ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("freeing slot %d: %w", slot, err))
		}
	}
	return out, errors.Join(errs...)
}

// Close detaches the probe and releases its kernel objects. Calling it again is harmless.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return p.coll.Close()
}

// reader turns one histogram's per-CPU 32-bit buckets, which wrap, into 64-bit totals.
// The kernel's per-CPU counts are each the true count modulo 2^32, so their sum modulo
// 2^32 is the true total modulo 2^32: a 32-bit counter like any other, whose difference
// from the last reading is what was added since, as long as that is below 2^32.
type reader struct {
	// sum is the reading in progress: the per-CPU values added up.
	sum   [NumBuckets]uint32
	sumNS uint64
	// last is the previous reading's sum; total what it all adds up to.
	last  [NumBuckets]uint32
	total Hist
}

// add adds one CPU's histogram to the reading in progress.
func (r *reader) add(h *runqlatHist) {
	for i, v := range h.Le {
		r.sum[i] += v
	}
	r.sumNS += h.SumNs
}

// done ends the reading and returns the totals.
func (r *reader) done() Hist {
	for i, v := range r.sum {
		r.total.Buckets[i] += uint64(v - r.last[i])
	}
	r.last = r.sum
	r.sum = [NumBuckets]uint32{}
	// The nanosecond sums are 64-bit in the kernel and do not wrap.
	r.total.SumNS = r.sumNS
	r.sumNS = 0
	return r.total
}

// wrap32 is a 32-bit counter's 64-bit total.
type wrap32 struct {
	last  uint32
	total uint64
}

func (w *wrap32) update(v uint32) uint64 {
	w.total += uint64(v - w.last)
	w.last = v
	return w.total
}

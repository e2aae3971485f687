// Package oom reports the kills of the kernel's OOM killer: a count of them as the kernel
// counts them, and for each killed process what the kernel knew at the moment of the kill:
// the victim's pid, command and uid, its memory use, its memory cgroup (id, names up to 8
// levels, and which cgroup, if any, was at its limit) and whether a cgroup's limit or the
// host ran out of memory.
//
// Where the mark_victim tracepoint passes the victim's task (kernels from 6.8, and the
// stable backports: Debian's 6.1.133 and 5.10.237), an eBPF program (tp_btf, raw_tp where
// tp_btf does not load) counts the kills in the kernel and writes one record per killed
// process into a ring buffer, which Run reads as records arrive. A record that does not
// fit is counted (Counts.Lost), the kill is counted all the same. Where mark_victim passes
// only a pid (older kernels without the backport), Load reads the kernel log (/dev/kmsg)
// instead: see kmsg.go. Load tells the two apart by the tracepoint's prototype in the
// kernel's BTF.
package oom

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/picket-agent/picket/bpf/probe"
)

// Hook is the tracepoint the probe attaches to.
const Hook = "mark_victim"

// Names in the object (see oom.bpf.c), pinned by the tests.
const (
	progTPBTF     = "oom_mark_victim"
	progRawTP     = "oom_victim_raw"
	mapEvents     = "oom_events"
	mapCounts     = "oom_counts"
	mapMemcgKills = "oom_memcg_kills"
	mapProcs      = "oom_procs"
	varMemcgV1    = "memcg_v1"
	varMargin     = "limit_margin_pages"
	varMemcgOOMLo = "memcg_oom_start"
	varMemcgOOMHi = "memcg_oom_end"
)

// Values in the object: keys of oom_counts, and oom_event.constraint.
const (
	countKills = uint32(0) // OOM_COUNT_KILLS
	countLost  = uint32(1) // OOM_COUNT_LOST

	constraintMemcg  = 1 // OOM_MEMCG; OOM_GUESS is 0
	constraintGlobal = 2 // OOM_GLOBAL
)

// nameLen is OOM_NAME_LEN in oom.bpf.c: a name that fills it (less its NUL) may be cut.
const nameLen = 128

// ErrOldKernel means mark_victim has the (int pid) prototype of kernels before 6.8, which
// carries no task to read the cgroup and memory from: kills are read from the kernel log
// then, and this error wraps the reason that could not be done.
var ErrOldKernel = errors.New("mark_victim passes only a pid on this kernel (before 6.8, without the backport in 6.1.133/5.10.237), so OOM kills are read from the kernel log (/dev/kmsg), which needs CAP_SYSLOG (AmbientCapabilities=CAP_SYSLOG) or sysctl kernel.dmesg_restrict=0")

// Variants of Load, as Variant names them.
const (
	// VariantTask is the eBPF probe: mark_victim passes the victim's task.
	VariantTask = "eBPF probe (task, uid)"
	// VariantPID is the kernel log: mark_victim passes only a pid.
	VariantPID = "pid only: kills read from the kernel log (/dev/kmsg, needs CAP_SYSLOG)"
)

// Variant returns how Load reads OOM kills on a kernel whose mark_victim takes params (as
// probe.HookProto returns them): VariantTask, VariantPID, or an error wrapping
// probe.ErrPrototype that spells the prototype out.
func Variant(params []btf.FuncParam) (string, error) {
	if len(params) >= 1 {
		if p, ok := btf.UnderlyingType(params[0].Type).(*btf.Pointer); ok {
			if s, ok := btf.UnderlyingType(p.Target).(*btf.Struct); ok && s.Name == "task_struct" {
				return VariantTask, nil
			}
		}
		if _, ok := btf.UnderlyingType(params[0].Type).(*btf.Int); ok && len(params) == 1 {
			return VariantPID, nil
		}
	}
	return "", fmt.Errorf("%s%s: %w", Hook, probe.FormatProto(params), probe.ErrPrototype)
}

// Options configure Load.
type Options struct {
	// SysFS is where sysfs is mounted: for the BTF check and the huge page size.
	SysFS string
	// ProcFS is where procfs is mounted: the kernel log reader looks up the cgroup of a
	// victim the log does not name there.
	ProcFS string
	// MemcgV1 says the memory controller is on a cgroup v1 hierarchy, where the
	// memory+swap limit (memory.memsw.limit_in_bytes) can also OOM-kill.
	MemcgV1 bool
	// Stats turns on BPF run-time statistics (see probe.Options).
	Stats bool
	// KernelLog reads the kernel log even where the eBPF probe could run: for tests.
	KernelLog bool
}

// Event is one OOM kill.
type Event struct {
	// Kills is how many kills the event stands for: 1, or more when the kernel counted
	// kills in the cgroup whose victims were marked before (a thread of theirs already
	// was, so the kernel did not mark them again).
	Kills uint64
	PID   uint32 // the thread chosen
	TGID  uint32 // its process (the kernel log names only the thread: PID then)
	UID   uint32
	Comm  string
	// CgroupID is the id of the victim's memory cgroup (the inode of its directory in the
	// memory hierarchy), 0 when the kernel has no memory controller or the source does
	// not say (the kernel log).
	CgroupID uint64
	// CgroupLevel is the depth of that cgroup: 0 for the root, -1 when unknown.
	CgroupLevel int
	// Names are the names of the victim's memory cgroup and its ancestors, leaf first,
	// the root left out: at most 8 from the eBPF probe. Path() assembles them.
	Names []string
	// NameCut reports that a name filled its 127-byte slot and may have been cut.
	NameCut bool
	// Memcg says a memory cgroup's limit, not the host's memory, caused the kill.
	Memcg bool
	// ConstraintFrom says how Memcg was told: "stack" (mem_cgroup_out_of_memory was on
	// the kernel stack of the kill, or was not), "kernel_log" (the kernel said so), or
	// "usage" (the address of that function was unknown: memcg when some memory cgroup
	// of the victim was within two huge pages of its limit, which a global OOM under
	// such a cgroup — Kubernetes' kubepods is capped at node allocatable — reads as).
	ConstraintFrom string
	// LimitUp is how many levels above the victim's cgroup the memory cgroup at its limit
	// sits (0: the victim's own), -1 when none was found.
	LimitUp int
	// LimitBytes is that cgroup's limit, 0 when unknown.
	LimitBytes uint64
	// Resident memory of the victim's process, bytes.
	RSSAnon, RSSFile, RSSShmem uint64
	OOMScoreAdj                int16
}

// Constraint is "memcg" when a memory cgroup's limit caused the kill, else "global".
func (e *Event) Constraint() string {
	if e.Memcg {
		return "memcg"
	}
	return "global"
}

// Complete reports whether Names spell the whole path from the root.
func (e *Event) Complete() bool {
	return !e.NameCut && len(e.Names) == e.CgroupLevel
}

// Counts are a probe's totals since Load.
type Counts struct {
	// Kills are the OOM kills, as the kernel counts them (vmstat oom_kill): one per
	// killed process, whatever its threads.
	Kills uint64
	// Lost are the records that did not reach user space (the ring buffer was full, or
	// the kernel log overwritten before it was read): their kills are in Kills, the
	// details are gone.
	Lost uint64
}

// Probe is the loaded OOM probe, or the kernel log reader standing in for it. Create it
// with Load; Run reads it.
type Probe struct {
	// Cost is the eBPF programs' cost and maps; zero for the kernel log.
	probe.Cost

	source string
	coll   *probe.Collection
	reader *ringbuf.Reader
	counts *ebpf.Map
	page   uint64
	// stackErr says why the constraint is not told from the kernel stack, nil if it is.
	stackErr error
	klog     *kernelLog

	// mu guards counts against Close: Collect reads them while Run may be closing.
	mu       sync.RWMutex
	closed   bool
	final    Counts
	closeErr error
}

// Load checks BTF, privileges and the mark_victim prototype, then loads and attaches the
// probe, or opens the kernel log where mark_victim passes only a pid. An error says why
// neither can run here (wrapping probe.ErrNoBTF, probe.ErrPrivilege, probe.ErrNoHook,
// probe.ErrPrototype or ErrOldKernel) or what failed; nothing stays loaded then.
func Load(opts Options) (*Probe, error) {
	return load(opts, progTPBTF, progRawTP)
}

// load is Load with the program variants to try named, so tests can force the fallback.
func load(opts Options, tpBTF, rawTP string) (_ *Probe, err error) {
	if opts.KernelLog {
		return openKernelLog(opts)
	}
	spec, err := loadOom()
	if err != nil {
		return nil, err
	}
	coll, err := probe.New(spec, probe.Options{SysFS: opts.SysFS, Stats: opts.Stats})
	if errors.Is(err, probe.ErrPrivilege) && pidOnly() {
		// The kernel log needs no eBPF privilege.
		return openKernelLog(opts)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			coll.Close()
		}
	}()
	params, err := coll.Hook(Hook)
	if err != nil {
		return nil, err
	}
	variant, err := Variant(params)
	if err != nil {
		return nil, err
	}
	if variant == VariantPID {
		coll.Close()
		return openKernelLog(opts)
	}
	page := uint64(os.Getpagesize())
	start, end, stackErr := memcgOOMRange("/proc/kallsyms")
	for name, v := range map[string]any{
		varMemcgV1:    opts.MemcgV1,
		varMargin:     marginPages(opts.SysFS, page),
		varMemcgOOMLo: start,
		varMemcgOOMHi: end,
	} {
		if err := coll.Spec().Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("setting %s: %w", name, err)
		}
	}
	if err := coll.Attach(Hook, tpBTF, rawTP); err != nil {
		return nil, err
	}
	events, err := coll.Map(mapEvents)
	if err != nil {
		return nil, err
	}
	counts, err := coll.Map(mapCounts)
	if err != nil {
		return nil, err
	}
	coll.Loaded()
	reader, err := ringbuf.NewReader(events)
	if err != nil {
		return nil, fmt.Errorf("reading ring buffer %s: %w", mapEvents, err)
	}
	return &Probe{
		Cost: coll.Cost(), source: coll.Attached()[0].Kind, coll: coll, reader: reader,
		counts: counts, page: page, stackErr: stackErr,
	}, nil
}

// pidOnly reports whether this kernel's mark_victim passes only a pid, reading its BTF
// (which needs no privilege) when the probe could not be loaded to find out.
func pidOnly() bool {
	k, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	params, err := probe.HookProto(k, Hook)
	if err != nil {
		return false
	}
	v, err := Variant(params)
	return err == nil && v == VariantPID
}

// Source says where the kills come from: "tp_btf" or "raw_tp" (the eBPF program's kind),
// or "kmsg" (the kernel log).
func (p *Probe) Source() string { return p.source }

// StackConstraint returns nil when a kill's constraint (memcg or global) is told from the
// kernel stack, or the kernel log says it; otherwise why it is guessed from memory usage.
func (p *Probe) StackConstraint() error { return p.stackErr }

// Run reads kills and calls handle for each, in the order the kernel reported them,
// until ctx ends; then it hands over the records still in the ring, closes the probe
// (detaching it and releasing every kernel object) and returns nil. handle runs on Run's
// goroutine and must not keep e. An error means reading failed; the probe is closed then
// too.
func (p *Probe) Run(ctx context.Context, handle func(e *Event)) error {
	if p.klog != nil {
		return errors.Join(p.klog.run(ctx, handle), p.Close())
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			// Wakes the read below; it returns what is left, then ErrFlushed.
			_ = p.reader.Flush()
		case <-stop:
		}
	}()

	var rec ringbuf.Record
	var raw oomOomEvent
	var e Event
	var err error
	for {
		if err = p.reader.ReadInto(&rec); err != nil {
			break
		}
		if err = binary.Read(bytes.NewReader(rec.RawSample), binary.LittleEndian, &raw); err != nil {
			err = fmt.Errorf("decoding a record of %d bytes: %w", len(rec.RawSample), err)
			break
		}
		p.decode(&raw, &e)
		handle(&e)
	}
	if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) {
		err = nil
	}
	return errors.Join(err, p.Close())
}

// decode turns a kernel record into e, reusing e's slices.
func (p *Probe) decode(r *oomOomEvent, e *Event) {
	*e = Event{
		Kills: r.Kills, PID: r.Pid, TGID: r.Tgid, UID: r.Uid,
		Comm:        cString(r.Comm[:]),
		CgroupID:    r.CgroupId,
		CgroupLevel: int(r.CgroupLevel),
		Names:       e.Names[:0],
		LimitUp:     int(r.LimitUp),
		LimitBytes:  r.LimitPages * p.page,
		RSSAnon:     r.RssAnon * p.page,
		RSSFile:     r.RssFile * p.page,
		RSSShmem:    r.RssShmem * p.page,
		OOMScoreAdj: r.OomScoreAdj,
	}
	switch r.Constraint {
	case constraintMemcg:
		e.Memcg, e.ConstraintFrom = true, "stack"
	case constraintGlobal:
		e.ConstraintFrom = "stack"
	default:
		e.Memcg, e.ConstraintFrom = r.LimitUp >= 0, "usage"
	}
	n := min(int(r.NamesLen), len(r.Names))
	for i := range n {
		name := cString(r.Names[i][:])
		if len(name) == nameLen-1 {
			e.NameCut = true
		}
		e.Names = append(e.Names, name)
	}
}

// cString is the NUL-terminated string at the start of b.
func cString(b []int8) string {
	buf := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		buf = append(buf, byte(c))
	}
	return string(buf)
}

// Counts returns the kills and lost records since Load. After Close it returns the
// counts as they were when the probe closed, so a reading racing with shutdown is not a
// failure.
func (p *Probe) Counts() (Counts, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return p.final, nil
	}
	return p.read()
}

// read reads the counts. Called with p.mu held.
func (p *Probe) read() (Counts, error) {
	if p.klog != nil {
		return p.klog.counts(), nil
	}
	var c Counts
	for _, v := range []struct {
		key uint32
		n   *uint64
	}{{countKills, &c.Kills}, {countLost, &c.Lost}} {
		if err := p.counts.Lookup(v.key, v.n); err != nil {
			return Counts{}, fmt.Errorf("reading %s: %w", mapCounts, err)
		}
	}
	return c, nil
}

// Close detaches the probe and releases its kernel objects (or closes the kernel log),
// keeping its last counts. Run calls it on return; calling it again is harmless.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.closeErr
	}
	var errs []error
	final, err := p.read()
	errs = append(errs, err)
	if p.klog != nil {
		errs = append(errs, p.klog.close())
	} else {
		errs = append(errs, p.reader.Close(), p.coll.Close())
	}
	p.closed, p.final, p.closeErr = true, final, errors.Join(errs...)
	return p.closeErr
}

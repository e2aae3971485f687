// Package oom reports every victim of the kernel's OOM killer, from the mark_victim
// tracepoint, with what the kernel knew at the moment of the kill: the victim's pid,
// command and uid, its memory use, and its memory cgroup (id, names up to 8 levels, and
// which cgroup, if any, was at its limit).
//
// The probe is a tp_btf program (raw_tp where tp_btf does not load) writing one record per
// victim into a ring buffer, which Run reads as records arrive. A record that does not fit
// is counted in the kernel (Lost). Kernels before 6.8 without the stable backport pass
// mark_victim only a pid; Load detects that prototype in the kernel's BTF and refuses with
// ErrOldKernel.
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
	progTPBTF  = "oom_mark_victim"
	progRawTP  = "oom_victim_raw"
	mapEvents  = "oom_events"
	mapLost    = "oom_lost"
	varMemcgV1 = "memcg_v1"
)

// nameLen is OOM_NAME_LEN in oom.bpf.c: a name that fills it (less its NUL) may be cut.
const nameLen = 128

// ErrOldKernel means mark_victim has the (int pid) prototype of kernels before 6.8, which
// carries no task to read the cgroup and memory from.
var ErrOldKernel = errors.New("mark_victim passes only a pid on this kernel (before 6.8, without the backport in 6.1.133/5.10.237): OOM kills need a newer kernel")

// Options configure Load.
type Options struct {
	// SysFS is where sysfs is mounted, for the BTF check.
	SysFS string
	// MemcgV1 says the memory controller is on a cgroup v1 hierarchy, where the
	// memory+swap limit (memory.memsw.limit_in_bytes) can also OOM-kill.
	MemcgV1 bool
	// Stats turns on BPF run-time statistics (see probe.Options).
	Stats bool
}

// Event is one OOM kill.
type Event struct {
	PID  uint32 // the thread chosen
	TGID uint32 // its process
	UID  uint32
	Comm string
	// CgroupID is the id of the victim's memory cgroup (the inode of its directory in the
	// memory hierarchy), 0 when the kernel has no memory controller.
	CgroupID uint64
	// CgroupLevel is the depth of that cgroup: 0 for the root.
	CgroupLevel int
	// Names are the names of the victim's memory cgroup and its ancestors, leaf first,
	// the root left out: at most 8. Path() assembles them.
	Names []string
	// NameCut reports that a name filled its 127-byte slot and may have been cut.
	NameCut bool
	// LimitUp is how many levels above the victim's cgroup the memory cgroup at its limit
	// sits (0: the victim's own), -1 when none was: a global OOM.
	LimitUp int
	// LimitBytes is that cgroup's limit.
	LimitBytes uint64
	// Resident memory of the victim's process, bytes.
	RSSAnon, RSSFile, RSSShmem uint64
	OOMScoreAdj                int16
}

// Constraint is "memcg" when a memory cgroup at its limit explains the kill, else
// "global".
func (e *Event) Constraint() string {
	if e.LimitUp >= 0 {
		return "memcg"
	}
	return "global"
}

// Complete reports whether Names spell the whole path from the root.
func (e *Event) Complete() bool {
	return !e.NameCut && len(e.Names) == e.CgroupLevel
}

// Probe is the loaded and attached OOM probe. Create it with Load; Run reads it.
type Probe struct {
	coll   *probe.Collection
	reader *ringbuf.Reader
	lost   *ebpf.Map
	page   uint64

	// mu guards lost against Close: Collect reads it while Run may be closing.
	mu       sync.RWMutex
	closed   bool
	closeErr error
}

// Load checks BTF, privileges and the mark_victim prototype, then loads and attaches the
// probe. An error says why it cannot run here (wrapping probe.ErrNoBTF,
// probe.ErrPrivilege, probe.ErrNoHook or ErrOldKernel) or what failed; nothing stays
// loaded then.
func Load(opts Options) (*Probe, error) {
	return load(opts, progTPBTF, progRawTP)
}

// load is Load with the program variants to try named, so tests can force the fallback.
func load(opts Options, tpBTF, rawTP string) (_ *Probe, err error) {
	spec, err := loadOom()
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
	params, err := coll.Hook(Hook)
	if err != nil {
		return nil, err
	}
	if err := checkProto(params); err != nil {
		return nil, err
	}
	if err := coll.Spec().Variables[varMemcgV1].Set(opts.MemcgV1); err != nil {
		return nil, fmt.Errorf("setting %s: %w", varMemcgV1, err)
	}
	if err := coll.Attach(Hook, tpBTF, rawTP); err != nil {
		return nil, err
	}
	events, err := coll.Map(mapEvents)
	if err != nil {
		return nil, err
	}
	lost, err := coll.Map(mapLost)
	if err != nil {
		return nil, err
	}
	coll.Loaded()
	reader, err := ringbuf.NewReader(events)
	if err != nil {
		return nil, fmt.Errorf("reading ring buffer %s: %w", mapEvents, err)
	}
	return &Probe{coll: coll, reader: reader, lost: lost, page: uint64(os.Getpagesize())}, nil
}

// checkProto accepts mark_victim(struct task_struct *, uid_t) and explains the rest.
func checkProto(params []btf.FuncParam) error {
	if len(params) >= 1 {
		if p, ok := btf.UnderlyingType(params[0].Type).(*btf.Pointer); ok {
			if s, ok := p.Target.(*btf.Struct); ok && s.Name == "task_struct" {
				return nil
			}
		}
		if _, ok := btf.UnderlyingType(params[0].Type).(*btf.Int); ok && len(params) == 1 {
			return ErrOldKernel
		}
	}
	return fmt.Errorf("%s%s: %w", Hook, probe.FormatProto(params), probe.ErrPrototype)
}

// Run reads kill records and calls handle for each, in the order the kernel wrote them,
// until ctx ends; then it hands over the records still in the ring, closes the probe
// (detaching it and releasing every kernel object) and returns nil. handle runs on Run's
// goroutine and must not keep e. An error means reading failed; the probe is closed then
// too.
func (p *Probe) Run(ctx context.Context, handle func(e *Event)) error {
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
		PID: r.Pid, TGID: r.Tgid, UID: r.Uid,
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

// Lost returns the records the kernel could not write because the ring buffer was full,
// since Load.
func (p *Probe) Lost() (uint64, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return 0, errors.New("oom probe is closed")
	}
	var n uint64
	if err := p.lost.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("reading %s: %w", mapLost, err)
	}
	return n, nil
}

// Stats returns the attached program's cost (see probe.Collection.Stats).
func (p *Probe) Stats() ([]probe.ProgramStats, bool, error) { return p.coll.Stats() }

// MapBytes returns the kernel memory of the probe's maps (see probe.Collection.MapBytes).
func (p *Probe) MapBytes() (map[string]uint64, error) { return p.coll.MapBytes() }

// Attached describes how the program is attached (tp_btf or raw_tp).
func (p *Probe) Attached() []*probe.Attached { return p.coll.Attached() }

// Close detaches the probe and releases its kernel objects. Run calls it on return;
// calling it again is harmless.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.closeErr = errors.Join(p.reader.Close(), p.coll.Close())
	}
	return p.closeErr
}

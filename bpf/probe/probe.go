// Package probe is what every eBPF probe of picket needs around its own program: the
// privilege and BTF checks made before loading anything, attaching a program as tp_btf
// with a raw_tp fallback, loading only the programs that are attached and the maps they
// use, the programs' run-time statistics, and errors that name the cause and the fix.
//
// A probe package (bpf/oom, bpf/runqlat) embeds its bpf2go-generated CollectionSpec and
// uses it like this:
//
//	spec, _ := loadFoo()                         // generated, embedded object
//	c, err := probe.New(spec, probe.Options{SysFS: "/sys"}) // privileges, BTF
//	proto, err := c.Hook("sched_switch")         // the tracepoint's BTF prototype
//	err = c.Attach("sched_switch", "foo_switch", "foo_switch_raw") // tp_btf, else raw_tp
//	m, err := c.Map("foo_hist")                  // a map the attached programs use
//	c.Loaded()                                   // lets go of the parsed kernel BTF
//	stats, on, err := c.Stats()                  // run time and count per attached hook
//	p := &Probe{Cost: c.Cost()}                  // the probe's type gets Stats, MapBytes, Attached
//	c.Close()                                    // links, programs, maps
//
// Why not the generated loadFooObjects: it loads every program and creates every map of
// the object, and fails as a whole when one program does not load on this kernel.
//
// The package knows nothing of metric names.
package probe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Sentinel errors. Each says what is missing and how to get it, because the library's own
// errors point elsewhere: with no capabilities creating a map fails with "prealloc maps
// not supported (requires >= v4.6)", and with CAP_BPF alone with "MEMLOCK may be too low".
var (
	// ErrPrivilege means the process lacks CAP_BPF or CAP_PERFMON (and CAP_SYS_ADMIN,
	// which implies both).
	ErrPrivilege = errors.New("needs CAP_BPF and CAP_PERFMON (or root): run as root or grant them in the systemd unit (AmbientCapabilities=CAP_BPF CAP_PERFMON)")
	// ErrNoBTF means the kernel exposes no BTF, which CO-RE programs and tp_btf need.
	ErrNoBTF = errors.New("kernel has no BTF (/sys/kernel/btf/vmlinux): needs CONFIG_DEBUG_INFO_BTF=y, kernel ≥ 5.8")
	// ErrNoHook means the kernel has no such tracepoint (no btf_trace_<hook> type).
	ErrNoHook = errors.New("kernel has no such tracepoint")
	// ErrPrototype means the tracepoint exists with arguments the probe was not written
	// for; the wrapping error names the prototype found.
	ErrPrototype = errors.New("tracepoint has an unsupported prototype")
)

// Linux capability numbers (include/uapi/linux/capability.h).
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// Privileges are the effective capabilities that matter to eBPF.
type Privileges struct {
	// Read is false when /proc/self/status could not be read; the rest is then unknown.
	Read     bool
	SysAdmin bool
	BPF      bool
	Perfmon  bool
}

// ReadPrivileges reads the effective capabilities of this process from
// /proc/self/status. It always reads the /proc picket runs under, never a --path.procfs
// that shows the host's processes: the capabilities are picket's own.
func ReadPrivileges() (Privileges, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return Privileges{}, err
	}
	defer f.Close()
	return parsePrivileges(f)
}

// parsePrivileges reads the CapEff line of a /proc/<pid>/status.
func parsePrivileges(r io.Reader) (Privileges, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		hex, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return Privileges{}, fmt.Errorf("CapEff %q: %w", strings.TrimSpace(hex), err)
		}
		has := func(c uint) bool { return caps&(1<<c) != 0 }
		return Privileges{Read: true, SysAdmin: has(capSysAdmin), BPF: has(capBPF), Perfmon: has(capPerfmon)}, nil
	}
	if err := sc.Err(); err != nil {
		return Privileges{}, err
	}
	return Privileges{}, errors.New("no CapEff line in status")
}

// Check returns nil when the capabilities suffice to load and attach tracing programs:
// CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN (which the kernel accepts for both).
func (p Privileges) Check() error {
	if (p.BPF || p.SysAdmin) && (p.Perfmon || p.SysAdmin) {
		return nil
	}
	if missing := p.missing(); len(missing) > 0 {
		return fmt.Errorf("%w (missing %s)", ErrPrivilege, strings.Join(missing, ", "))
	}
	return ErrPrivilege
}

func (p Privileges) missing() []string {
	var m []string
	if !p.BPF && !p.SysAdmin {
		m = append(m, "CAP_BPF")
	}
	if !p.Perfmon && !p.SysAdmin {
		m = append(m, "CAP_PERFMON")
	}
	return m
}

// String describes the capabilities for `picket check`.
func (p Privileges) String() string {
	if !p.Read {
		return "unknown"
	}
	var have []string
	for _, c := range []struct {
		name string
		ok   bool
	}{{"CAP_BPF", p.BPF}, {"CAP_PERFMON", p.Perfmon}, {"CAP_SYS_ADMIN", p.SysAdmin}} {
		if c.ok {
			have = append(have, c.name)
		}
	}
	if len(have) == 0 {
		return "none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN"
	}
	return strings.Join(have, "+")
}

// CheckBTF returns ErrNoBTF unless <sysfs>/kernel/btf/vmlinux exists.
func CheckBTF(sysfs string) error {
	path := filepath.Join(sysfs, "kernel", "btf", "vmlinux")
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist) && path == "/sys/kernel/btf/vmlinux":
		return ErrNoBTF
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w (looked for %s)", ErrNoBTF, path)
	}
	return fmt.Errorf("%w: %w", ErrNoBTF, err)
}

// KernelRelease is uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// HookProto returns the parameters of tracepoint hook in kernel BTF: the prototype of
// btf_trace_<hook> without its leading context pointer. An error wraps ErrNoHook.
func HookProto(kernel *btf.Spec, hook string) ([]btf.FuncParam, error) {
	var td *btf.Typedef
	if err := kernel.TypeByName("btf_trace_"+hook, &td); err != nil {
		if errors.Is(err, btf.ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", hook, ErrNoHook)
		}
		return nil, fmt.Errorf("%s: %w", hook, err)
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return nil, fmt.Errorf("btf_trace_%s is a %v, not a function pointer", hook, td.Type)
	}
	fp, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(fp.Params) == 0 {
		return nil, fmt.Errorf("btf_trace_%s points to %v, not a function prototype", hook, ptr.Target)
	}
	return fp.Params[1:], nil
}

// FormatProto renders parameters as C would: "(struct task_struct *, uid_t)".
func FormatProto(params []btf.FuncParam) string {
	parts := make([]string, len(params))
	for i, p := range params {
		parts[i] = typeName(p.Type)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// typeName is a short C spelling of t, qualifiers dropped.
func typeName(t btf.Type) string {
	switch t := t.(type) {
	case *btf.Pointer:
		return typeName(t.Target) + " *"
	case *btf.Const:
		return typeName(t.Type)
	case *btf.Volatile:
		return typeName(t.Type)
	case *btf.Struct:
		return "struct " + t.Name
	case *btf.Union:
		return "union " + t.Name
	case *btf.Enum:
		return "enum " + t.Name
	case *btf.Void:
		return "void"
	}
	if t.TypeName() != "" {
		return t.TypeName()
	}
	return fmt.Sprintf("%T", t)
}

// Options configure New.
type Options struct {
	// SysFS is where sysfs is mounted ("/sys"): the BTF check looks for
	// <SysFS>/kernel/btf/vmlinux there.
	SysFS string
	// Stats turns on the kernel's BPF run-time statistics (BPF_ENABLE_STATS) while the
	// Collection is open, so Stats has numbers to return. They are global: every BPF
	// program on the host then pays two clock reads per run (tens of nanoseconds), which
	// is why it is an option. Turning them on needs CAP_SYS_ADMIN; Stats reports the
	// failure. With kernel.bpf_stats_enabled=1 they are on anyway.
	Stats bool
}

// Collection is what a probe has loaded from its object: the maps the attached programs
// use (plus any asked for with Map), the attached programs and their links. Its methods
// are safe for concurrent use; after Close they return errors.
type Collection struct {
	spec  *ebpf.CollectionSpec
	cache *btf.Cache

	mu       sync.RWMutex
	closed   bool
	maps     map[string]*ebpf.Map
	attached []*Attached
	stats    io.Closer
	statsErr error
}

// Attached is a program attached to its hook.
type Attached struct {
	Hook string
	// Program is the name in the object of the variant that loaded.
	Program string
	// Kind is "tp_btf" or "raw_tp".
	Kind string
	prog *ebpf.Program
	link link.Link
}

// New checks that eBPF probes can run here, BTF first (a property of the kernel, the same
// for every user) then privileges, and returns an empty Collection for spec. Nothing is
// loaded yet. An error wraps ErrNoBTF or ErrPrivilege.
func New(spec *ebpf.CollectionSpec, opts Options) (*Collection, error) {
	if err := CheckBTF(opts.SysFS); err != nil {
		return nil, err
	}
	priv, err := ReadPrivileges()
	if err != nil {
		return nil, fmt.Errorf("reading capabilities: %w", err)
	}
	if err := priv.Check(); err != nil {
		return nil, err
	}
	c := &Collection{spec: spec.Copy(), cache: btf.NewCache(), maps: map[string]*ebpf.Map{}}
	if opts.Stats && !statsSysctlOn() {
		c.stats, c.statsErr = ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
		if c.statsErr != nil {
			c.statsErr = fmt.Errorf("turning on BPF run-time statistics: %w (needs CAP_SYS_ADMIN; or set sysctl kernel.bpf_stats_enabled=1)", c.statsErr)
		}
	}
	return c, nil
}

// Loaded says loading is over: the kernel's BTF, parsed for prototypes and CO-RE
// relocations (some MB of heap), is let go. Hook, Kernel and Attach parse it again if
// called after.
func (c *Collection) Loaded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cache = btf.NewCache()
}

// Spec is the Collection's own copy of the object's spec: set a probe's constants
// (spec.Variables[name].Set) through it before attaching.
func (c *Collection) Spec() *ebpf.CollectionSpec { return c.spec }

// Kernel returns the running kernel's BTF, parsed once per Collection and shared with the
// program loads.
func (c *Collection) Kernel() (*btf.Spec, error) {
	c.mu.RLock()
	cache := c.cache
	c.mu.RUnlock()
	k, err := cache.Kernel()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoBTF, err)
	}
	return k, nil
}

// Hook returns the parameters of tracepoint hook in the running kernel (see HookProto).
func (c *Collection) Hook(hook string) ([]btf.FuncParam, error) {
	k, err := c.Kernel()
	if err != nil {
		return nil, err
	}
	return HookProto(k, hook)
}

// Attach loads program tpBTF (a tp_btf program in the object) and attaches it to the
// tracepoint hook; if that fails, it tries rawTP (the raw_tp variant of the same code)
// instead. Either name may be empty. Only that program and the maps it uses are created;
// maps already created for an earlier Attach are shared. The error names every attempt.
func (c *Collection) Attach(hook, tpBTF, rawTP string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("probe collection is closed")
	}
	var errs []error
	for _, v := range []struct{ name, kind string }{{tpBTF, "tp_btf"}, {rawTP, "raw_tp"}} {
		if v.name == "" {
			continue
		}
		a, err := c.attach(hook, v.name, v.kind)
		if err == nil {
			c.attached = append(c.attached, a)
			return nil
		}
		errs = append(errs, fmt.Errorf("%s/%s (%s): %w", v.kind, hook, v.name, err))
	}
	if len(errs) == 0 {
		return fmt.Errorf("attaching %s: no program given", hook)
	}
	return errors.Join(errs...)
}

func (c *Collection) attach(hook, name, kind string) (*Attached, error) {
	prog, err := c.load(name)
	if err != nil {
		return nil, err
	}
	var l link.Link
	if kind == "tp_btf" {
		l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	} else {
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: hook, Program: prog})
	}
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("attaching: %w", err)
	}
	return &Attached{Hook: hook, Program: name, Kind: kind, prog: prog, link: l}, nil
}

// load loads program name and creates the maps it references that do not exist yet.
// It loads a trimmed copy of the spec (that program, its maps, their variables), so that
// nothing else in the object is created. Called with c.mu held.
func (c *Collection) load(name string) (*ebpf.Program, error) {
	ps, ok := c.spec.Programs[name]
	if !ok {
		return nil, fmt.Errorf("no program %q in the object", name)
	}
	refs := References(ps)
	trimmed := c.spec.Copy()
	for n := range trimmed.Programs {
		if n != name {
			delete(trimmed.Programs, n)
		}
	}
	for n := range trimmed.Maps {
		if !refs[n] {
			delete(trimmed.Maps, n)
		}
	}
	for n, v := range trimmed.Variables {
		if !refs[v.SectionName] {
			delete(trimmed.Variables, n)
		}
	}
	replace := map[string]*ebpf.Map{}
	for n := range refs {
		if m := c.maps[n]; m != nil {
			replace[n] = m
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(trimmed, ebpf.CollectionOptions{MapReplacements: replace, Cache: c.cache})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the kernel's verifier rejected %s (a picket bug on this kernel: please report it with `picket check` output): %w", name, err)
		}
		return nil, err
	}
	defer coll.Close()
	for n := range refs {
		if c.maps[n] == nil && coll.Maps[n] != nil {
			c.maps[n] = coll.DetachMap(n)
		}
	}
	return coll.DetachProgram(name), nil
}

// References returns the names of the maps (including .rodata/.bss/.data sections) that
// program spec ps uses.
func References(ps *ebpf.ProgramSpec) map[string]bool {
	refs := map[string]bool{}
	for _, ins := range ps.Instructions {
		if ins.IsLoadFromMap() || ins.OpCode == asm.LoadImmOp(asm.DWord) {
			if r := ins.Reference(); r != "" {
				refs[r] = true
			}
		}
	}
	return refs
}

// Map returns the map called name: the one the attached programs use, or, for a map no
// attached program references, a new one from the spec.
func (c *Collection) Map(name string) (*ebpf.Map, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("probe collection is closed")
	}
	if m := c.maps[name]; m != nil {
		return m, nil
	}
	ms, ok := c.spec.Maps[name]
	if !ok {
		return nil, fmt.Errorf("no map %q in the object", name)
	}
	m, err := ebpf.NewMap(ms)
	if err != nil {
		return nil, fmt.Errorf("creating map %s: %w", name, err)
	}
	c.maps[name] = m
	return m, nil
}

// Attached returns the programs attached so far.
func (c *Collection) Attached() []*Attached {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]*Attached(nil), c.attached...)
}

// ProgramStats is one attached program's cost, as the kernel counts it while BPF
// statistics are on.
type ProgramStats struct {
	Hook     string
	Kind     string
	RunTime  time.Duration
	RunCount uint64
}

// Stats returns the run time and run count of every attached program, and whether the
// kernel is counting them at all (BPF statistics on: Options.Stats or the sysctl
// kernel.bpf_stats_enabled). When it is not, the numbers are zeros to be left out, not
// shown. The error of turning statistics on, if any, is returned each time.
func (c *Collection) Stats() ([]ProgramStats, bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, false, errors.New("probe collection is closed")
	}
	on := c.stats != nil || statsSysctlOn()
	out := make([]ProgramStats, 0, len(c.attached))
	var errs []error
	for _, a := range c.attached {
		st, err := a.prog.Stats()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.Hook, err))
			continue
		}
		out = append(out, ProgramStats{Hook: a.Hook, Kind: a.Kind, RunTime: st.Runtime, RunCount: st.RunCount})
	}
	return out, on, errors.Join(append(errs, c.statsErr)...)
}

// statsSysctlOn reports whether kernel.bpf_stats_enabled is 1 (also while any process
// holds a BPF_ENABLE_STATS descriptor, which is how picket turns it on).
func statsSysctlOn() bool {
	b, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	return err == nil && bytes.Equal(bytes.TrimSpace(b), []byte("1"))
}

// Cost gives a probe's Go type the Stats, MapBytes and Attached methods of its
// Collection by embedding (`type Probe struct{ probe.Cost; … }`, set with c.Cost()), so
// that each probe does not wrap them again. The zero Cost stands for a probe that loaded
// nothing into the kernel: no programs, no maps, statistics off.
type Cost struct{ c *Collection }

// Cost returns c's Cost, for a probe's type to embed.
func (c *Collection) Cost() Cost { return Cost{c} }

// Stats returns the attached programs' run time and count (see Collection.Stats).
func (c Cost) Stats() ([]ProgramStats, bool, error) {
	if c.c == nil {
		return nil, false, nil
	}
	return c.c.Stats()
}

// MapBytes returns the kernel memory of the probe's maps (see Collection.MapBytes).
func (c Cost) MapBytes() (map[string]uint64, error) {
	if c.c == nil {
		return map[string]uint64{}, nil
	}
	return c.c.MapBytes()
}

// Attached describes how the probe's programs are attached (tp_btf or raw_tp).
func (c Cost) Attached() []*Attached {
	if c.c == nil {
		return nil
	}
	return c.c.Attached()
}

// MapBytes returns the kernel memory of the Collection's maps, by name, as the kernel
// reports it (memlock in fdinfo: what is charged to picket's memory cgroup).
func (c *Collection) MapBytes() (map[string]uint64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, errors.New("probe collection is closed")
	}
	out := make(map[string]uint64, len(c.maps))
	names := make([]string, 0, len(c.maps))
	for n := range c.maps {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		info, err := c.maps[n].Info()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
			continue
		}
		b, _ := info.Memlock()
		out[n] = b
	}
	return out, errors.Join(errs...)
}

// Close detaches every program and releases every program and map. It is safe to call
// more than once.
func (c *Collection) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	// Links first: once detached, nothing runs the programs or writes the maps.
	for _, a := range c.attached {
		errs = append(errs, a.link.Close())
	}
	for _, a := range c.attached {
		errs = append(errs, a.prog.Close())
	}
	for _, m := range c.maps {
		errs = append(errs, m.Close())
	}
	if c.stats != nil {
		errs = append(errs, c.stats.Close())
	}
	c.attached, c.maps = nil, nil
	return errors.Join(errs...)
}

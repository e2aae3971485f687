package probe

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestParsePrivileges(t *testing.T) {
	status := func(capEff string) string {
		return "Name:\tpicket\nCapInh:\t0000000000000000\nCapPrm:\t" + capEff + "\nCapEff:\t" + capEff + "\nCapBnd:\t000001ffffffffff\n"
	}
	for _, c := range []struct {
		name, status string
		want         Privileges
		ok           bool
		missing      string
		err          bool
	}{
		{name: "root", status: status("000001fffeffffff"), want: Privileges{Read: true, SysAdmin: true, BPF: true, Perfmon: true}, ok: true},
		{name: "bpf and perfmon", status: status("000000c000000000"), want: Privileges{Read: true, BPF: true, Perfmon: true}, ok: true},
		{name: "sys_admin only", status: status("0000000000200000"), want: Privileges{Read: true, SysAdmin: true}, ok: true},
		{name: "bpf only", status: status("0000008000000000"), want: Privileges{Read: true, BPF: true}, missing: "CAP_PERFMON"},
		{name: "none", status: status("0000000000000000"), want: Privileges{Read: true}, missing: "CAP_BPF, CAP_PERFMON"},
		{name: "empty", status: "", err: true},
		{name: "truncated", status: "Name:\tpicket\nCapInh:\t0\n", err: true},
		{name: "garbage", status: "CapEff:\tzz\n", err: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := parsePrivileges(strings.NewReader(c.status))
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want error %v", err, c.err)
			}
			if err != nil {
				return
			}
			if p != c.want {
				t.Errorf("got %+v, want %+v", p, c.want)
			}
			err = p.Check()
			if c.ok != (err == nil) {
				t.Errorf("Check() = %v, want ok %v", err, c.ok)
			}
			if err != nil && (!errors.Is(err, ErrPrivilege) || !strings.Contains(err.Error(), "(missing "+c.missing+")")) {
				t.Errorf("Check() = %v, want ErrPrivilege missing %s", err, c.missing)
			}
		})
	}
}

func TestCheckBTF(t *testing.T) {
	sys := t.TempDir()
	if err := CheckBTF(sys); !errors.Is(err, ErrNoBTF) {
		t.Errorf("no vmlinux: %v, want ErrNoBTF", err)
	}
	if err := os.MkdirAll(filepath.Join(sys, "kernel", "btf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sys, "kernel", "btf", "vmlinux"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckBTF(sys); err != nil {
		t.Errorf("with vmlinux: %v", err)
	}
}

// kernelSpec builds a kernel-like BTF holding typedefs btf_trace_<name> the way the kernel
// declares its tracepoints: a pointer to a prototype whose first argument is void *.
func kernelSpec(t *testing.T, hooks map[string][]btf.FuncParam) *btf.Spec {
	t.Helper()
	var types []btf.Type
	for name, params := range hooks {
		ctx := btf.FuncParam{Name: "__data", Type: &btf.Pointer{Target: &btf.Void{}}}
		proto := &btf.FuncProto{Return: &btf.Void{}, Params: append([]btf.FuncParam{ctx}, params...)}
		types = append(types, &btf.Typedef{Name: "btf_trace_" + name, Type: &btf.Pointer{Target: proto}})
	}
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestHookProto(t *testing.T) {
	task := &btf.Pointer{Target: &btf.Struct{Name: "task_struct", Size: 0}}
	uid := &btf.Typedef{Name: "uid_t", Type: &btf.Int{Name: "unsigned int", Size: 4}}
	preempt := &btf.Typedef{Name: "bool", Type: &btf.Int{Name: "_Bool", Size: 1, Encoding: btf.Bool}}
	spec := kernelSpec(t, map[string][]btf.FuncParam{
		"mark_victim":  {{Name: "task", Type: task}, {Name: "uid", Type: uid}},
		"sched_switch": {{Name: "preempt", Type: preempt}, {Name: "prev", Type: task}, {Name: "next", Type: task}, {Name: "prev_state", Type: &btf.Int{Name: "unsigned int", Size: 4}}},
	})
	for hook, want := range map[string]string{
		"mark_victim":  "(struct task_struct *, uid_t)",
		"sched_switch": "(bool, struct task_struct *, struct task_struct *, unsigned int)",
	} {
		params, err := HookProto(spec, hook)
		if err != nil {
			t.Errorf("%s: %v", hook, err)
			continue
		}
		if got := FormatProto(params); got != want {
			t.Errorf("%s: %s, want %s", hook, got, want)
		}
	}
	if _, err := HookProto(spec, "no_such_hook"); !errors.Is(err, ErrNoHook) {
		t.Errorf("a missing hook: %v, want ErrNoHook", err)
	}
}

// TestZeroCost: the Cost of a probe that loaded nothing into the kernel (the OOM probe
// reading the kernel log) has no programs, no maps and statistics off, and no error.
func TestZeroCost(t *testing.T) {
	var c Cost
	if stats, on, err := c.Stats(); stats != nil || on || err != nil {
		t.Errorf("Stats() = %v, %v, %v", stats, on, err)
	}
	if mem, err := c.MapBytes(); len(mem) != 0 || err != nil {
		t.Errorf("MapBytes() = %v, %v", mem, err)
	}
	if a := c.Attached(); a != nil {
		t.Errorf("Attached() = %v", a)
	}
}

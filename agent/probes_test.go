package agent

import (
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/picket-agent/picket/collectors"
)

// TestHookStatus: `picket check` names the variant a probe loads for the prototype this
// kernel has, and calls a prototype no variant takes unsupported rather than ok. The
// prototypes are hand-made BTF: mark_victim(struct task_struct *, uid_t) from 6.8,
// mark_victim(int pid) before.
func TestHookStatus(t *testing.T) {
	var oom collectors.Factory
	for _, f := range collectors.All {
		if f.Name == "oom" {
			oom = f
		}
	}
	task := btf.FuncParam{Type: &btf.Pointer{Target: &btf.Struct{Name: "task_struct"}}}
	uid := btf.FuncParam{Type: &btf.Typedef{Name: "uid_t", Type: &btf.Int{Name: "unsigned int", Size: 4}}}
	pid := btf.FuncParam{Type: &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}}
	for _, c := range []struct {
		name   string
		f      collectors.Factory
		params []btf.FuncParam
		want   string
	}{
		{"task", oom, []btf.FuncParam{task, uid}, "ok: eBPF probe (task, uid)"},
		{"pid", oom, []btf.FuncParam{pid}, "ok: pid only: kills read from the kernel log (/dev/kmsg, needs CAP_SYSLOG)"},
		{"unknown", oom, []btf.FuncParam{uid, task}, "unsupported prototype"},
		{"no variants", collectors.Factory{Name: "x"}, []btf.FuncParam{uid}, "ok"},
	} {
		if got := hookStatus(c.f, "mark_victim", c.params); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

package agent

import (
	"fmt"
	"io"

	"github.com/cilium/ebpf/btf"

	"github.com/picket-agent/picket/agent/scheduler"
	"github.com/picket-agent/picket/bpf/probe"
	"github.com/picket-agent/picket/collectors"
)

// checkKernel writes what `picket check` says about eBPF on this host: the kernel, its
// BTF, picket's capabilities, and each tracepoint an enabled collector's probe needs,
// with the prototype this kernel gives it and what the probe makes of it: the variant it
// will load, or "unsupported prototype". Whether each probe then loaded is on its
// collector's line.
func (c *CLI) checkKernel(w io.Writer) {
	fmt.Fprintf(w, "kernel\t%s\t\n", probe.KernelRelease())
	privs := "ok"
	p, err := probe.ReadPrivileges()
	if err != nil {
		privs = "unknown: " + err.Error()
	} else if err := p.Check(); err != nil {
		privs = "missing: " + err.Error()
	}
	fmt.Fprintf(w, "privileges\t%s\t%s\n", p, privs)

	var kernel *btf.Spec
	var btfErr error
	if btfErr = probe.CheckBTF(c.Path.Sysfs); btfErr == nil {
		// The library reads the running kernel's BTF from /sys, whatever --path.sysfs says.
		kernel, btfErr = btf.LoadKernelSpec()
	}
	for i, f := range collectors.All {
		if !c.collectorEnabled(i) {
			continue
		}
		for _, hook := range f.Hooks {
			status := "ok"
			proto := ""
			if btfErr != nil {
				status = "unknown: " + btfErr.Error()
			} else if params, err := probe.HookProto(kernel, hook); err != nil {
				status = "missing: " + err.Error()
			} else {
				proto = probe.FormatProto(params)
				status = hookStatus(f, hook, params)
			}
			fmt.Fprintf(w, "hook\t%s%s\t%s (collector %s)\n", hook, proto, status, f.Name)
		}
	}
}

// hookStatus is what collector f's probe makes of the prototype params of hook: "ok",
// "ok: <the variant it loads>", or "unsupported prototype".
func hookStatus(f collectors.Factory, hook string, params []btf.FuncParam) string {
	if f.Variant == nil {
		return "ok"
	}
	v, err := f.Variant(hook, params)
	if err != nil {
		return "unsupported prototype"
	}
	return "ok: " + v
}

// start loads the scheduler's eBPF probes. A probe that cannot load leaves its collector
// down (logged once at the first tick) unless --strict makes it fatal.
func (r RunCmd) start(env *Env, s *scheduler.Scheduler) error {
	if err := s.Start(env.Ctx); err != nil && r.Strict {
		s.Stop()
		return fmt.Errorf("--strict: %w", err)
	}
	return nil
}

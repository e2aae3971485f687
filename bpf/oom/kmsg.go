package oom

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// The kernel log as the source of OOM kills, where mark_victim passes only a pid (kernels
// before 6.8 without the backport: Ubuntu 22.04's 5.15, RHEL 9's 5.14).
//
// Why the log rather than a pid-only eBPF program on the same hook: a pid is all such a
// program would have. bpf_task_from_pid, which would find the task, came in 6.2, after
// the kernels that need this; the victim's cgroup would have to be read from /proc after
// the fact, racing with its exit; and the program could not tell a kill from the other
// marks (the other threads of a killed process, a task exiting anyway) without the task.
// The log has one line per kill, the one the kernel counts in oom_kill, saying whether a
// memory cgroup or the host ran out ("Memory cgroup out of memory: Killed process …" or
// "Out of memory: Killed process …"), with the victim's pid, command, uid, memory and
// oom_score_adj; before it, unless the kernel's rate limit (10 per 5 s) dropped it, a
// summary names the cgroup at its limit and the victim's: "oom-kill:constraint=…,
// oom_memcg=…,task_memcg=…,task=…,pid=…,uid=…". A kill past the rate limit is counted and
// logged all the same, its cgroup read from /proc/<pid>/cgroup while the victim is still
// there, which works on v2 only (v1 shows an exiting task in "/"): otherwise it counts
// for the cgroup "/...". Reading /dev/kmsg needs CAP_SYSLOG while kernel.dmesg_restrict
// is 1.

// kmsgPath is the kernel log device.
const kmsgPath = "/dev/kmsg"

// kernelLog reads OOM kills from the kernel log.
type kernelLog struct {
	f       *os.File
	procfs  string
	memcgV1 bool

	kills, lost atomic.Uint64
	// summary is the last oom-kill line, waiting for its Killed process line. Only run
	// touches it.
	summary *oomSummary
}

// openKernelLog opens /dev/kmsg at its end (kills from now on) and returns a Probe that
// reads it.
func openKernelLog(opts Options) (*Probe, error) {
	f, err := os.Open(kmsgPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOldKernel, err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: seeking to the end of %s: %w", ErrOldKernel, kmsgPath, err)
	}
	procfs := opts.ProcFS
	if procfs == "" {
		procfs = "/proc"
	}
	return &Probe{source: "kmsg", klog: &kernelLog{f: f, procfs: procfs, memcgV1: opts.MemcgV1}}, nil
}

func (k *kernelLog) counts() Counts {
	return Counts{Kills: k.kills.Load(), Lost: k.lost.Load()}
}

func (k *kernelLog) close() error { return k.f.Close() }

// run reads the log until ctx ends, calling handle for every kill.
func (k *kernelLog) run(ctx context.Context, handle func(*Event)) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			// Wakes the read below (the device is pollable, so the runtime's poller waits
			// for it and honours deadlines).
			_ = k.f.SetReadDeadline(time.Now())
		case <-stop:
		}
	}()
	// A record is at most 8 KiB (CONSOLE_EXT_LOG_MAX); a shorter buffer fails with EINVAL.
	buf := make([]byte, 8192)
	var e Event
	for {
		n, err := k.f.Read(buf)
		switch {
		case errors.Is(err, syscall.EPIPE):
			// Records were overwritten before we read them: maybe kills among them.
			k.lost.Add(1)
			continue
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("reading %s: %w", kmsgPath, err)
		}
		if k.record(buf[:n], &e) {
			handle(&e)
		}
	}
}

// record takes one record of the log and reports whether it completed a kill, in e.
func (k *kernelLog) record(rec []byte, e *Event) bool {
	text, ok := recordText(rec)
	if !ok {
		return false
	}
	if s, ok := parseSummary(text); ok {
		k.summary = &s
		return false
	}
	kl, ok := parseKilled(text)
	if !ok {
		return false
	}
	k.kills.Add(1)
	s := k.summary
	k.summary = nil
	if s != nil && s.pid != kl.pid {
		s = nil
	}
	kl.event(s, e)
	if s == nil {
		// No summary (rate-limited): the cgroup from /proc, while the victim is there. A
		// v1 hierarchy shows an exiting task, which the victim is, in "/" whatever its
		// cgroup: no answer.
		if p, ok := procCgroup(k.procfs, kl.pid, k.memcgV1); ok && !(k.memcgV1 && p == "/") {
			setPath(e, p)
		}
	}
	return true
}

// recordText returns the message of a /dev/kmsg record written by the kernel:
// "<prio>,<seq>,<µs>,<flags>[,…];<message>\n" followed by " KEY=value" lines. Records
// that user space wrote (root may, through the same device) carry a facility other than
// the kernel's 0 in <prio> (facility·8 + level), and are not the kernel's word: false.
func recordText(rec []byte) (string, bool) {
	semi := bytes.IndexByte(rec, ';')
	if semi < 0 {
		return "", false
	}
	head := rec[:semi]
	if bytes.Count(head, []byte{','}) < 3 {
		return "", false
	}
	prio, err := strconv.ParseUint(string(head[:bytes.IndexByte(head, ',')]), 10, 32)
	if err != nil || prio>>3 != 0 {
		return "", false
	}
	msg := rec[semi+1:]
	if nl := bytes.IndexByte(msg, '\n'); nl >= 0 {
		msg = msg[:nl]
	}
	return string(msg), true
}

// unescape undoes /dev/kmsg's escaping of unprintable bytes and '\' as \xNN.
func unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// oomSummary is what the kernel's one-line summary of a kill says.
type oomSummary struct {
	constraint string // CONSTRAINT_MEMCG, CONSTRAINT_NONE, CONSTRAINT_CPUSET…
	oomMemcg   string // the cgroup at its limit; "" for a global OOM
	taskMemcg  string // the victim's memory cgroup
	task       string
	pid        uint32
	uid        uint32
	hasUID     bool
}

// parseSummary parses
// "oom-kill:constraint=C,nodemask=N,cpuset=P,mems_allowed=M[,oom_memcg=P|,global_oom],task_memcg=P,task=T,pid=N,uid=N".
// Cgroup paths and the command may hold commas, so the fields are taken from the end,
// each after the last occurrence of its key.
func parseSummary(text string) (oomSummary, bool) {
	rest, ok := strings.CutPrefix(text, "oom-kill:constraint=")
	if !ok {
		return oomSummary{}, false
	}
	var s oomSummary
	if i := strings.LastIndex(rest, ",uid="); i >= 0 {
		if uid, err := strconv.ParseUint(rest[i+len(",uid="):], 10, 32); err == nil {
			s.uid, s.hasUID = uint32(uid), true
			rest = rest[:i]
		}
	}
	i := strings.LastIndex(rest, ",pid=")
	if i < 0 {
		return oomSummary{}, false
	}
	pid, err := strconv.ParseUint(rest[i+len(",pid="):], 10, 32)
	if err != nil {
		return oomSummary{}, false
	}
	s.pid, rest = uint32(pid), rest[:i]
	if i = strings.LastIndex(rest, ",task="); i < 0 {
		return oomSummary{}, false
	}
	s.task, rest = unescape(rest[i+len(",task="):]), rest[:i]
	if i = strings.LastIndex(rest, ",task_memcg="); i >= 0 {
		s.taskMemcg, rest = unescape(rest[i+len(",task_memcg="):]), rest[:i]
	}
	if i = strings.LastIndex(rest, ",oom_memcg="); i >= 0 {
		s.oomMemcg, rest = unescape(rest[i+len(",oom_memcg="):]), rest[:i]
	}
	s.constraint, _, _ = strings.Cut(rest, ",")
	return s, s.constraint != ""
}

// killedLine is what the kernel's "Killed process" line says.
type killedLine struct {
	memcg                 bool // "Memory cgroup out of memory", not "Out of memory…"
	pid                   uint32
	comm                  string
	anonKB, fileKB, shmKB uint64
	uid                   uint32
	hasUID                bool
	adj                   int16
}

const killedMarker = ": Killed process "

// parseKilled parses
// "<why>: Killed process <pid> (<comm>) total-vm:NkB, anon-rss:NkB, file-rss:NkB,
// shmem-rss:NkB, UID:N pgtables:NkB oom_score_adj:N", the fields after the command
// taken by name (older kernels have fewer). <why> is "Memory cgroup out of memory" for a
// memory cgroup at its limit, "Out of memory" (or "Out of memory (oom_kill_allocating_task)")
// otherwise.
func parseKilled(text string) (killedLine, bool) {
	why, rest, ok := strings.Cut(text, killedMarker)
	if !ok || !strings.Contains(strings.ToLower(why), "out of memory") {
		return killedLine{}, false
	}
	k := killedLine{memcg: why == "Memory cgroup out of memory"}
	pid, rest, ok := strings.Cut(rest, " (")
	if !ok {
		return killedLine{}, false
	}
	n, err := strconv.ParseUint(pid, 10, 32)
	if err != nil {
		return killedLine{}, false
	}
	k.pid = uint32(n)
	// The command may hold ") ": it ends at the last ") " before the first field.
	end := strings.LastIndex(rest, ") total-vm:")
	if end < 0 {
		if !strings.HasSuffix(rest, ")") {
			return killedLine{}, false
		}
		end = len(rest) - 1
	}
	k.comm, rest = unescape(rest[:end]), rest[end+1:]
	for _, f := range strings.FieldsFunc(rest, func(r rune) bool { return r == ' ' || r == ',' }) {
		key, val, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		kb := strings.TrimSuffix(val, "kB")
		switch key {
		case "anon-rss":
			k.anonKB, _ = strconv.ParseUint(kb, 10, 64)
		case "file-rss":
			k.fileKB, _ = strconv.ParseUint(kb, 10, 64)
		case "shmem-rss":
			k.shmKB, _ = strconv.ParseUint(kb, 10, 64)
		case "UID":
			if uid, err := strconv.ParseUint(val, 10, 32); err == nil {
				k.uid, k.hasUID = uint32(uid), true
			}
		case "oom_score_adj":
			if adj, err := strconv.ParseInt(val, 10, 16); err == nil {
				k.adj = int16(adj)
			}
		}
	}
	return k, true
}

// event fills e from the kill line and, if it is the same victim's, the summary before it.
func (k *killedLine) event(s *oomSummary, e *Event) {
	*e = Event{
		Kills: 1, PID: k.pid, TGID: k.pid, UID: k.uid, Comm: k.comm,
		CgroupLevel: -1, Names: e.Names[:0], LimitUp: -1,
		Memcg: k.memcg, ConstraintFrom: "kernel_log",
		RSSAnon: k.anonKB << 10, RSSFile: k.fileKB << 10, RSSShmem: k.shmKB << 10,
		OOMScoreAdj: k.adj,
	}
	if s == nil {
		return
	}
	if !k.hasUID && s.hasUID {
		e.UID = s.uid
	}
	if s.taskMemcg != "" {
		setPath(e, s.taskMemcg)
		if s.oomMemcg != "" {
			e.LimitUp = ancestorLevels(s.taskMemcg, s.oomMemcg)
		}
	}
}

// setPath sets e's cgroup to path ("/a/b").
func setPath(e *Event, path string) {
	e.Names = e.Names[:0]
	nodes := strings.Split(strings.Trim(path, "/"), "/")
	if strings.Trim(path, "/") == "" {
		nodes = nil
	}
	for i := len(nodes) - 1; i >= 0; i-- {
		e.Names = append(e.Names, nodes[i])
	}
	e.CgroupLevel = len(nodes)
}

// ancestorLevels is how many levels above the cgroup path the cgroup anc is (0: itself),
// -1 when it is not an ancestor.
func ancestorLevels(path, anc string) int {
	path, anc = strings.TrimSuffix(path, "/"), strings.TrimSuffix(anc, "/")
	if path == anc {
		return 0
	}
	if anc != "" && !strings.HasPrefix(path, anc+"/") {
		return -1
	}
	return strings.Count(path[len(anc):], "/")
}

// procCgroup reads the memory cgroup of pid from <procfs>/<pid>/cgroup: the memory
// controller's line on v1, the unified one ("0::") on v2. Best effort: a victim may be
// gone by now.
func procCgroup(procfs string, pid uint32, v1 bool) (string, bool) {
	f, err := os.Open(filepath.Join(procfs, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return "", false
	}
	defer f.Close()
	return parseProcCgroup(f, v1)
}

func parseProcCgroup(r io.Reader, v1 bool) (string, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(path, "/") {
			continue
		}
		if (v1 && id != "0" && containsField(ctrls, "memory")) || (!v1 && id == "0" && ctrls == "") {
			return path, true
		}
	}
	return "", false
}

func containsField(list, f string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == f {
			return true
		}
	}
	return false
}

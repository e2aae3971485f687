//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * runqlat: run-queue latency, the time a task waits between becoming runnable and
 * running, as log2 histograms kept in the kernel: host-wide and per cgroup (the cpu
 * controller's hierarchy on cgroup v1, the unified one on v2).
 *
 * A task's wait starts when it is woken (sched_wakeup, sched_wakeup_new) or when it is
 * switched out while still runnable (sched_switch with prev preempted or TASK_RUNNING: it
 * goes straight back on the run queue), and ends when sched_switch switches it in. The
 * start is kept per task, in task-local storage where the kernel has it (5.11+, tp_btf
 * only: the helper needs a typed task pointer), else in a table indexed by tid (a hash
 * with no chains, see tid_stamp()). The object holds both variants of every program; the
 * loader picks one set.
 *
 * Nothing reaches user space per event: it reads the histograms once per tick. Hot-path
 * rules, because sched_switch runs on every context switch of the host:
 *   - no clock read: stamps are the run queue's clock, which the scheduler has just
 *     updated at each of these tracepoints (see clock());
 *   - no division (see bucket());
 *   - the histograms are per-CPU (no atomics, no locks, no shared cache lines);
 *   - a bucket is a u32 that may wrap: user space sums the CPUs modulo 2^32 and keeps
 *     64-bit totals (half the memory of u64 buckets, which matters per cgroup × CPU);
 *   - the cgroup → histogram slot lookup (a hash) is skipped while a CPU keeps switching
 *     in tasks of the cgroup it saw last (a per-CPU cache beside the host histogram);
 *   - slots come from a queue user space fills, so a new cgroup takes one without a
 *     round trip to user space; when none is left its waits count in slot 0, overflow.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Buckets: le[k] counts waits of at most 2^k µs (and more than 2^(k-1) µs) for k < 25,
 * so the bounds run 1 µs … 2^24 µs (16.8 s); le[25] counts longer waits. */
#define RQ_BUCKETS 26
/* Per-cgroup histograms: slot 0 is the overflow, slots 1..RQ_CGROUPS are handed out. At
 * sizeof(struct hist) = 112 bytes per CPU, 513 slots on 64 CPUs take 3.5 MiB. */
#define RQ_CGROUPS 512
/* Start stamps in the table variant: slot = tid mod RQ_TID_SLOTS (512 KiB). */
#define RQ_TID_BITS 16
#define RQ_TID_SLOTS (1 << RQ_TID_BITS)
/* A slot keeps the tid's bits above RQ_TID_BITS beside the stamp: 6 bits, as tids are
 * below 2^22 (PID_MAX_LIMIT), which leaves 58 bits of nanoseconds (9 years of uptime). */
#define RQ_TID_HIGH 6
#define RQ_TID_HIGH_MASK ((1 << RQ_TID_HIGH) - 1)

/* Which cgroup a wait is charged to (set by the loader). */
enum {
	CG_NONE = 0, /* host-wide only */
	CG_V1 = 1,   /* the cpu controller's cgroup (its css in task->cgroups) */
	CG_V2 = 2,   /* the task's cgroup in the unified hierarchy */
};
const volatile u8 cgroup_mode = CG_NONE;
/* sched_switch passes prev_state (5.18+); before, it is read from prev. */
const volatile bool switch_has_state = true;

struct hist {
	u64 sum_ns;         /* total wait, nanoseconds */
	u32 le[RQ_BUCKETS]; /* waits per bucket (not cumulative), modulo 2^32 */
};

struct cpu_state {
	struct hist host;
	u64 last_cgroup; /* id of the cgroup charged last on this CPU, 0 for none */
	u32 last_slot;   /* its slot */
	u32 missed;      /* waits not measured: no room for the start stamp (modulo 2^32) */
};

/* Keep the value types in the object's BTF, for bpf2go's -type. */
const struct cpu_state *unused_cpu_state __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct cpu_state);
} rq_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RQ_CGROUPS + 1);
	__type(key, u32);
	__type(value, struct hist);
} rq_cgroup_hist SEC(".maps");

/* cgroup id → slot in rq_cgroup_hist. User space deletes the cgroups that are gone. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RQ_CGROUPS);
	__type(key, u64);
	__type(value, u32);
} rq_cgroup_slot SEC(".maps");

/* Free slots: user space pushes 1..RQ_CGROUPS at load and each slot it frees (zeroed). */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, RQ_CGROUPS);
	__type(value, u32);
} rq_free_slots SEC(".maps");

/* Start stamps, task-local storage variant (ns, 0 = none). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, u64);
} rq_start SEC(".maps");

/* Start stamps, table variant: stamp << RQ_TID_HIGH | tid >> RQ_TID_BITS, 0 = none. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RQ_TID_SLOTS);
	__type(key, u32);
	__type(value, u64);
} rq_start_tid SEC(".maps");

static __always_inline struct cpu_state *cpu_state(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&rq_cpu, &zero);
}

static __always_inline void missed(void)
{
	struct cpu_state *cs = cpu_state();
	if (cs)
		cs->missed++;
}

/* bit_len returns the number of bits needed for x: 0 for 0, n+1 for 2^n ≤ x < 2^(n+1). */
static __always_inline u32 bit_len(u64 x)
{
	u32 n = 0;

	if (x >> 32) {
		x >>= 32;
		n += 32;
	}
	if (x >> 16) {
		x >>= 16;
		n += 16;
	}
	if (x >> 8) {
		x >>= 8;
		n += 8;
	}
	if (x >> 4) {
		x >>= 4;
		n += 4;
	}
	if (x >> 2) {
		x >>= 2;
		n += 2;
	}
	if (x >> 1) {
		x >>= 1;
		n += 1;
	}
	return n + x;
}

/* bucket returns the smallest k with ns ≤ 1000·2^k, capped at RQ_BUCKETS-1, without a
 * division: with b = bit_len(ns-1), 2^(b-1) < ns ≤ 2^b, and as 1000·2^(b-10) is just
 * under 2^b, k is b-10 or b-9. */
static __always_inline u32 bucket(u64 ns)
{
	u32 b = bit_len(ns - 1), k;

	if (b <= 10)
		return ns > 1000 ? 1 : 0;
	k = b - 10;
	if (ns > (1000ULL << k))
		k++;
	return k < RQ_BUCKETS ? k : RQ_BUCKETS - 1;
}

/* With btf (tp_btf) pointers are typed and fields are direct loads, which the verifier
 * makes fault-safe; raw_tp must read them with bpf_probe_read_kernel (BPF_CORE_READ). */
/* clock returns the clock of t's run queue: the clock the scheduler stamps its own
 * run_delay with, updated when t was enqueued (before sched_wakeup) and when its CPU
 * schedules (before sched_switch), so reading it costs a few loads where
 * bpf_ktime_get_ns() reads the clock source (about 50 ns in the VMs picket was measured on). Stamps from two
 * CPUs' run queues compare as sched_clock does: exactly where it is stable (a constant
 * TSC, arm64's timer). Without CONFIG_FAIR_GROUP_SCHED there is no path from the task to
 * its run queue: bpf_ktime_get_ns() then, for every stamp alike. */
static __always_inline u64 clock(struct task_struct *t, bool btf)
{
	if (bpf_core_field_exists(struct sched_entity, cfs_rq)) {
		if (btf)
			return t->se.cfs_rq->rq->clock;
		return BPF_CORE_READ(t, se.cfs_rq, rq, clock);
	}
	return bpf_ktime_get_ns();
}

static __always_inline u64 task_cgroup(struct task_struct *t, bool btf)
{
	if (cgroup_mode == CG_V2) {
		if (btf)
			return t->cgroups->dfl_cgrp->kn->id;
		return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
	}
	if (cgroup_mode == CG_V1) {
		struct cgroup_subsys_state *css;
		int id;

		/* The loader sets CG_V1 only where /proc/cgroups lists the cpu controller. */
		if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, cpu_cgrp_id))
			return 0;
		id = bpf_core_enum_value(enum cgroup_subsys_id, cpu_cgrp_id);
		if (id < 0 || id >= 16)
			return 0;
		if (btf)
			return t->cgroups->subsys[id]->cgroup->kn->id;
		css = BPF_CORE_READ(t, cgroups, subsys[id]);
		return BPF_CORE_READ(css, cgroup, kn, id);
	}
	return 0;
}

/* cgroup_slot returns cgroup cg's slot, taking a free one on its first wait; 0 (overflow)
 * when none is left. */
static __always_inline u32 cgroup_slot(u64 cg)
{
	u32 *s = bpf_map_lookup_elem(&rq_cgroup_slot, &cg);
	u32 slot;

	if (s)
		return *s;
	if (bpf_map_pop_elem(&rq_free_slots, &slot))
		return 0;
	if (bpf_map_update_elem(&rq_cgroup_slot, &cg, &slot, BPF_NOEXIST)) {
		/* Another CPU took one for cg first (or the hash is full): give ours back. */
		bpf_map_push_elem(&rq_free_slots, &slot, 0);
		s = bpf_map_lookup_elem(&rq_cgroup_slot, &cg);
		return s ? *s : 0;
	}
	return slot;
}

static __always_inline void account(struct task_struct *t, u64 delta, bool btf)
{
	struct cpu_state *cs = cpu_state();
	struct hist *h;
	u32 b = bucket(delta);
	u64 cg;
	u32 slot;

	if (!cs)
		return;
	cs->host.le[b]++;
	cs->host.sum_ns += delta;
	if (cgroup_mode == CG_NONE)
		return;
	cg = task_cgroup(t, btf);
	if (!cg)
		return;
	if (cg == cs->last_cgroup) {
		slot = cs->last_slot;
	} else {
		slot = cgroup_slot(cg);
		cs->last_cgroup = cg;
		cs->last_slot = slot;
	}
	h = bpf_map_lookup_elem(&rq_cgroup_hist, &slot);
	if (!h)
		return;
	h->le[b]++;
	h->sum_ns += delta;
}

/* ---- start stamps: task-local storage ---- */

static __always_inline void ts_stamp(struct task_struct *t, u64 now)
{
	u64 *s = bpf_task_storage_get(&rq_start, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (s)
		*s = now;
	else
		missed();
}

static __always_inline u64 ts_take(struct task_struct *t)
{
	u64 *s = bpf_task_storage_get(&rq_start, t, 0, 0);
	u64 start;

	if (!s)
		return 0;
	start = *s;
	*s = 0;
	return start;
}

/* ---- start stamps: table ---- */

/* The table is a hash of tids with no chains: a slot holds one stamp, of the task whose
 * tid's low 16 bits index it, and its high bits tell which task that is. A wakeup of a
 * task whose slot holds another task's pending stamp overwrites it: that wait is lost,
 * and counted in missed (up to a stamp that was stale, whose task ran unseen). On a host
 * with k tasks waiting at a time, about k/65536 of the waits are lost that way. In return
 * a stamp costs one array access (inlined by the verifier), where a BPF hash costs a
 * bucket lock and an element allocation per wakeup and a delete per switch: 1.06× the
 * ping-pong's time here against 1.21×. Stamps are single 64-bit words, so a slot is
 * never read half-written. */
static __always_inline u64 *tid_slot(u32 tid)
{
	u32 k = tid & (RQ_TID_SLOTS - 1);
	return bpf_map_lookup_elem(&rq_start_tid, &k);
}

static __always_inline void tid_stamp(u32 tid, u64 now)
{
	u64 *s = tid_slot(tid), v, high = (tid >> RQ_TID_BITS) & RQ_TID_HIGH_MASK;

	if (!s)
		return;
	v = *s;
	if (v && (v & RQ_TID_HIGH_MASK) != high)
		missed();
	*s = now << RQ_TID_HIGH | high;
}

static __always_inline u64 tid_take(u32 tid)
{
	u64 *s = tid_slot(tid), v;

	if (!s)
		return 0;
	v = *s;
	/* Another task's stamp: this task's was overwritten, and counted then. */
	if (!v || (v & RQ_TID_HIGH_MASK) != ((tid >> RQ_TID_BITS) & RQ_TID_HIGH_MASK))
		return 0;
	*s = 0;
	return v >> RQ_TID_HIGH;
}

/* ---- the hooks ---- */

#define TASK_RUNNING 0

static __always_inline u32 task_pid(struct task_struct *t, bool btf)
{
	return btf ? t->pid : BPF_CORE_READ(t, pid);
}

static __always_inline unsigned int task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}

static __always_inline int on_wakeup(struct task_struct *p, bool btf, bool ts)
{
	u64 now = clock(p, btf);

	if (ts)
		ts_stamp(p, now);
	else
		tid_stamp(task_pid(p, btf), now);
	return 0;
}

static __always_inline int on_switch(u64 *ctx, bool btf, bool ts)
{
	bool preempt = ctx[0];
	struct task_struct *prev = (void *)ctx[1];
	struct task_struct *next = (void *)ctx[2];
	unsigned int prev_state;
	u64 now = clock(next, btf);
	u32 prev_pid = task_pid(prev, btf), next_pid = task_pid(next, btf);
	u64 start;

	/* prev goes back on the run queue if it was preempted or is still runnable; the
	 * idle task (pid 0) never waits. */
	if (prev_pid) {
		prev_state = switch_has_state ? (unsigned int)ctx[3] : task_state(prev);
		if (preempt || prev_state == TASK_RUNNING) {
			if (ts)
				ts_stamp(prev, now);
			else
				tid_stamp(prev_pid, now);
		}
	}
	if (!next_pid)
		return 0;
	start = ts ? ts_take(next) : tid_take(next_pid);
	if (start && now > start)
		account(next, now - start, btf);
	return 0;
}

/* Task-local storage, typed arguments (tp_btf): the preferred set. */
SEC("tp_btf/sched_wakeup")
int rq_wakeup(u64 *ctx) { return on_wakeup((void *)ctx[0], true, true); }

SEC("tp_btf/sched_wakeup_new")
int rq_wakeup_new(u64 *ctx) { return on_wakeup((void *)ctx[0], true, true); }

SEC("tp_btf/sched_switch")
int rq_switch(u64 *ctx) { return on_switch(ctx, true, true); }

/* Table, typed arguments (tp_btf): kernels without task-local storage for tracing. */
SEC("tp_btf/sched_wakeup")
int rq_wakeup_t(u64 *ctx) { return on_wakeup((void *)ctx[0], true, false); }

SEC("tp_btf/sched_wakeup_new")
int rq_wakeup_new_t(u64 *ctx) { return on_wakeup((void *)ctx[0], true, false); }

SEC("tp_btf/sched_switch")
int rq_switch_t(u64 *ctx) { return on_switch(ctx, true, false); }

/* Table, untyped arguments (raw_tp): where tp_btf does not load. */
SEC("raw_tp/sched_wakeup")
int rq_wakeup_raw(u64 *ctx) { return on_wakeup((void *)ctx[0], false, false); }

SEC("raw_tp/sched_wakeup_new")
int rq_wakeup_new_raw(u64 *ctx) { return on_wakeup((void *)ctx[0], false, false); }

SEC("raw_tp/sched_switch")
int rq_switch_raw(u64 *ctx) { return on_switch(ctx, false, false); }

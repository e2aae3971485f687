//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * oom: OOM-killer victims, from the mark_victim tracepoint: a kernel-side count of kills
 * and one ring-buffer record per killed process.
 *
 * mark_victim is not "a kill". The kernel fires it once per *thread* it marks as a victim
 * (TIF_MEMDIE is per thread: the other threads of a killed process that go on allocating
 * are marked one by one on their way out), and also where nothing is killed: a task that
 * is exiting anyway (task_will_free_mem) is marked to let it reach the memory reserves.
 * What the kernel counts as a kill (vmstat oom_kill, memory.events oom_kill) is raised in
 * __oom_kill_process just before it marks its victim. So a mark counts as kills by how
 * much the kernel's own oom_kill count of the victim's memory cgroup rose since the last
 * mark in that cgroup; where that count cannot be read (no memory controller) or this is
 * the first mark seen in the cgroup, a mark counts once per process (tgid and start time).
 *
 * The record carries what user space could not find out a millisecond later: the victim
 * is dying and its cgroup is often removed right after (a container runtime cleaning up),
 * so the names of its memory cgroup and of the ancestors are copied here, not looked up
 * later. The work per mark is a few map operations, a stack walk, some reads and a
 * submit; kills are rare and the kernel is on a slow path already.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Cgroup names copied per kill: the victim's memory cgroup and up to 7 ancestors, which
 * covers Kubernetes (4 levels under the root on both v1 and systemd v2) with room for
 * nesting. A deeper path is completed in user space, or reported with a leading "…". */
#define OOM_LEVELS 8
/* A kernfs name can be up to 255 bytes; container scopes ("cri-containerd-<64 hex>.scope")
 * take 85, so 128 keeps records at about 1 KiB. A longer name is cut, and user space
 * completes it from the cgroup tree if the cgroup is still there. */
#define OOM_NAME_LEN 128
/* Memory cgroups checked for one at its limit, from the victim's upwards. */
#define OOM_LIMIT_WALK 16
/* Return addresses looked at for mem_cgroup_out_of_memory: it sits 5 or 6 frames below
 * the tracepoint (mark_oom_victim, __oom_kill_process, oom_kill_process, out_of_memory). */
#define OOM_STACK_DEPTH 16

/* Set by the loader. memcg_v1: the memory controller is on a v1 hierarchy, where memsw is
 * the memory+swap limit (on v2 the same union member is swap alone, which never
 * OOM-kills). */
const volatile bool memcg_v1 = false;
/* A counter counts as "at its limit" when usage is within this many pages of max. The
 * loader sizes it in bytes (two huge pages: the charge that failed was at most one) and
 * divides by the page size, which is 4 KiB on x86 but 16 or 64 KiB on some arm64. */
const volatile u64 limit_margin_pages = 1024;
/* The code of mem_cgroup_out_of_memory, [start, end), from /proc/kallsyms; 0 when the
 * loader could not read it (no CAP_SYSLOG, or the function was inlined). A kill whose
 * stack returns into it is memcg-constrained, one whose stack does not is global. */
const volatile u64 memcg_oom_start = 0;
const volatile u64 memcg_oom_end = 0;

/* How the record's constraint was told (oom_event.constraint). */
enum {
	OOM_GUESS = 0,  /* no stack to go by: memcg when some ancestor is at its limit */
	OOM_MEMCG = 1,  /* mem_cgroup_out_of_memory is on the stack */
	OOM_GLOBAL = 2, /* it is not */
};

/* oom_counts: kills as the kernel counts them (the host total, read by user space), and
 * records that did not fit in the ring buffer. */
enum {
	OOM_COUNT_KILLS = 0,
	OOM_COUNT_LOST = 1,
};

struct oom_event {
	u64 kills;           /* kills this record stands for: 1, more if the kernel counted kills in the cgroup whose victims were marked before */
	u64 cgroup_id;       /* victim's memory cgroup: kernfs id = inode of its directory */
	u64 limit_pages;     /* max of the memory cgroup found at its limit, 0 if none */
	u64 rss_anon;        /* pages */
	u64 rss_file;
	u64 rss_shmem;
	u32 pid;             /* the thread the OOM killer chose */
	u32 tgid;            /* its process */
	u32 uid;
	s32 cgroup_level;    /* depth of the victim's memory cgroup, 0 for the root */
	s16 oom_score_adj;
	u8 names_len;        /* entries of names filled, leaf first */
	s8 limit_up;         /* levels above the victim's cgroup of the one at its limit; -1: none */
	u8 constraint;       /* OOM_GUESS, OOM_MEMCG or OOM_GLOBAL */
	char comm[16];
	char names[OOM_LEVELS][OOM_NAME_LEN];
};

/* Keeps struct oom_event in the object's BTF, for bpf2go's -type. */
const struct oom_event *unused_oom_event __attribute__((unused));

/* 64 KiB: about 58 records. Kills are serialised by the kernel's oom_lock and user space
 * drains the ring as each record arrives, so it fills only if picket stalls for as many
 * kills; what does not fit is counted in oom_counts. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} oom_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u64);
} oom_counts SEC(".maps");

/* The kernel's oom_kill count of each memory cgroup a victim was marked in, at that mark,
 * by cgroup id. Least recently used out: a cgroup forgotten counts as first seen again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__type(key, u64);
	__type(value, u64);
} oom_memcg_kills SEC(".maps");

/* A process: its tgid and the start time of its leader (a tgid alone is reused). */
struct oom_proc {
	u64 start_time;
	u32 tgid;
	u32 pad;
};

/* Processes marked already, for the marks that have no count to go by. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__type(key, struct oom_proc);
	__type(value, u8);
} oom_procs SEC(".maps");

static __always_inline void count(u32 which, u64 n)
{
	u64 *v = bpf_map_lookup_elem(&oom_counts, &which);

	if (v)
		__sync_fetch_and_add(v, n);
}

/* The memory cgroup of task in the memory hierarchy, NULL without one. */
static __always_inline struct cgroup_subsys_state *memcg_css(struct task_struct *task)
{
	struct cgroup_subsys_state *css = NULL;
	struct css_set *cset;
	int id;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return NULL;
	id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id < 0 || id >= 16)
		return NULL;
	cset = BPF_CORE_READ(task, cgroups);
	if (!cset || bpf_probe_read_kernel(&css, sizeof(css), &cset->subsys[id]))
		return NULL;
	return css;
}

/* The kills this mark stands for (see the top of the file): 0 for a thread of a process
 * counted already, or a task marked without being killed. */
static __always_inline u64 kills(struct task_struct *task)
{
	struct oom_proc proc = {
		.start_time = BPF_CORE_READ(task, group_leader, start_time),
		.tgid = BPF_CORE_READ(task, tgid),
	};
	u8 one = 1;
	/* Inserted only if absent: true for a process not marked before. */
	bool first = bpf_map_update_elem(&oom_procs, &proc, &one, BPF_NOEXIST) == 0;
	struct cgroup_subsys_state *css = NULL;
	struct task_struct *owner = NULL;
	struct mm_struct *mm;
	u64 id, now, *last;
	long off;
	int ev;

	if (!bpf_core_field_exists(struct mem_cgroup, memory_events_local) ||
	    !bpf_core_enum_value_exists(enum memcg_memory_event, MEMCG_OOM_KILL))
		return first;
	/* The kernel counts the kill for the memory cgroup of the mm's owner. */
	mm = BPF_CORE_READ(task, mm);
	if (mm && bpf_core_field_exists(mm->owner))
		owner = BPF_CORE_READ(mm, owner);
	css = memcg_css(owner ? owner : task);
	if (!css)
		return first;
	ev = bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM_KILL);
	if (ev < 0 || ev >= 32)
		return first;
	off = bpf_core_field_offset(struct mem_cgroup, memory_events_local) -
	      bpf_core_field_offset(struct mem_cgroup, css) + ev * sizeof(atomic_long_t);
	if (bpf_probe_read_kernel(&now, sizeof(now), (void *)css + off))
		return first;
	id = BPF_CORE_READ(css, cgroup, kn, id);
	last = bpf_map_lookup_elem(&oom_memcg_kills, &id);
	if (last) {
		u64 before = *last;

		*last = now;
		return now > before ? now - before : 0;
	}
	bpf_map_update_elem(&oom_memcg_kills, &id, &now, BPF_ANY);
	/* The first mark seen in this cgroup: a kill if the kernel has counted one there and
	 * this process was not marked before (the count may hold kills from before picket). */
	return now > 0 && first;
}

/* Whether mem_cgroup_out_of_memory is on the stack: OOM_MEMCG, OOM_GLOBAL, or OOM_GUESS
 * when its address is unknown or the stack unreadable. */
static __always_inline u8 constraint(void *ctx)
{
	u64 stack[OOM_STACK_DEPTH];
	long n;

	if (!memcg_oom_start)
		return OOM_GUESS;
	n = bpf_get_stack(ctx, stack, sizeof(stack), 0);
	if (n <= 0)
		return OOM_GUESS;
	for (int i = 0; i < OOM_STACK_DEPTH; i++) {
		if (i * sizeof(u64) >= n)
			break;
		/* A return address: just after a call, so it may equal the end. */
		if (stack[i] > memcg_oom_start && stack[i] <= memcg_oom_end)
			return OOM_MEMCG;
	}
	return OOM_GLOBAL;
}

static __always_inline bool at_limit(struct page_counter *pc)
{
	u64 max = BPF_CORE_READ(pc, max);
	s64 usage = BPF_CORE_READ(pc, usage.counter);

	return usage > 0 && (u64)usage + limit_margin_pages >= max;
}

/* The index of an array must be a literal for CO-RE to scale it by the kernel's element
 * size (struct percpu_counter is 40 bytes there, 8 in kernel.h): hence a macro. */
#define RSS_PRE62(mm, member) BPF_CORE_READ((struct mm_struct___pre62 *)(mm), rss_stat.count[member].counter)
#define RSS(mm, member) BPF_CORE_READ(mm, rss_stat[member].count)

static __always_inline u64 pages(s64 n)
{
	return n > 0 ? n : 0;
}

static __always_inline void rss(struct mm_struct *mm, struct oom_event *e)
{
	if (!mm) {
		e->rss_anon = e->rss_file = e->rss_shmem = 0;
		return;
	}
	if (bpf_core_type_exists(struct mm_rss_stat___pre62)) {
		e->rss_anon = pages(RSS_PRE62(mm, MM_ANONPAGES));
		e->rss_file = pages(RSS_PRE62(mm, MM_FILEPAGES));
		e->rss_shmem = pages(RSS_PRE62(mm, MM_SHMEMPAGES));
		return;
	}
	/* The shared count only, as the kernel's own get_mm_counter() reads it: per-CPU
	 * deltas not yet folded in are left out. */
	e->rss_anon = pages(RSS(mm, MM_ANONPAGES));
	e->rss_file = pages(RSS(mm, MM_FILEPAGES));
	e->rss_shmem = pages(RSS(mm, MM_SHMEMPAGES));
}

static __always_inline void memcg(struct task_struct *task, struct oom_event *e)
{
	struct cgroup_subsys_state *css = memcg_css(task);
	struct cgroup *cg;

	if (!css)
		return;
	cg = BPF_CORE_READ(css, cgroup);
	e->cgroup_id = BPF_CORE_READ(cg, kn, id);
	e->cgroup_level = BPF_CORE_READ(cg, level);

	for (int i = 0; i < OOM_LIMIT_WALK; i++) {
		struct cgroup_subsys_state *parent = BPF_CORE_READ(css, parent);
		/* The root has no name and no limit. */
		if (!parent)
			break;
		if (i < OOM_LEVELS) {
			const char *name = BPF_CORE_READ(css, cgroup, kn, name);
			bpf_probe_read_kernel_str(e->names[i], OOM_NAME_LEN, name);
			e->names_len = i + 1;
		}
		/* A global OOM has no cgroup at its limit to name, whatever the usage. */
		if (e->limit_up < 0 && e->constraint != OOM_GLOBAL) {
			/* css is the first member of struct mem_cgroup (container_of). */
			struct mem_cgroup *m = (void *)css - bpf_core_field_offset(struct mem_cgroup, css);
			if (at_limit(&m->memory) || (memcg_v1 && at_limit(&m->memsw))) {
				e->limit_up = i;
				e->limit_pages = BPF_CORE_READ(m, memory.max);
				if (memcg_v1 && !at_limit(&m->memory))
					e->limit_pages = BPF_CORE_READ(m, memsw.max);
			}
		}
		css = parent;
	}
}

static __always_inline int record(void *ctx, struct task_struct *task, uid_t uid)
{
	struct oom_event *e;
	struct mm_struct *mm;
	u64 n = kills(task);

	if (!n)
		return 0;
	/* Counted before the record: a full ring buffer loses the details, not the kill. */
	count(OOM_COUNT_KILLS, n);
	e = bpf_ringbuf_reserve(&oom_events, sizeof(*e), 0);
	if (!e) {
		count(OOM_COUNT_LOST, 1);
		return 0;
	}
	/* Reserved memory is not zeroed: every field is set below. A name is read up to
	 * its NUL (the string reads zero their buffer on failure); bytes after it are stale. */
	e->kills = n;
	e->cgroup_id = 0;
	e->limit_pages = 0;
	e->cgroup_level = 0;
	e->names_len = 0;
	e->limit_up = -1;
	e->constraint = constraint(ctx);

	e->pid = BPF_CORE_READ(task, pid);
	e->tgid = BPF_CORE_READ(task, tgid);
	e->uid = uid;
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	e->oom_score_adj = BPF_CORE_READ(task, signal, oom_score_adj);
	mm = BPF_CORE_READ(task, mm);
	rss(mm, e);
	memcg(task, e);

	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Kernels from 6.8 (and stable backports: Debian's 6.1.133, 5.10.237) pass the victim;
 * older ones only its pid, for which the loader reads the kernel log instead. */
SEC("tp_btf/mark_victim")
int BPF_PROG(oom_mark_victim, struct task_struct *task, uid_t uid)
{
	return record(ctx, task, uid);
}

/* The same for kernels where tp_btf does not load: raw_tp arguments are untyped u64s,
 * and every read above goes through BPF_CORE_READ anyway. */
SEC("raw_tp/mark_victim")
int BPF_PROG(oom_victim_raw, struct task_struct *task, uid_t uid)
{
	return record(ctx, task, uid);
}

//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * oom: one ring-buffer record per OOM-killer victim, from the mark_victim tracepoint.
 *
 * The record carries what user space could not find out a millisecond later: the victim
 * is dying and its cgroup is often removed right after (a container runtime cleaning up),
 * so the names of its memory cgroup and of the ancestors are copied here, not looked up
 * later. The work per kill is a ring-buffer reservation, some reads and a submit; kills
 * are rare and the kernel is on a slow path already.
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
/* A counter counts as "at its limit" when usage is within this many pages of max: the
 * charge that failed was at most a huge page (512 pages of 4 KiB) more than what was left.
 * A global OOM that happens while some ancestor is this close to its own limit is
 * misreported as memcg-constrained; there is no oom_control at this tracepoint to tell. */
#define OOM_LIMIT_MARGIN 1024

/* Set by the loader: the memory controller is on a v1 hierarchy, where memsw is the
 * memory+swap limit (on v2 the same union member is swap alone, which never OOM-kills). */
const volatile bool memcg_v1 = false;

struct oom_event {
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
	char comm[16];
	char names[OOM_LEVELS][OOM_NAME_LEN];
};

/* Keeps struct oom_event in the object's BTF, for bpf2go's -type. */
const struct oom_event *unused_oom_event __attribute__((unused));

/* 64 KiB: about 58 records. Kills are serialised by the kernel's oom_lock and user space
 * drains the ring as each record arrives, so it fills only if picket stalls for as many
 * kills; what does not fit is counted in oom_lost. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} oom_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} oom_lost SEC(".maps");

static __always_inline bool at_limit(struct page_counter *pc)
{
	u64 max = BPF_CORE_READ(pc, max);
	s64 usage = BPF_CORE_READ(pc, usage.counter);

	return usage > 0 && (u64)usage + OOM_LIMIT_MARGIN >= max;
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
	struct cgroup_subsys_state *css = NULL;
	struct css_set *cset;
	struct cgroup *cg;
	int id;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return;
	id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id < 0 || id >= 16)
		return;
	cset = BPF_CORE_READ(task, cgroups);
	if (!cset || bpf_probe_read_kernel(&css, sizeof(css), &cset->subsys[id]) || !css)
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
		if (e->limit_up < 0) {
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

static __always_inline int record(struct task_struct *task, uid_t uid)
{
	struct oom_event *e;
	struct mm_struct *mm;

	e = bpf_ringbuf_reserve(&oom_events, sizeof(*e), 0);
	if (!e) {
		u32 zero = 0;
		u64 *lost = bpf_map_lookup_elem(&oom_lost, &zero);
		if (lost)
			__sync_fetch_and_add(lost, 1);
		return 0;
	}
	/* Reserved memory is not zeroed: every field is set below. A name is read up to
	 * its NUL (the string reads zero their buffer on failure); bytes after it are stale. */
	e->cgroup_id = 0;
	e->limit_pages = 0;
	e->cgroup_level = 0;
	e->names_len = 0;
	e->limit_up = -1;

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
 * older ones only its pid, which the loader detects and refuses with the reason. */
SEC("tp_btf/mark_victim")
int BPF_PROG(oom_mark_victim, struct task_struct *task, uid_t uid)
{
	return record(task, uid);
}

/* The same for kernels where tp_btf does not load: raw_tp arguments are untyped u64s,
 * and every read above goes through BPF_CORE_READ anyway. */
SEC("raw_tp/mark_victim")
int BPF_PROG(oom_victim_raw, struct task_struct *task, uid_t uid)
{
	return record(task, uid);
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kernel.h: the few kernel types picket's probes read, written by hand instead of a
 * multi-megabyte vmlinux.h, so that generating the objects does not depend on the kernel
 * of the machine that runs `make generate`.
 *
 * Every struct carries preserve_access_index: clang records each field access as a CO-RE
 * relocation, and the loader (cilium/ebpf) moves it to the field's offset in the running
 * kernel's BTF. So a struct here lists only the fields a probe reads, in any order, and
 * offsets never matter. A field or type that some supported kernels lack is read behind
 * bpf_core_field_exists()/bpf_core_type_exists(); a layout that changed between kernels
 * gets a second definition with a ___suffix ("flavour"), which CO-RE matches to the
 * kernel type of the name before the suffix.
 *
 * Adding a probe: add the fields it reads to the structs below (one definition per type
 * for all probes), never a copy of a struct.
 */
#ifndef __PICKET_KERNEL_H__
#define __PICKET_KERNEL_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

typedef __u8 u8;
typedef __s8 s8;
typedef __s16 s16;
typedef __u16 u16;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;
typedef __s64 s64;

typedef _Bool bool;
#define true 1
#define false 0

typedef int pid_t;
typedef __u32 uid_t;

/* From the UAPI (include/uapi/linux/bpf.h): stable numbers, not relocated. */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_QUEUE = 22,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
	BPF_F_NO_PREALLOC = 1U << 0,
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1ULL << 0,
};

/* ---- kernel types, relocated by CO-RE ---- */

typedef struct {
	int counter;
} atomic_t;

typedef struct {
	s64 counter;
} atomic64_t;

typedef atomic64_t atomic_long_t;

struct kernfs_node {
	const char *name;
	u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
	int level;
} __attribute__((preserve_access_index));

struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
} __attribute__((preserve_access_index));

/* The array length is only for clang; the index is relocated with bpf_core_enum_value. */
struct css_set {
	struct cgroup_subsys_state *subsys[16];
	struct cgroup *dfl_cgrp; /* the task's cgroup in the v2 (default) hierarchy */
} __attribute__((preserve_access_index));

/* enum cgroup_subsys_id is generated from the kernel's config: read its values with
 * bpf_core_enum_value(), never these placeholders. */
enum cgroup_subsys_id {
	cpu_cgrp_id = 1,
	memory_cgrp_id = 4,
};

struct page_counter {
	atomic_long_t usage;
	unsigned long max;
} __attribute__((preserve_access_index));

/* The kernel's own count of a memory cgroup's events (memory.events.local on v2; on v1
 * memory.oom_control's oom_kill reads the same count). The array's length is only for
 * clang: index it with bpf_core_enum_value(enum memcg_memory_event, …), through
 * bpf_core_field_offset, never with these placeholders. */
enum memcg_memory_event {
	MEMCG_OOM_KILL = 4,
};

/* memsw is memory+swap on cgroup v1 (v2 names the same union member swap: swap only). */
struct mem_cgroup {
	struct cgroup_subsys_state css;
	struct page_counter memory;
	struct page_counter memsw;
	atomic_long_t memory_events_local[9];
} __attribute__((preserve_access_index));

/* Since 6.2 mm->rss_stat is an array of percpu_counter; before, a struct mm_rss_stat. */
struct percpu_counter {
	s64 count;
} __attribute__((preserve_access_index));

struct task_struct;

/* owner: only with CONFIG_MEMCG; the task whose memory cgroup the mm is charged to. */
struct mm_struct {
	struct percpu_counter rss_stat[4];
	struct task_struct *owner;
} __attribute__((preserve_access_index));

struct mm_rss_stat___pre62 {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));

struct mm_struct___pre62 {
	struct mm_rss_stat___pre62 rss_stat;
} __attribute__((preserve_access_index));

/* Anonymous in the kernel, so CO-RE cannot relocate them; unchanged since 4.x. */
enum {
	MM_FILEPAGES = 0,
	MM_ANONPAGES = 1,
	MM_SWAPENTS = 2,
	MM_SHMEMPAGES = 3,
};

struct signal_struct {
	short oom_score_adj;
} __attribute__((preserve_access_index));

/* The run queue's clock (sched_clock, ns), as the scheduler last updated it. */
struct rq {
	u64 clock;
} __attribute__((preserve_access_index));

struct cfs_rq {
	struct rq *rq;
} __attribute__((preserve_access_index));

/* cfs_rq: only with CONFIG_FAIR_GROUP_SCHED; set for every task, whatever its class. */
struct sched_entity {
	struct cfs_rq *cfs_rq;
} __attribute__((preserve_access_index));

/* __state was state (a long) before 5.14. */
struct task_struct {
	unsigned int __state;
	struct sched_entity se;
	pid_t pid;
	pid_t tgid;
	u64 start_time; /* ns since boot (monotonic); with tgid it names a process for good */
	struct task_struct *group_leader;
	char comm[16];
	struct mm_struct *mm;
	struct signal_struct *signal;
	struct css_set *cgroups;
} __attribute__((preserve_access_index));

struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

#endif /* __PICKET_KERNEL_H__ */

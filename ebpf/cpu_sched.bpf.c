// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Run-queue latency and context switches per cgroup.
 *
 * A task's wait starts when it is woken (sched_wakeup, sched_wakeup_new) or when it
 * is switched out while still runnable (preempted); it ends when it is switched in.
 * The wait is charged to the cgroup of the task switched IN (next), read from the
 * task itself, never to whatever task happens to be current.
 *
 * Hot path: sched_switch fires on every context switch, so the switched-out side does
 * no map lookup at all. The kind of the switch-out (woken after blocking = voluntary,
 * preempted = involuntary, new task = none) rides in the two low bits of the stored
 * enqueue time, and both the wait and the context switch are counted with the single
 * per-cgroup lookup made for the task switched in. A task's last switch-out before it
 * exits is therefore not counted; every other one is, one switch-in later.
 *
 * Variants (bpf/variants.py picks the first that loads and attaches; the programs of one
 * variant are never attached together with another's):
 *   tp_btf       kpod_sched_switch, 4 arguments (5.18+), pointers read directly
 *   tp_btf_3arg  kpod_sched_switch_btf3: prev's state read from the task (5.17 and older)
 *   raw_tp       kpod_sched_switch_raw, 4 arguments, every read through bpf_probe_read
 *   raw_tp_3arg  kpod_sched_switch_raw3
 * with kpod_sched_wakeup[_new] (tp_btf) or kpod_sched_wakeup[_new]_raw. One body serves
 * them all: `raw` is a compile-time constant of each always-inlined copy, so a tp_btf
 * program keeps its direct loads and a raw_tp one never dereferences a pointer itself.
 * Kernel quirks behind the variants: ebpf/core_fixes.bpf.h, sched block.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kpod_bpf.h"
#include "core_fixes.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KIND_VOLUNTARY 0ULL   /* woken after blocking */
#define KIND_INVOLUNTARY 1ULL /* preempted, or yielded while runnable */
#define KIND_NEW 2ULL         /* first run of a new task: no switch-out to count */
#define KIND_MASK 3ULL

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* holds only tasks queued right now (dying tasks' stamps are reaped, see reap());
	 * preallocated: a non-preallocated map costs ~60-100 ns more per wake-up here
	 * (measured). Sized at load time: 256 queued tasks per CPU, at least 8192 (0.65 MB);
	 * an insert into a full map fails and is counted (kpod_bpf_map_update_errors). */
	__uint(max_entries, 8192);
	__type(key, __u32);   /* tid */
	__type(value, __u64); /* enqueue time in ns, low two bits: KIND_* */
} cpu_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* cgroup id */
	__type(value, struct kpod_cpu_stats);
} cpu_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KPOD_HEALTH_CPU_N);
	__type(key, __u32);
	__type(value, struct kpod_map_health);
} cpu_health SEC(".maps");

static const struct kpod_cpu_stats zero_stats;

static __always_inline void enqueue(__u32 pid, __u64 now, __u64 kind)
{
	__u64 v = (now & ~KIND_MASK) | kind;

	if (!pid) /* the idle task never waits */
		return;
	if (bpf_map_update_elem(&cpu_start, &pid, &v, BPF_ANY))
		KPOD_HEALTH_INC(cpu_health, KPOD_HEALTH_CPU_START, update_errors);
}

/* A dying task's last switch out. Its stamp is normally gone (deleted when it was last
 * switched in), but a wake-up that finds the task still on its CPU, between preparing
 * to sleep and sleeping, stamps it without a switch-in to follow: if the task then
 * exits, that stamp would stay forever (its tid is never switched in again, or is
 * reused and charged a bogus wait). One delete per exiting thread, never on the
 * common path. */
static __always_inline void reap(__u32 pid)
{
	bpf_map_delete_elem(&cpu_start, &pid);
}

/* tid of a task: a direct (BTF) load in tp_btf programs, a probe read in raw_tp ones */
static __always_inline __u32 task_pid(struct task_struct *t, const bool raw)
{
	return raw ? BPF_CORE_READ(t, pid) : t->pid;
}

static __always_inline void on_wakeup(struct task_struct *p, __u64 kind, const bool raw)
{
	enqueue(task_pid(p, raw), bpf_ktime_get_ns(), kind);
}

static __always_inline void on_switch(bool preempt, struct task_struct *prev,
				      struct task_struct *next, __u64 prev_state, const bool raw)
{
	struct kpod_cpu_stats *st;
	__u32 next_pid = task_pid(next, raw);
	__u32 prev_pid = task_pid(prev, raw);
	__u64 now = bpf_ktime_get_ns();
	__u64 *tsp, start, kind, cg;

	/* still on the run queue: preempted, or switched out without blocking */
	if (preempt || prev_state == 0)
		enqueue(prev_pid, now, KIND_INVOLUNTARY);
	else if (prev_state & KPOD_TASK_DEAD)
		reap(prev_pid);

	if (!next_pid)
		return;
	tsp = bpf_map_lookup_elem(&cpu_start, &next_pid);
	if (!tsp)
		return;
	start = *tsp;
	bpf_map_delete_elem(&cpu_start, &next_pid);
	kind = start & KIND_MASK;
	start &= ~KIND_MASK;

	cg = kpod_task_cgroup_id(next);
	st = kpod_lookup_or_init(&cpu_stats, &cg, &zero_stats, &cpu_health, KPOD_HEALTH_CPU_STATS);
	if (!st)
		return;
	kpod_hist_add(&st->runq, now > start ? now - start : 0);
	if (kind == KIND_VOLUNTARY)
		__sync_fetch_and_add(&st->nvcsw, 1);
	else if (kind == KIND_INVOLUNTARY)
		__sync_fetch_and_add(&st->nivcsw, 1);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(kpod_sched_wakeup, struct task_struct *p)
{
	on_wakeup(p, KIND_VOLUNTARY, false);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(kpod_sched_wakeup_new, struct task_struct *p)
{
	on_wakeup(p, KIND_NEW, false);
	return 0;
}

/* 5.18+: the kernel hands over the state it read before switching */
SEC("tp_btf/sched_switch")
int BPF_PROG(kpod_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	on_switch(preempt, prev, next, prev_state, false);
	return 0;
}

/* 5.17 and older: three arguments, prev's state read from the task (core_fixes.bpf.h) */
SEC("tp_btf/sched_switch")
int BPF_PROG(kpod_sched_switch_btf3, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	on_switch(preempt, prev, next, kpod_task_state(prev), false);
	return 0;
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(kpod_sched_wakeup_raw, struct task_struct *p)
{
	on_wakeup(p, KIND_VOLUNTARY, true);
	return 0;
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(kpod_sched_wakeup_new_raw, struct task_struct *p)
{
	on_wakeup(p, KIND_NEW, true);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(kpod_sched_switch_raw, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	on_switch(preempt, prev, next, prev_state, true);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(kpod_sched_switch_raw3, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	on_switch(preempt, prev, next, kpod_task_state(prev), true);
	return 0;
}

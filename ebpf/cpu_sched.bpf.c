// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Run-queue latency and context switches per cgroup.
 *
 * A task's wait starts when it is woken (sched_wakeup, sched_wakeup_new) or when it
 * is switched out while still runnable (preempted); it ends when it is switched in.
 * The wait is charged to the cgroup of the task switched IN (next), read from the
 * task itself by CO-RE, never to whatever task happens to be current.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kpod_bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);   /* tid */
	__type(value, __u64); /* enqueue time, ns */
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

static __always_inline void enqueue(struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, pid);
	__u64 ts;

	if (!pid) /* the idle task never waits */
		return;
	ts = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&cpu_start, &pid, &ts, BPF_ANY))
		KPOD_HEALTH_INC(cpu_health, KPOD_HEALTH_CPU_START, update_errors);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(kpod_sched_wakeup, struct task_struct *p)
{
	enqueue(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(kpod_sched_wakeup_new, struct task_struct *p)
{
	enqueue(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(kpod_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct kpod_cpu_stats *st;
	__u32 prev_pid = BPF_CORE_READ(prev, pid);
	__u32 next_pid = BPF_CORE_READ(next, pid);
	/* still on the run queue: preempted, or switched out without blocking */
	bool runnable = preempt || prev_state == 0;
	__u64 cg, *tsp;

	if (prev_pid) {
		if (runnable)
			enqueue(prev);
		cg = kpod_task_cgroup_id(prev);
		st = kpod_lookup_or_init(&cpu_stats, &cg, &zero_stats, &cpu_health,
					 KPOD_HEALTH_CPU_STATS);
		if (st) {
			if (runnable)
				__sync_fetch_and_add(&st->nivcsw, 1);
			else
				__sync_fetch_and_add(&st->nvcsw, 1);
		}
	}

	if (!next_pid)
		return 0;
	tsp = bpf_map_lookup_elem(&cpu_start, &next_pid);
	if (!tsp)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 delta = now > *tsp ? now - *tsp : 0;
	bpf_map_delete_elem(&cpu_start, &next_pid);

	cg = kpod_task_cgroup_id(next);
	st = kpod_lookup_or_init(&cpu_stats, &cg, &zero_stats, &cpu_health, KPOD_HEALTH_CPU_STATS);
	if (st)
		kpod_hist_add(&st->runq, delta);
	return 0;
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * OOM kills and major page faults per cgroup.
 *
 * OOM: a victim is marked in the context of whichever task ran into the limit (often
 * not the victim), so the kill is charged to the cgroup of the victim task, never to
 * current. Where oom/mark_victim carries the task (6.9+) the tracepoint is used; older
 * kernels pass only a pid there, so the collector falls back to mark_oom_victim(), the
 * function that fires it, through fentry or else kprobe. One variant is attached.
 *
 * Major faults: a perf-event program on the software event PERF_COUNT_SW_PAGE_FAULTS_MAJ
 * (sample period 1, one event per CPU, opened by userspace). The event is raised
 * synchronously in the faulting task, so current's cgroup is the owner. No kprobe.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kpod_bpf.h"
#include "core_fixes.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* cgroup id */
	__type(value, struct kpod_mem_stats);
} mem_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KPOD_HEALTH_MEM_N);
	__type(key, __u32);
	__type(value, struct kpod_map_health);
} mem_health SEC(".maps");

static const struct kpod_mem_stats zero_stats;

static __always_inline struct kpod_mem_stats *stats_of(__u64 cg)
{
	return kpod_lookup_or_init(&mem_stats, &cg, &zero_stats, &mem_health, KPOD_HEALTH_MEM_STATS);
}

/* The victim's cgroup from a task pointer the verifier knows as a BTF task_struct:
 * the first load is a direct one, so a program whose argument is not such a pointer
 * (mark_victim before 6.9, see core_fixes.bpf.h) is refused instead of counting nothing. */
static __always_inline void count_kill(struct task_struct *victim)
{
	struct css_set *cs = victim->cgroups;
	struct kpod_mem_stats *st = stats_of(BPF_CORE_READ(cs, dfl_cgrp, kn, id));

	if (st)
		__sync_fetch_and_add(&st->oom_kills, 1);
}

/* OOM variant "tp_btf": the tracepoint's task argument (6.9+). */
SEC("tp_btf/mark_victim")
int BPF_PROG(kpod_mark_victim, struct task_struct *task)
{
	count_kill(task);
	return 0;
}

/* OOM variant "fentry": the function that fires the tracepoint, on older kernels. */
SEC("fentry/mark_oom_victim")
int BPF_PROG(kpod_mark_oom_victim, struct task_struct *tsk)
{
	count_kill(tsk);
	return 0;
}

/* OOM variant "kprobe": the same function where fentry is refused (no BTF trampoline). */
SEC("kprobe/mark_oom_victim")
int BPF_KPROBE(kpod_mark_oom_victim_kprobe, struct task_struct *tsk)
{
	struct kpod_mem_stats *st = stats_of(kpod_task_cgroup_id(tsk));

	if (st)
		__sync_fetch_and_add(&st->oom_kills, 1);
	return 0;
}

SEC("perf_event")
int kpod_major_fault(struct bpf_perf_event_data *ctx)
{
	struct kpod_mem_stats *st = stats_of(bpf_get_current_cgroup_id());

	if (st)
		__sync_fetch_and_add(&st->major_faults, 1);
	return 0;
}

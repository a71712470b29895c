// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * OOM kills and major page faults per cgroup.
 *
 * OOM: oom/mark_victim fires in the context of whichever task ran into the limit
 * (often not the victim), so the kill is charged to the cgroup of the tracepoint's
 * task argument, read by CO-RE, never to current.
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

/*
 * The task argument exists since the tracepoint was extended with the victim's
 * uid and memory figures (2024); before that it passed only an int pid, which
 * cannot be turned into a cgroup here. Such kernels count nothing rather than
 * charging the wrong cgroup.
 */
SEC("tp_btf/mark_victim")
int BPF_PROG(kpod_mark_victim, struct task_struct *task)
{
	struct kpod_mem_stats *st;

	if (!bpf_core_field_exists(struct trace_event_raw_mark_victim, uid))
		return 0;
	st = stats_of(kpod_task_cgroup_id(task));
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

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Test object: per thread group, how often sched_switch ran with it as `prev` (in its
 * own context) and as `next` (in another task's context). A group that is switched
 * to again and again but never seen switching away is one whose context this kernel
 * runs no BPF program in (tests/kernel/bpf_blind.py). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct seen {
	__u64 as_prev;
	__u64 as_next;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct seen);
} switches SEC(".maps");

static __always_inline struct seen *of(__u32 tgid)
{
	static const struct seen zero;
	struct seen *s = bpf_map_lookup_elem(&switches, &tgid);

	if (s)
		return s;
	bpf_map_update_elem(&switches, &tgid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&switches, &tgid);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(blind_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct seen *s = of(prev->tgid);

	if (s)
		__sync_fetch_and_add(&s->as_prev, 1);
	s = of(next->tgid);
	if (s)
		__sync_fetch_and_add(&s->as_next, 1);
	return 0;
}

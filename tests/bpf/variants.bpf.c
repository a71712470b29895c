// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Test object for signal variants: each program marks its own key in `hits`, so the
 * test can tell from the map alone which variants really ran. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

/* Maps of one variant each (Variant.maps): created only when that variant loads. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} only_a SEC(".maps"), only_b SEC(".maps");

static __always_inline void mark(void *map)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(map, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void hit(__u32 k)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&hits, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&hits, &k, &one, BPF_NOEXIST);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(var_rejected, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 k = 9;
	__u64 *v = bpf_map_lookup_elem(&hits, &k);
	return *v; /* no NULL check: the verifier must refuse this */
}

SEC("tp_btf/kpod_no_such_tracepoint")
int BPF_PROG(var_nohook, void *x)
{
	hit(8);
	return 0;
}

SEC("raw_tp/kpod_no_such_raw_tracepoint")
int var_noattach(void *ctx)
{
	hit(7);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(var_good_a, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	hit(1);
	mark(&only_a);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(var_good_b, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	hit(2);
	mark(&only_b);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(free_prog, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	hit(3);
	return 0;
}

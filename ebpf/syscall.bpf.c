// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-syscall count, errors and latency per cgroup, for a configured set of syscalls.
 *
 * sys_filter (ARRAY of u8 indexed by syscall nr) is filled by userspace at start-up
 * from the configured names; with it empty nothing is measured, which is why the
 * collector reads it back before attaching. An untracked syscall costs one inlined
 * array lookup on enter, and one register read plus one array lookup on exit.
 * Tracked calls store their start time per thread (sys_start, plain HASH keyed by
 * pid_tgid) and are charged on exit to the calling task's cgroup.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kpod_bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_ERRNO 4095

struct sys_start_val {
	__u64 ts; /* enter time, ns */
	__u32 nr;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KPOD_SYS_NR_MAX);
	__type(key, __u32);  /* syscall nr */
	__type(value, __u8); /* 1: tracked */
} sys_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	/* threads blocked in a tracked syscall (futex, epoll_wait) hold an entry for long;
	 * allocate per entry instead of 1.4 MB up front (tracked calls only pay it) */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct sys_start_val);
} sys_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct kpod_sys_key);
	__type(value, struct kpod_sys_stats);
} sys_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KPOD_HEALTH_SYS_N);
	__type(key, __u32);
	__type(value, struct kpod_map_health);
} sys_health SEC(".maps");

static const struct kpod_sys_stats zero_stats;

static __always_inline bool tracked(long nr)
{
	__u32 idx = (__u32)nr;
	__u8 *on;

	if (nr < 0)
		return false;
	on = bpf_map_lookup_elem(&sys_filter, &idx); /* NULL when nr >= KPOD_SYS_NR_MAX */
	return on && *on;
}

/* The syscall number at sys_exit, from the saved registers; -1 when unknown. */
static __always_inline long exit_nr(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_x86)
	return BPF_CORE_READ(regs, orig_ax);
#elif defined(__TARGET_ARCH_arm64)
	return BPF_CORE_READ(regs, syscallno);
#else
	return -1;
#endif
}

SEC("raw_tp/sys_enter")
int BPF_PROG(kpod_sys_enter, struct pt_regs *regs, long id)
{
	struct sys_start_val v = {};
	__u64 tid;

	if (!tracked(id))
		return 0;
	tid = bpf_get_current_pid_tgid();
	v.ts = bpf_ktime_get_ns();
	v.nr = (__u32)id;
	if (bpf_map_update_elem(&sys_start, &tid, &v, BPF_ANY))
		KPOD_HEALTH_INC(sys_health, KPOD_HEALTH_SYS_START, update_errors);
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(kpod_sys_exit, struct pt_regs *regs, long ret)
{
	struct kpod_sys_key key = {};
	struct sys_start_val *v;
	struct kpod_sys_stats *st;
	__u64 tid, now, delta;
	long nr = exit_nr(regs);

	/* untracked: stop before touching the hash (unknown arch: the hash decides) */
	if (nr >= 0 && !tracked(nr))
		return 0;
	tid = bpf_get_current_pid_tgid();
	v = bpf_map_lookup_elem(&sys_start, &tid);
	if (!v)
		return 0; /* entered before we attached */
	now = bpf_ktime_get_ns();
	delta = now > v->ts ? now - v->ts : 0;
	key.nr = v->nr;
	bpf_map_delete_elem(&sys_start, &tid);

	key.cgroup_id = bpf_get_current_cgroup_id();
	st = kpod_lookup_or_init(&sys_stats, &key, &zero_stats, &sys_health, KPOD_HEALTH_SYS_STATS);
	if (!st)
		return 0;
	kpod_hist_add(&st->latency, delta);
	if (ret < 0 && ret >= -MAX_ERRNO)
		__sync_fetch_and_add(&st->errors, 1);
	return 0;
}

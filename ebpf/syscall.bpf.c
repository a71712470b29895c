// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-syscall count, errors and latency per cgroup, for a configured set of syscalls.
 *
 * sys_filter (ARRAY of u8 indexed by syscall nr) is filled by userspace at start-up
 * from the configured names; with it empty nothing is measured, which is why the
 * collector reads it back before attaching. An untracked syscall costs one inlined
 * array lookup on enter, and one register read plus one array lookup on exit.
 * Tracked calls store their start time per thread and are charged on exit to the
 * calling task's cgroup.
 *
 * Where the start time lives is the difference between the two variants (the
 * collector attaches exactly one pair):
 *   kpod_sys_enter/exit       task-local storage: freed with its task, so exits,
 *                             execs and killed threads leave nothing behind, and the
 *                             number of entries is bounded by the number of tasks.
 *   kpod_sys_enter/exit_hash  a preallocated HASH keyed by pid_tgid, for kernels
 *                             without task storage in tracing programs (see
 *                             core_fixes.bpf.h); bounded by its size, inserts that do
 *                             not fit are counted in sys_health.
 *
 * Kernel-internal restart codes (-ERESTARTSYS ... -ERESTART_RESTARTBLOCK) never reach
 * the program, so they are neither errors nor calls here: such an exit marks the start
 * entry as interrupted and keeps its start time. What follows decides how the call
 * ended, as the program sees it:
 *   - the same call enters again (restarted, with or without a handler): the entry
 *     continues, and the call is charged once, from its first start, when it returns;
 *   - restart_syscall returns (a restart block, e.g. nanosleep): charged as the
 *     interrupted call;
 *   - rt_sigreturn (seen at sys_exit as number -1) returns -EINTR (the handler lacked SA_RESTART, or the code allows
 *     no restart after a handler): the kernel turned the code into EINTR, so the call
 *     is charged once as an EINTR error. rt_sigreturn returns the restored register,
 *     which is the syscall number (x86) or first argument (arm64) when the call is to
 *     be restarted, never -EINTR.
 * A handler that itself makes the interrupted syscall is taken as its restart (the
 * two cannot be told apart at sys_enter); docs/mem-syscalls.md says so.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kpod_bpf.h"
#include "core_fixes.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_ERRNO 4095
#define KPOD_EINTR 4
/* include/linux/errno.h: never seen by userspace */
#define KPOD_ERESTARTSYS 512
#define KPOD_ERESTARTNOINTR 513
#define KPOD_ERESTARTNOHAND 514
#define KPOD_ERESTART_RESTARTBLOCK 516

/* exit_nr() of rt_sigreturn: restoring the signal frame sets the saved syscall number
 * to -1 (x86 restore_sigcontext, arm64 forget_syscall), so no other exit shows it */
#define KPOD_NR_SIGRETURN_EXIT -1
#if defined(__TARGET_ARCH_x86)
#define KPOD_NR_RESTART_SYSCALL 219
#elif defined(__TARGET_ARCH_arm64)
#define KPOD_NR_RESTART_SYSCALL 128
#else
#define KPOD_NR_RESTART_SYSCALL -3
#endif

struct sys_start_val {
	__u64 ts; /* first enter time, ns; 0: no call in flight */
	__u32 nr;
	__u32 interrupted; /* 1: the call exited with a restart code, its end is pending */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KPOD_SYS_NR_MAX);
	__type(key, __u32);  /* syscall nr */
	__type(value, __u8); /* 1: tracked */
} sys_filter SEC(".maps");

/* variant "task_storage": one value per task that made a tracked call */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for local storage */
	__type(key, int);
	__type(value, struct sys_start_val);
} sys_task_start SEC(".maps");

/* variant "hash": threads in a tracked call; preallocated (KPOD_SYS_START_HASH_FLAGS) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, KPOD_SYS_START_HASH_FLAGS);
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

/* The syscall number at sys_exit, from the saved registers; -1 after rt_sigreturn,
 * -2 when the architecture is unknown. */
static __always_inline long exit_nr(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_x86)
	return BPF_CORE_READ(regs, orig_ax);
#elif defined(__TARGET_ARCH_arm64)
	return BPF_CORE_READ(regs, syscallno);
#else
	return -2;
#endif
}

/* One completed call of `nr` taking `delta` ns and returning `ret`, charged to current. */
static __always_inline void charge(__u32 nr, __u64 delta, long ret)
{
	struct kpod_sys_key key = {};
	struct kpod_sys_stats *st;

	key.nr = nr;
	key.cgroup_id = bpf_get_current_cgroup_id();
	st = kpod_lookup_or_init(&sys_stats, &key, &zero_stats, &sys_health, KPOD_HEALTH_SYS_STATS);
	if (!st)
		return;
	kpod_hist_add(&st->latency, delta);
	if (ret < 0 && ret >= -MAX_ERRNO)
		__sync_fetch_and_add(&st->errors, 1);
}

static __always_inline bool restart_code(long ret)
{
	return ret == -KPOD_ERESTARTSYS || ret == -KPOD_ERESTARTNOINTR ||
	       ret == -KPOD_ERESTARTNOHAND || ret == -KPOD_ERESTART_RESTARTBLOCK;
}

/* A tracked call `id` enters: a fresh start, or the restart of the interrupted one. */
static __always_inline void begin(struct sys_start_val *v, long id)
{
	if (v->ts && v->interrupted && v->nr == (__u32)id) {
		v->interrupted = 0; /* restarted: charged from its first start */
		return;
	}
	v->ts = bpf_ktime_get_ns();
	v->nr = (__u32)id;
	v->interrupted = 0;
}

/* Syscall `nr` returns `ret`; true when the entry's call was charged (entry done). */
static __always_inline bool finish(struct sys_start_val *v, long nr, long ret)
{
	__u64 now, ts = v->ts;

	if (!ts)
		return false; /* entered before we attached */
	if (nr == KPOD_NR_SIGRETURN_EXIT) {
		if (!v->interrupted || ret != -KPOD_EINTR)
			return false; /* not after our call, or the call restarts */
	} else if (restart_code(ret)) {
		v->interrupted = 1;
		return false;
	}
	now = bpf_ktime_get_ns();
	v->ts = 0;
	v->interrupted = 0;
	charge(v->nr, now > ts ? now - ts : 0, ret);
	return true;
}

/* ---- variant "task_storage" ------------------------------------------------------- */

SEC("raw_tp/sys_enter")
int BPF_PROG(kpod_sys_enter, struct pt_regs *regs, long id)
{
	struct sys_start_val *v;

	if (!tracked(id))
		return 0;
	v = bpf_task_storage_get(&sys_task_start, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v) {
		KPOD_HEALTH_INC(sys_health, KPOD_HEALTH_SYS_START, update_errors);
		return 0;
	}
	begin(v, id);
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(kpod_sys_exit, struct pt_regs *regs, long ret)
{
	struct sys_start_val *v;
	long nr = exit_nr(regs);

	/* untracked: stop before touching the storage; restart_syscall ends an
	 * interrupted call, and a negative nr (rt_sigreturn, or an unknown arch) goes
	 * on to the storage too */
	if (nr >= 0 && !tracked(nr) && nr != KPOD_NR_RESTART_SYSCALL)
		return 0;
	v = bpf_task_storage_get(&sys_task_start, bpf_get_current_task_btf(), 0, 0);
	if (v)
		finish(v, nr, ret);
	return 0;
}

/* ---- variant "hash" --------------------------------------------------------------- */

SEC("raw_tp/sys_enter")
int BPF_PROG(kpod_sys_enter_hash, struct pt_regs *regs, long id)
{
	struct sys_start_val fresh = {}, *v;
	__u64 tid;

	if (!tracked(id))
		return 0;
	tid = bpf_get_current_pid_tgid();
	v = bpf_map_lookup_elem(&sys_start, &tid);
	if (v) {
		begin(v, id);
		return 0;
	}
	begin(&fresh, id);
	if (bpf_map_update_elem(&sys_start, &tid, &fresh, BPF_ANY))
		KPOD_HEALTH_INC(sys_health, KPOD_HEALTH_SYS_START, update_errors);
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(kpod_sys_exit_hash, struct pt_regs *regs, long ret)
{
	struct sys_start_val *v;
	__u64 tid;
	long nr = exit_nr(regs);

	if (nr >= 0 && !tracked(nr) && nr != KPOD_NR_RESTART_SYSCALL)
		return 0;
	tid = bpf_get_current_pid_tgid();
	v = bpf_map_lookup_elem(&sys_start, &tid);
	if (v && finish(v, nr, ret))
		bpf_map_delete_elem(&sys_start, &tid);
	return 0;
}

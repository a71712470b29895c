// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-syscall count, errors and latency per cgroup, for a configured set of syscalls.
 *
 * sys_filter (ARRAY of u8 indexed by syscall nr) is filled by userspace at start-up
 * from the configured names; with it empty nothing is measured, which is why the
 * collector reads it back before attaching. Each value is a bit set of the ABIs whose
 * number it is (KPOD_SYS_FILTER_NATIVE, KPOD_SYS_FILTER_IA32): on x86_64 a 32-bit
 * (ia32) call is numbered in the ia32 table, so its number is looked up in the same
 * array but tested against the ia32 bit, and charged under KPOD_SYS_NR_IA32 + its
 * number, which userspace names from the ia32 table (core_fixes.bpf.h: how a compat
 * call is recognised). An untracked syscall costs one inlined array lookup on enter,
 * and one register read plus one array lookup on exit; the ABI is read only for
 * numbers some ABI tracks (and, at exit, restart_syscall's: 219, and 0 on x86, ia32's
 * restart_syscall and x86_64's read). Tracked calls store their start time per thread and are
 * charged on exit to the calling task's cgroup.
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
 *     interrupted call (ia32 has its own restart_syscall number, 0);
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
#define KPOD_NR_RESTART_SYSCALL_IA32 0 /* arch/x86/entry/syscalls/syscall_32.tbl */
#elif defined(__TARGET_ARCH_arm64)
#define KPOD_NR_RESTART_SYSCALL 128
#else
#define KPOD_NR_RESTART_SYSCALL -3
#endif

struct sys_start_val {
	__u64 ts; /* first enter time, ns; 0: no call in flight */
	__u32 nr; /* as in kpod_sys_key: KPOD_SYS_NR_IA32 + nr for an ia32 call */
	__u32 interrupted; /* 1: the call exited with a restart code, its end is pending */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KPOD_SYS_NR_MAX);
	__type(key, __u32);  /* syscall nr */
	__type(value, __u8); /* KPOD_SYS_FILTER_* bits: the ABIs whose nr is tracked */
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

/* The ABIs (KPOD_SYS_FILTER_* bits) that track number `nr`; 0 for none. */
static __always_inline __u8 filter_bits(long nr)
{
	__u32 idx = (__u32)nr;
	__u8 *on;

	if (nr < 0)
		return 0;
	on = bpf_map_lookup_elem(&sys_filter, &idx); /* NULL when nr >= KPOD_SYS_NR_MAX */
	return on ? *on : 0;
}

/* The current call's ABI: its filter bit and the offset of its stats number. A compat
 * call of an architecture without a table here (arm64's AArch32) has no bit: never
 * tracked. */
struct sys_abi {
	__u8 bit;
	__u32 base;
	bool ia32;
};

static __always_inline struct sys_abi current_abi(struct pt_regs *regs)
{
	struct sys_abi abi = {KPOD_SYS_FILTER_NATIVE, 0, false};
	int compat = kpod_sys_compat(regs);

	if (compat == 1) {
		abi.bit = KPOD_SYS_FILTER_IA32;
		abi.base = KPOD_SYS_NR_IA32;
		abi.ia32 = true;
	} else if (compat) {
		abi.bit = 0;
	}
	return abi;
}

/* May `nr` end an interrupted call of some ABI (restart_syscall)? */
static __always_inline bool restart_nr(long nr)
{
#if defined(__TARGET_ARCH_x86)
	return nr == KPOD_NR_RESTART_SYSCALL || nr == KPOD_NR_RESTART_SYSCALL_IA32;
#else
	return nr == KPOD_NR_RESTART_SYSCALL;
#endif
}

static __always_inline bool restart_nr_of(long nr, const struct sys_abi *abi)
{
#if defined(__TARGET_ARCH_x86)
	if (abi->ia32)
		return nr == KPOD_NR_RESTART_SYSCALL_IA32;
#endif
	return nr == KPOD_NR_RESTART_SYSCALL;
}

/* sys_enter of `id`: its stats number when tracked, else -1. */
static __always_inline long enter_key(struct pt_regs *regs, long id)
{
	__u8 bits = filter_bits(id);
	struct sys_abi abi;

	if (!bits)
		return -1; /* the untracked fast path: no ABI read */
	abi = current_abi(regs);
	if (!(bits & abi.bit))
		return -1;
	return (long)(abi.base + (__u32)id);
}

/* sys_exit: false when the exit cannot end a tracked call (stop before the storage);
 * else *nr and *ret as the call's ABI numbers them (32-bit for ia32). A negative nr
 * (rt_sigreturn, or an unknown arch) goes on to the storage. */
static __always_inline bool exit_relevant(struct pt_regs *regs, long *nr, long *ret)
{
	__u8 bits = 0;
	struct sys_abi abi;

	if (*nr >= 0) {
		bits = filter_bits(*nr);
		if (!bits && !restart_nr(*nr))
			return false; /* the untracked fast path */
	}
	abi = current_abi(regs);
	if (abi.ia32) {
		*nr = (int)*nr;
		*ret = (int)*ret;
	}
	if (*nr >= 0 && !(bits & abi.bit) && !restart_nr_of(*nr, &abi))
		return false;
	return true;
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

/* A tracked call `id` (its stats number) enters: a fresh start, or the restart of the
 * interrupted one. */
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

	id = enter_key(regs, id);
	if (id < 0)
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
	if (!exit_relevant(regs, &nr, &ret))
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

	id = enter_key(regs, id);
	if (id < 0)
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

	if (!exit_relevant(regs, &nr, &ret))
		return 0;
	tid = bpf_get_current_pid_tgid();
	v = bpf_map_lookup_elem(&sys_start, &tid);
	if (v && finish(v, nr, ret))
		bpf_map_delete_elem(&sys_start, &tid);
	return 0;
}

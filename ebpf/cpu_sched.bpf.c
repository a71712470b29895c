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
 * Who held the CPU: the same switch-in charges the wait to pairs (waiter's cgroup,
 * holder's cgroup) in cpu_holders, time-weighted over the turns of the CPU: a per-CPU
 * ring (cpu_turns) keeps the last KPOD_TURNS turns (a run of tasks of one cgroup is one
 * turn), and each turn that overlaps the wait is charged its part of it. The idle task
 * is holder 0: a wake-up with nobody to blame. A wait reaching back beyond the ring
 * gives its earliest part to the oldest turn kept; a waiter pulled to another CPU is
 * charged to that CPU's turns. Per waiter, the waits over its holders add up to its
 * run-queue histogram's sum: both are updated from one reading of the clock.
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

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	/* pairs seen since the last read (snap-and-reset); sized at load time
	 * (collectors/ebpf/runqueue.py); LRU evictions are counted by userspace */
	__uint(max_entries, 16384);
	__type(key, struct kpod_holder_key);
	__type(value, struct kpod_holder_stats);
} cpu_holders SEC(".maps");

/* Per CPU: the last KPOD_TURNS turns, a ring of (start, cgroup) with `head` the turn
 * running now. Consecutive turns of one cgroup are one turn. Not read by userspace (a
 * per-CPU array: no lock, no hashing; a sched_switch never nests on its own CPU). */
#define KPOD_TURNS 16
#define KPOD_TURNS_MASK (KPOD_TURNS - 1)

struct cpu_turns {
	__u64 start_ns[KPOD_TURNS]; /* when the turn began (0: slot never used) */
	__u64 cgroup[KPOD_TURNS];   /* whose turn (0: the idle task) */
	__u32 head;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_turns);
} cpu_turns SEC(".maps");

static const struct kpod_cpu_stats zero_stats;
static const struct kpod_holder_stats zero_holder;

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

/* cgroup id of a task: direct loads in tp_btf programs (no helper call per pointer of
 * the chain; measured 25-40 ns per switch), probe reads in raw_tp ones */
static __always_inline __u64 task_cgroup(struct task_struct *t, const bool raw)
{
	return raw ? kpod_task_cgroup_id(t) : t->cgroups->dfl_cgrp->kn->id;
}

static __always_inline void on_wakeup(struct task_struct *p, __u64 kind, const bool raw)
{
	enqueue(task_pid(p, raw), bpf_ktime_get_ns(), kind);
}

static __always_inline void charge_holder(__u64 waiter, __u64 holder, __u64 ns)
{
	struct kpod_holder_key hk = { .cgroup_id = waiter, .holder_cgroup_id = holder };
	struct kpod_holder_stats *hs;

	if (!ns)
		return;
	hs = kpod_lookup_or_init(&cpu_holders, &hk, &zero_holder, &cpu_health,
				 KPOD_HEALTH_CPU_HOLDERS);
	if (hs)
		__sync_fetch_and_add(&hs->wait_ns, ns);
}

/* Charge [start, now) of a waiter to the turns of this CPU that overlap it, newest
 * first, one pair update per run of turns of one cgroup. A wait older than the ring
 * gives its earliest part to the oldest turn known; with no turn known (the first
 * switches after attaching) the whole wait goes to `fallback`, prev's cgroup. */
static __always_inline void charge_turns(struct cpu_turns *r, __u64 waiter, __u64 start,
					 __u64 now, __u64 fallback)
{
	__u64 end = now, acc = 0, acc_cg = fallback, t, cg, from;
	__u32 j, i;

	for (i = 0; i < KPOD_TURNS; i++) {
		j = r->head - i;
		barrier_var(j);
		j &= KPOD_TURNS_MASK;
		t = r->start_ns[j];
		cg = r->cgroup[j];
		if (!t)
			break;
		from = (t > start && i < KPOD_TURNS - 1) ? t : start;
		if (cg != acc_cg && acc) {
			charge_holder(waiter, acc_cg, acc);
			acc = 0;
		}
		acc_cg = cg;
		acc += end > from ? end - from : 0;
		end = from;
		if (end <= start)
			break;
	}
	/* the ring did not reach back to the start: the oldest turn known takes the rest */
	acc += end > start ? end - start : 0;
	charge_holder(waiter, acc_cg, acc);
}

/* `cg` has the CPU from `now` on */
static __always_inline void push_turn(struct cpu_turns *r, __u64 now, __u64 cg)
{
	__u32 h = r->head & KPOD_TURNS_MASK;

	if (r->start_ns[h] && r->cgroup[h] == cg)
		return;
	h = (h + 1) & KPOD_TURNS_MASK;
	r->start_ns[h] = now;
	r->cgroup[h] = cg;
	r->head = h;
}

static __always_inline void on_switch(bool preempt, struct task_struct *prev,
				      struct task_struct *next, __u64 prev_state, const bool raw)
{
	struct kpod_cpu_stats *st;
	struct cpu_turns *turns;
	__u32 next_pid = task_pid(next, raw);
	__u32 prev_pid = task_pid(prev, raw);
	__u64 now = bpf_ktime_get_ns();
	__u64 *tsp, start, kind, wait;
	__u64 cg = next_pid ? task_cgroup(next, raw) : 0;
	__u32 zero = 0;

	/* still on the run queue: preempted, or switched out without blocking */
	if (preempt || prev_state == 0)
		enqueue(prev_pid, now, KIND_INVOLUNTARY);
	else if (prev_state & KPOD_TASK_DEAD)
		reap(prev_pid);

	turns = bpf_map_lookup_elem(&cpu_turns, &zero);
	if (!next_pid)
		goto turn;
	tsp = bpf_map_lookup_elem(&cpu_start, &next_pid);
	if (!tsp)
		goto turn;
	start = *tsp;
	bpf_map_delete_elem(&cpu_start, &next_pid);
	kind = start & KIND_MASK;
	start &= ~KIND_MASK;

	st = kpod_lookup_or_init(&cpu_stats, &cg, &zero_stats, &cpu_health, KPOD_HEALTH_CPU_STATS);
	if (!st)
		goto turn;
	wait = now > start ? now - start : 0;
	kpod_hist_add(&st->runq, wait);
	if (kind == KIND_VOLUNTARY)
		__sync_fetch_and_add(&st->nvcsw, 1);
	else if (kind == KIND_INVOLUNTARY)
		__sync_fetch_and_add(&st->nivcsw, 1);
	if (turns)
		charge_turns(turns, cg, start, now, prev_pid ? task_cgroup(prev, raw) : 0);
turn:
	if (turns)
		push_turn(turns, now, cg);
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

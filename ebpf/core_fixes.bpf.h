/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel-version quirks, one delimited block per program family. Each quirk names the
 * kernel version (and commit) that made it necessary. Included after vmlinux.h and
 * bpf_core_read.h.
 */
#ifndef KPOD_CORE_FIXES_BPF_H
#define KPOD_CORE_FIXES_BPF_H

/* ---- bio (ebpf/bio.bpf.c) ---- */

/*
 * The disk of a request: `rq->rq_disk` until 5.15; 5.15 added `q->disk` (d152c682f03c
 * "block: add an explicit ->disk backpointer to the request_queue") and 5.16 removed
 * `rq->rq_disk` (f3fa33acca9f). vmlinux.h is newer, so the old field is declared here
 * as a CO-RE flavour; libbpf keeps whichever branch exists on the running kernel.
 */
struct request___kpod_old {
	struct gendisk *rq_disk;
};

static __always_inline struct gendisk *kpod_rq_disk(struct request *rq)
{
	struct request___kpod_old *old = (void *)rq;

	if (bpf_core_field_exists(old->rq_disk))
		return BPF_CORE_READ(old, rq_disk);
	return BPF_CORE_READ(rq, q, disk);
}

/*
 * Tracepoint arguments: until 5.10 block_rq_issue passed (q, rq) and block_getrq
 * (q, bio, op); 5.11 dropped the request_queue (a54895fa057c "block: remove the
 * request_queue to argument request based tracepoints" and its bio-side sibling in
 * the same series). bio.bpf.c has a `_q` program for each; a program reading an
 * argument the tracepoint lacks is refused by the verifier, so exactly one of each
 * pair loads on any kernel.
 */

/* ---- end of bio ---- */

/* ---- net (ebpf/net.bpf.c) ---- */

/*
 * The socket's owner. Since 5.15, commit 8520e224f547 ("bpf, cgroups: Fix cgroup v2
 * fallback on v1/v2 mixed mode"), sock_cgroup_data holds `struct cgroup *cgroup`.
 * Before it (5.10) it was a union whose `val` held the cgroup pointer, or, with bit 0
 * (is_data: net_prio/net_cls data instead of a pointer) or bit 1 (no_refcnt, set when
 * cgroup v2 socket accounting was switched off for new sockets) set, no owner at all;
 * the kernel's own sock_cgroup_ptr() then answers the root cgroup. Both cases are
 * "owner unknown" here (0), and the socket is skipped.
 */
struct sock_cgroup_data___pre515 {
	__u64 val;
} __attribute__((preserve_access_index));

/* `raw`: read every pointer through bpf_probe_read (raw_tp, kprobe); otherwise the
 * socket is a BTF pointer and the new layout is read with direct loads. */
static __always_inline __u64 kpod_sk_cgroup_id(const struct sock *sk, const bool raw)
{
	__u64 val;

	if (bpf_core_field_exists(sk->sk_cgrp_data.cgroup)) {
		if (raw)
			return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
		return sk->sk_cgrp_data.cgroup->kn->id;
	}
	val = BPF_CORE_READ((struct sock_cgroup_data___pre515 *)&sk->sk_cgrp_data, val);
	if (!val || (val & 3))
		return 0;
	return BPF_CORE_READ((struct cgroup *)val, kn, id);
}

/*
 * tcp_retransmit_skb got a third argument, `int err`, in 6.13 (the tracepoint moved to
 * the end of __tcp_retransmit_skb's error paths too, so it now also fires for attempts
 * that failed, some before RetransSegs is touched). Before 6.13 it fires on success
 * only, with two arguments, and reading ctx[2] would be refused (tp_btf) or read past
 * the arguments (raw_tp). The `err` field of the trace event record appeared in the
 * same commit and tells the two shapes apart at load time.
 */
/* a local flavour of the record, so this compiles against any vmlinux.h (the arm64
 * header comes from a 6.1 kernel, where the record type has no such name) */
struct trace_event_raw_tcp_retransmit_skb___kpod {
	int err;
} __attribute__((preserve_access_index));

static __always_inline bool kpod_retransmit_has_err(void)
{
	return bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb___kpod, err);
}

/*
 * Socket-local storage (BPF_MAP_TYPE_SK_STORAGE) is usable from tracing programs
 * (fentry/fexit, tp_btf) only since 5.11, commit 8e4597c627fb ("bpf: Allow using
 * bpf_sk_storage in FENTRY/FEXIT/RAW_TP"); 5.10's verifier does not know the helper
 * there ("unknown func bpf_sk_storage_get", EINVAL, measured on Debian 11) and raw_tp
 * programs never got it. The connection-state variants for those kernels mark counted
 * sockets in an LRU hash keyed by the socket's address instead (tcp_opened_hash).
 */

/*
 * TCP bytes before 6.3, which added the sock_send_length/sock_recv_length tracepoints
 * ("net: add sock_send_length and sock_recv_length tracepoints", 6.3-rc1): the
 * fentry variant hooks the address-family handlers those tracepoints wrap,
 * inet_sendmsg/inet6_sendmsg(sock, msg, size) and inet_recvmsg/inet6_recvmsg(sock,
 * msg, size, flags), whose return value is the bytes moved, exactly as the tracepoints
 * report it. Their prototypes are the same from 5.10 to 6.18 (checked in the BTF of
 * Debian's 5.10, 6.1 and 6.12). Until 6.5 ("sock: Remove ->sendpage*() in favour
 * of sendmsg(MSG_SPLICE_PAGES)", 6.5-rc1), sendfile and splice to a
 * socket bypassed sendmsg through inet_sendpage(sock, page, offset, size, flags), so the
 * fentry variant for older kernels hooks that too (the 6.3/6.4 tracepoints miss it).
 */

/*
 * Histogram programs on 6.1 (tcp_probe): refused with EACCES until kpod_hist_add()
 * bounded the slot on the indexing register; see "Histogram slot" in the syscall and
 * mem block.
 */

/*
 * Retransmit causes: TCPHDR_SYN (0x02) is the TCP header bit and ICSK_TIME_LOSS_PROBE
 * (5) the probe timer's code in include/net/inet_connection_sock.h, unchanged since
 * tail-loss probes came in 3.10 (both #defines, absent from BTF). tcp_skb_cb.tcp_flags is a __u8 on 5.10 and 6.1 and a __u16 on 6.18, and
 * icsk_ca_state is a bitfield: both are read with BPF_CORE_READ_BITFIELD_PROBED, which
 * takes the field's size and offset from the running kernel. Loss probes are told by
 * the kernel stack (tcp_send_loss_probe's address range from /proc/kallsyms), which
 * needs no field at all; where kallsyms hides addresses (kptr_restrict and no
 * CAP_SYSLOG) the range stays 0 and loss-probe retransmits are counted as `fast`.
 */
#define KPOD_ICSK_TIME_LOSS_PROBE 5

/* ---- end of net ---- */

/* ---- syscall and mem (ebpf/syscall.bpf.c, ebpf/mem.bpf.c) ---- */

/*
 * Tracing programs (raw_tp, kprobe, perf_event, ...) may use hash maps allocated at run
 * time only since 6.1, commit 96da3f7d489d ("bpf: Remove tracing program restriction on
 * map types", with the hash map's move to bpf_mem_alloc). Before it the verifier refuses
 * them: "trace type programs with run-time allocated hash maps are unsafe" (measured on
 * Debian 11's 5.10). The "hash" fallback of the syscall start map is for exactly those
 * kernels, so it is preallocated: no BPF_F_NO_PREALLOC.
 */
#define KPOD_SYS_START_HASH_FLAGS 0

/*
 * Task-local storage (BPF_MAP_TYPE_TASK_STORAGE) came in 5.11 for LSM programs only;
 * tracing programs may use it since 5.13, commit a10787e6d58c ("bpf: Enable task local
 * storage for tracing programs"), with bpf_get_current_task_btf() (5.11, commit
 * 3ca1032ab7ab) to name the current task. The syscall collector's preferred variant
 * keeps each thread's start time there; 5.10 takes the "hash" variant.
 */

/*
 * oom/mark_victim passes the victim task (and its uid) since 6.9, commit 72ba14deb40a
 * ("mm: update mark_victim tracepoints fields"; also in some stable trees). Before it
 * the only argument is `int pid`, which cannot be turned into a cgroup in BPF. The
 * tp_btf program dereferences the argument as a BTF pointer, so on those kernels the
 * verifier refuses it (the argument is a scalar) and the collector falls back to the
 * function that marks the victim, mark_oom_victim(struct task_struct *), through
 * fentry or kprobe.
 */

/*
 * Histogram slot (kpod_hist_add in kpod_bpf.h, used by kpod_sys_exit*): before 6.10 the
 * verifier loses the bounds of OR with a non-constant operand, which kpod_slot() uses,
 * and clang drops the clamp it can prove redundant, so 6.1 refused sys_exit with EACCES
 * (issue 12). kpod_hist_add() masks the index on the register that indexes, behind
 * barrier_var(). (Found by helper `sched`, who documents it for cpu_sched as well.)
 */

/*
 * 32-bit compat syscalls (ia32 on x86_64). raw_tp/sys_enter's `id` and the saved
 * orig_ax at sys_exit are numbers of the table the call went through, and an ia32 call
 * (int 0x80, sysenter, syscall from 32-bit code; a 64-bit task may use int 0x80 too)
 * goes through the ia32 table. The kernel tells them apart by TS_COMPAT (0x0002) in
 * current->thread_info.status (in_ia32_syscall()): syscall_32_enter() sets it before
 * the sys_enter tracepoint and arch_exit_to_user_mode_prepare() clears it after
 * sys_exit, so it holds at both hooks. Field and bit are the same from 5.10 (where
 * syscall_32_enter() came with the generic entry code in 5.9) to 6.18; TS_COMPAT is a
 * #define, absent from BTF, so it is repeated here. The field is read through CO-RE
 * (bpf_get_current_task() and probe reads, which 5.10 has for the "hash" variant); a
 * kernel without it (no IA32_EMULATION changes nothing: the bit is then never set)
 * answers "native".
 *
 * The return value of an ia32 call is 32 bits wide: regs->ax is sign-extended when a
 * handler returns it, but rt_sigreturn and sigreturn restore it from the 32-bit
 * sigcontext (ia32_restore_sigcontext(): `regs->ax = sc.ax`, a u32), so an EINTR that
 * the kernel put in the frame comes back as 0xfffffffc. Both the number and the value
 * are taken as 32-bit ints for ia32 calls.
 *
 * x32 calls (X86_X32_ABI) carry __X32_SYSCALL_BIT (0x40000000) in the number, above
 * the filter, so they are never tracked. arm64's AArch32 tasks have no table here:
 * their calls are recognised by PSTATE (PSR_MODE32_BIT, 0x10, architectural) in the
 * saved registers and not tracked at all.
 */
#define KPOD_TS_COMPAT 0x0002
#define KPOD_PSR_MODE32_BIT 0x10

/* 1: the current syscall is an ia32 one (x86), 2: a compat call of an architecture
 * without a table here (arm64 AArch32), 0: native */
static __always_inline int kpod_sys_compat(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_x86)
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

	if (!bpf_core_field_exists(t->thread_info.status))
		return 0;
	return (BPF_CORE_READ(t, thread_info.status) & KPOD_TS_COMPAT) ? 1 : 0;
#elif defined(__TARGET_ARCH_arm64)
	return (BPF_CORE_READ(regs, pstate) & KPOD_PSR_MODE32_BIT) ? 2 : 0;
#else
	return 0;
#endif
}

/* ---- end of syscall and mem ---- */

/* ---- sched (ebpf/cpu_sched.bpf.c) ---- */

/*
 * task_struct::state became task_struct::__state (and `volatile long` became
 * `unsigned int`) in 5.14, commit 2f064a59a11f ("sched: Change task_struct::state").
 * The 3-argument sched_switch variants read prev's state from the task itself, so they
 * need whichever field this kernel has. The flavour below describes the pre-5.14 layout;
 * libbpf drops the `___pre514` suffix when it matches it against the kernel's BTF.
 */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline __u64 kpod_task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}

/*
 * sched_switch got its 4th argument, `unsigned int prev_state`, in 5.18, commit
 * fa2c3254d7cf ("sched/tracing: Don't re-read p->state when emitting sched_switch
 * event"). Before it, tp_btf programs that read ctx[3] are refused ("func
 * 'sched_switch' doesn't have 4-th argument") and raw_tp programs that do fail to attach
 * (EINVAL: the program reads past the tracepoint's 3 arguments). The kernel reads
 * prev->__state once, before the switch; reading it again from the tracepoint (the
 * 3-argument variants, 5.17 and older) can see a concurrent wake-up's TASK_RUNNING, so
 * a task that blocked and was woken during the switch is counted as preempted.
 */

/*
 * A task that exits makes its last switch out with state TASK_DEAD: 0x0080 in
 * include/linux/sched.h of every kernel of the matrix (5.10, 6.1, 6.12, 6.18; older
 * kernels are not supported). It is a #define, absent from BTF, so CO-RE cannot relocate
 * it; a kernel that renumbers it would show up as a growing cpu_start map.
 */
#define KPOD_TASK_DEAD 0x80

/*
 * On Debian 12's 6.1 every cpu_sched program was refused with EACCES ("R3 unbounded
 * memory access", measured in the VM): the histogram slot, see "Histogram slot" in the
 * syscall and mem block; kpod_hist_add() now bounds it. The first line of that log,
 * "reg type unsupported for arg#0 function kpod_sched_switch#N", is only a notice:
 * 6.1's do_check_common() matches the main program's BTF signature, cannot describe
 * BPF_PROG's `unsigned long long *ctx`, and ignores the result (the notice went away
 * in 6.8). It was all the reason showed because libbpf prints the whole log as one
 * message and the agent's print callback (bpf/libbpf.py) keeps its first 4 KB.
 */

/* ---- end of sched ---- */

#endif

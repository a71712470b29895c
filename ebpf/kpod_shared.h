/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Every struct and constant that crosses the kernel/user boundary, in one place.
 * Constants are enums (not #defines) so that they reach BTF: `make bpf` generates
 * src/kpodmetrics/bpf/structs.py from the BTF of this header (scripts/gen_structs.py);
 * tests/unit/test_struct_layout.py fails when that module is stale or when a built
 * object's BTF disagrees with it. Nothing is mirrored by hand.
 */
#ifndef KPOD_SHARED_H
#define KPOD_SHARED_H

/* Log2 histogram: slot k counts v with 2^(k-1) < v <= 2^k (slot 0: v <= 1).
 * The last slot also takes every v > 2^(KPOD_HIST_SLOTS-2) and is exported as +Inf. */
enum kpod_limits {
	KPOD_HIST_SLOTS = 32,
	/* syscall: the filter is an ARRAY of u8 with this many entries, indexed by syscall nr */
	KPOD_SYS_NR_MAX = 1024,
};

struct kpod_hist {
	__u64 slots[KPOD_HIST_SLOTS];
	__u64 sum;   /* exact sum of the recorded values */
	__u64 count; /* number of recorded values (== sum of slots) */
};

/* cpu_sched: value of cpu_stats, keyed by cgroup id (u64) */
struct kpod_cpu_stats {
	struct kpod_hist runq; /* run-queue latency in ns, charged to the task switched in */
	__u64 nvcsw;           /* voluntary context switches of tasks switched out */
	__u64 nivcsw;          /* involuntary (preempted or still runnable) */
};

/* cpu_sched: key of cpu_holders. The run-queue wait of the task switched in (the
 * waiter, cgroup_id) is charged to the cgroups whose turns on the CPU it overlapped
 * (the holders); an idle CPU (wake-up latency, nobody to blame) is holder 0. */
struct kpod_holder_key {
	__u64 cgroup_id;        /* the waiter's cgroup */
	__u64 holder_cgroup_id; /* the cgroup that held the CPU meanwhile; 0: idle CPU */
};

/* cpu_sched: value of cpu_holders */
struct kpod_holder_stats {
	__u64 wait_ns; /* run-queue wait, ns; per waiter its sum over holders == runq.sum */
};

/* Map health: one ARRAY entry per metric map of a program object, indexed by that
 * object's enum kpod_<object>_health below (the _N member is the ARRAY's size). */
struct kpod_map_health {
	__u64 entries_written; /* new entries inserted */
	__u64 update_errors;   /* inserts that failed (map full, no memory) */
};

/* health indices of cpu_sched.bpf.c */
enum kpod_cpu_health {
	KPOD_HEALTH_CPU_STATS = 0,
	KPOD_HEALTH_CPU_START = 1,
	KPOD_HEALTH_CPU_HOLDERS = 2,
	KPOD_HEALTH_CPU_N = 3,
};

/* ---- net.bpf.c (TCP) structs below this line ---- */

/* net: value of tcp_stats, keyed by the socket owner's cgroup id (u64).
 * Counters are deltas since the last snap-and-reset read. */
struct kpod_tcp_stats {
	__u64 sent_bytes;     /* sock_send_length returns > 0, TCP sockets */
	__u64 received_bytes; /* sock_recv_length returns > 0, TCP, not MSG_PEEK/ERRQUEUE */
	/* retransmitted segments (GSO skb: its pcount) by cause; they sum to RetransSegs */
	__u64 retrans_rto;    /* in the Loss state an RTO entered (timeout) */
	__u64 retrans_fast;   /* from the queue in any other state (fast retransmit) */
	__u64 retrans_tlp;    /* by the tail-loss probe timer */
	__u64 retrans_syn;    /* SYN and SYN-ACK */
	__u64 opened_active;  /* SYN_SENT -> ESTABLISHED */
	__u64 opened_passive; /* SYN_RECV -> ESTABLISHED */
	__u64 failed;         /* SYN_SENT or SYN_RECV -> CLOSE (never established) */
	__u64 closed;         /* any later state -> CLOSE (was established) */
	__s64 active_delta;   /* +1 per open, -1 per close of a socket seen opening */
	struct kpod_hist rtt; /* smoothed RTT in ns, one sample per received segment */
};

/* health indices of net.bpf.c */
enum kpod_net_health {
	KPOD_HEALTH_NET_TCP_STATS = 0,
	KPOD_HEALTH_NET_N = 1,
};

/* ---- mem.bpf.c and syscall.bpf.c structs below this line ---- */

/* mem: value of mem_stats, keyed by cgroup id (u64) */
struct kpod_mem_stats {
	__u64 oom_kills;    /* OOM kills, charged to the victim's cgroup */
	__u64 major_faults; /* major page faults, charged to the faulting task's cgroup */
};

/* health indices of mem.bpf.c */
enum kpod_mem_health {
	KPOD_HEALTH_MEM_STATS = 0,
	KPOD_HEALTH_MEM_N = 1,
};

/* syscall: the ABI a call was made through. A task may call through a second syscall
 * table besides the native one: on x86_64 the ia32 (32-bit compat) table, reached by
 * int 0x80, sysenter or syscall from 32-bit code, with its own numbers (read is 3
 * there, and 3 is close on x86_64). */
enum kpod_sys_abi {
	/* sys_filter values (u8) are bit sets: native number tracked, ia32 number tracked */
	KPOD_SYS_FILTER_NATIVE = 1,
	KPOD_SYS_FILTER_IA32 = 2,
	/* kpod_sys_key.nr of an ia32 call: this plus its ia32 number (native numbers are
	 * below KPOD_SYS_NR_MAX) */
	KPOD_SYS_NR_IA32 = 0x10000,
};

/* syscall: key of sys_stats */
struct kpod_sys_key {
	__u64 cgroup_id;
	__u32 nr;  /* native syscall number, or KPOD_SYS_NR_IA32 + the ia32 number */
	__u32 pad; /* always 0 (hashed with the key) */
};

/* syscall: value of sys_stats. latency.count (== sum of slots) is the call count. */
struct kpod_sys_stats {
	struct kpod_hist latency; /* enter to exit, ns */
	__u64 errors;             /* returns in [-4095, -1] (an errno) */
};

/* health indices of syscall.bpf.c */
enum kpod_sys_health {
	KPOD_HEALTH_SYS_STATS = 0,
	KPOD_HEALTH_SYS_START = 1,
	KPOD_HEALTH_SYS_N = 2,
};

/* ---- bio.bpf.c (block I/O latency) structs below this line ---- */

/* bio: key of bio_stats */
struct kpod_bio_key {
	__u64 cgroup_id; /* cgroup of the bio's blkcg (the cgroup the I/O is charged to) */
	__u32 dev;       /* whole disk, kernel dev_t: major << 20 | minor */
	__u32 op;        /* REQ_OP_* of the request (0 read, 1 write, 2 flush, 3 discard, ...) */
};

/* bio: value of bio_stats */
struct kpod_bio_stats {
	struct kpod_hist latency; /* issue to the device -> completion, ns */
};

/* bio: value of bio_inflight, keyed by the request's address (u64) */
struct kpod_bio_start {
	__u64 issued_ns;
	struct kpod_bio_key key;
	__u64 submitter_bio; /* hybrid hosts: bio_submitter key to drop at completion, else 0 */
};

/* health indices of bio.bpf.c */
enum kpod_bio_health {
	KPOD_HEALTH_BIO_STATS = 0,
	KPOD_HEALTH_BIO_INFLIGHT = 1,
	KPOD_HEALTH_BIO_SUBMITTER = 2,
	KPOD_HEALTH_BIO_N = 3,
};
/* bio: indices of the bio_unowned ARRAY (u64 counters) */
enum kpod_bio_unowned {
	KPOD_BIO_NO_OWNER = 0,  /* completed requests with no cgroup to charge (no bio, e.g. flush) */
	KPOD_BIO_NO_START = 1,  /* completions whose issue was not seen (attached mid-flight) */
	KPOD_BIO_UNOWNED_N = 2,
};
/* ---- end of bio.bpf.c structs ---- */

#endif

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TCP per cgroup: bytes, retransmitted segments, connection life cycle, smoothed RTT.
 *
 * Retransmits, RTT samples and most state changes run in softirq or timer context,
 * where the current task is whoever happened to be interrupted. Every event is
 * therefore charged to the cgroup stored in the socket (sk->sk_cgrp_data, set when
 * the socket was created; accepted sockets inherit the listener's), never to
 * bpf_get_current_cgroup_id().
 *
 * Variants (collectors/ebpf/tcp.py declares them; the loader attaches exactly one per
 * signal, the first that loads and attaches):
 *   send         tp_btf sock_send_length (6.3+) | fentry: fexit on inet_sendmsg,
 *                inet6_sendmsg and inet_sendpage (before 6.5) | fentry without sendpage
 *   recv         tp_btf sock_recv_length (6.3+) | fentry: fexit on inet_recvmsg, inet6_recvmsg
 *   retransmits  tp_btf tcp_retransmit_skb + tcp_retransmit_synack | raw_tp of both
 *   state        tp_btf inet_sock_set_state, marks in socket storage (5.11+) |
 *                tp_btf with marks in an LRU hash (5.10) | raw_tp with the hash
 *   rtt          tp_btf tcp_probe | tp_btf reading through bpf_probe_read | raw_tp
 * One always-inlined body serves each signal; `raw` is a compile-time constant of each
 * copy, so BTF programs keep their direct loads and raw_tp ones read every pointer
 * through bpf_probe_read. Kernel quirks behind the variants: core_fixes.bpf.h, net.
 *
 * Per-event work on the hot hooks (send/recv per call, tcp_probe per received
 * segment) is: a few direct BTF loads, one hash lookup, one to three atomic adds.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kpod_bpf.h"
#include "core_fixes.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KPOD_MSG_PEEK 0x2
#define KPOD_MSG_ERRQUEUE 0x2000
#define KPOD_TCPHDR_SYN 0x02

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* cgroup id of the socket's owner */
	__type(value, struct kpod_tcp_stats);
} tcp_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KPOD_HEALTH_NET_N);
	__type(key, __u32);
	__type(value, struct kpod_map_health);
} net_health SEC(".maps");

/* Marks sockets whose open we counted, so that the active-connections gauge only
 * takes back what it added (connections older than the agent close unmatched).
 * Lives and dies with the socket: no cleanup, no capacity to tune. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} tcp_opened SEC(".maps");

/* The same marks where socket storage is not usable (5.10; raw_tp): keyed by the
 * socket's address, deleted when the socket closes. Preallocated (5.10 refuses
 * run-time allocated hashes in raw_tp programs); LRU so that it never refuses a mark:
 * an evicted mark makes its close not take the connection back, and userspace clamps. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u8);
} tcp_opened_hash SEC(".maps");

/* [0, 1): the address range of tcp_send_loss_probe() (from /proc/kallsyms, written by
 * the collector before it attaches); both 0 when the addresses are hidden. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} tlp_range SEC(".maps");

static const struct kpod_tcp_stats zero_stats;

static __always_inline struct kpod_tcp_stats *stats_of(const struct sock *sk, const bool raw)
{
	__u64 cg = kpod_sk_cgroup_id(sk, raw);

	if (!cg)
		return 0;
	return kpod_lookup_or_init(&tcp_stats, &cg, &zero_stats, &net_health,
				   KPOD_HEALTH_NET_TCP_STATS);
}

/* A TCP socket (not a raw socket with protocol 6, not MPTCP's user-facing socket). */
static __always_inline bool is_tcp(const struct sock *sk, const bool raw)
{
	if (raw)
		return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP &&
		       BPF_CORE_READ(sk, sk_type) == SOCK_STREAM;
	return sk->sk_protocol == IPPROTO_TCP && sk->sk_type == SOCK_STREAM;
}

/* ---- bytes ------------------------------------------------------------------------ */

static __always_inline void count_sent(const struct sock *sk, long ret)
{
	struct kpod_tcp_stats *st;

	if (ret <= 0 || !sk || !is_tcp(sk, false))
		return;
	st = stats_of(sk, false);
	if (st)
		__sync_fetch_and_add(&st->sent_bytes, (__u64)ret);
}

static __always_inline void count_received(const struct sock *sk, long ret, int flags)
{
	struct kpod_tcp_stats *st;

	/* MSG_PEEK leaves the data queued: it is counted when really read. MSG_ERRQUEUE
	 * returns a queued error or timestamp notification (with a copy of the packet
	 * it concerns), not data from the stream. */
	if (ret <= 0 || (flags & (KPOD_MSG_PEEK | KPOD_MSG_ERRQUEUE)) || !sk || !is_tcp(sk, false))
		return;
	st = stats_of(sk, false);
	if (st)
		__sync_fetch_and_add(&st->received_bytes, (__u64)ret);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(kpod_tcp_send, struct sock *sk, int ret, int flags)
{
	count_sent(sk, ret);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(kpod_tcp_recv, struct sock *sk, int ret, int flags)
{
	count_received(sk, ret, flags);
	return 0;
}

/* fentry variant (before 6.3): the address-family handlers the tracepoints wrap. */
SEC("fexit/inet_sendmsg")
int BPF_PROG(kpod_tcp_send_fexit, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	count_sent(sock->sk, ret);
	return 0;
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(kpod_tcp_send6_fexit, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	count_sent(sock->sk, ret);
	return 0;
}

SEC("fexit/inet_sendpage")
int BPF_PROG(kpod_tcp_sendpage_fexit, struct socket *sock, struct page *page, int offset,
	     size_t size, int flags, long ret)
{
	count_sent(sock->sk, ret);
	return 0;
}

SEC("fexit/inet_recvmsg")
int BPF_PROG(kpod_tcp_recv_fexit, struct socket *sock, struct msghdr *msg, size_t size,
	     int flags, int ret)
{
	count_received(sock->sk, ret, flags);
	return 0;
}

SEC("fexit/inet6_recvmsg")
int BPF_PROG(kpod_tcp_recv6_fexit, struct socket *sock, struct msghdr *msg, size_t size,
	     int flags, int ret)
{
	count_received(sock->sk, ret, flags);
	return 0;
}

/* ---- retransmits ------------------------------------------------------------------ */

/*
 * One event per retransmitted skb; RetransSegs adds tcp_skb_pcount(skb) segments for
 * it, so do we. Since 6.13 the tracepoint also fires for failed attempts: count
 * successful ones only (core_fixes.bpf.h).
 *
 * The cause follows the kernel's own rules for its TcpExt counters (tcp_output.c,
 * tcp_timer.c): a SYN in the segment (TCPSynRetrans, the same skb flag), else a
 * retransmit made by tcp_send_loss_probe() (the tail-loss probe: TCPLossProbes, which
 * also counts probes that send new data instead), else the Loss state an RTO entered
 * (the timer's own retransmit, TCPTimeouts, and the queue retransmits that follow it,
 * TCPSlowStartRetrans), else a fast retransmit from the queue in any other state
 * (TCPFastRetrans). Every retransmit gets exactly one cause.
 *
 * A loss probe cannot be told from the socket: icsk_pending says which timer is
 * *armed*, and the probe timer is armed during most fast retransmits too (measured:
 * 190 of 207 fast retransmits had it). It is told from the kernel stack instead: one
 * of the first frames is inside tcp_send_loss_probe() (a global function of
 * tcp_output.c called from tcp_timer.c, so never inlined away; it is the 3rd or 4th
 * frame under the tracepoint). The stack is only walked when the probe timer is the
 * one armed and due (necessary conditions: the timer handler runs the probe without
 * disarming it, and only once it expired) and the socket is not in the Loss state (an
 * RTO arms no probe), so its cost (microseconds) is paid by loss probes alone.
 */
#define KPOD_TLP_FRAMES 6

static __always_inline bool in_loss_probe(void *ctx)
{
	__u64 ips[KPOD_TLP_FRAMES];
	__u32 k0 = 0, k1 = 1;
	__u64 *lo = bpf_map_lookup_elem(&tlp_range, &k0);
	__u64 *hi = bpf_map_lookup_elem(&tlp_range, &k1);
	long n;

	if (!lo || !hi || !*lo || *hi <= *lo)
		return false;
	n = bpf_get_stack(ctx, ips, sizeof(ips), 0);
	if (n <= 0)
		return false;
	for (int i = 0; i < KPOD_TLP_FRAMES; i++) {
		if (i * (long)sizeof(__u64) >= n)
			break;
		if (ips[i] >= *lo && ips[i] < *hi)
			return true;
	}
	return false;
}

/* The socket's retransmit/probe timer is due: it is running (or deferred to the
 * socket's release) now. Its `expires` equals icsk_timeout on kernels that have that
 * field, so one read serves 5.10 to 6.18. */
static __always_inline bool timer_due(const struct inet_connection_sock *icsk)
{
	unsigned long expires = BPF_CORE_READ(icsk, icsk_retransmit_timer.expires);

	return (long)((unsigned long)bpf_jiffies64() - expires) >= 0;
}

static __always_inline __u64 *cause_slot(void *ctx, struct kpod_tcp_stats *st,
					  const struct sock *sk, struct tcp_skb_cb *cb)
{
	const struct inet_connection_sock *icsk = (const struct inet_connection_sock *)sk;
	__u16 flags = BPF_CORE_READ_BITFIELD_PROBED(cb, tcp_flags);
	__u8 ca_state, pending;

	if (flags & KPOD_TCPHDR_SYN)
		return &st->retrans_syn;
	ca_state = BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ca_state);
	if (ca_state == TCP_CA_Loss)
		return &st->retrans_rto;
	pending = BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_pending);
	if (pending == KPOD_ICSK_TIME_LOSS_PROBE && timer_due(icsk) && in_loss_probe(ctx))
		return &st->retrans_tlp;
	return &st->retrans_fast;
}

static __always_inline void on_retransmit(void *ctx, const struct sock *sk,
					  const struct sk_buff *skb, int err, const bool raw)
{
	struct kpod_tcp_stats *st;
	struct tcp_skb_cb *cb;
	__u16 segs;

	if (err)
		return;
	cb = (struct tcp_skb_cb *)&skb->cb[0];
	segs = BPF_CORE_READ(cb, tcp_gso_segs);
	st = stats_of(sk, raw);
	if (st)
		__sync_fetch_and_add(cause_slot(ctx, st, sk, cb), segs > 1 ? segs : 1);
}

SEC("tp_btf/tcp_retransmit_skb")
int kpod_tcp_retrans(__u64 *ctx)
{
	int err = kpod_retransmit_has_err() ? (int)ctx[2] : 0;

	on_retransmit(ctx, (const struct sock *)ctx[0], (const struct sk_buff *)ctx[1], err, false);
	return 0;
}

SEC("raw_tp/tcp_retransmit_skb")
int kpod_tcp_retrans_raw(__u64 *ctx)
{
	int err = kpod_retransmit_has_err() ? (int)ctx[2] : 0;

	on_retransmit(ctx, (const struct sock *)ctx[0], (const struct sk_buff *)ctx[1], err, true);
	return 0;
}

/* SYN-ACK retransmits (counted in RetransSegs) come through here, on the listener. */
static __always_inline void on_synack(const struct sock *sk, const bool raw)
{
	struct kpod_tcp_stats *st = stats_of(sk, raw);

	if (st)
		__sync_fetch_and_add(&st->retrans_syn, 1);
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(kpod_tcp_synack, const struct sock *sk, const struct request_sock *req)
{
	on_synack(sk, false);
	return 0;
}

SEC("raw_tp/tcp_retransmit_synack")
int BPF_PROG(kpod_tcp_synack_raw, const struct sock *sk, const struct request_sock *req)
{
	on_synack(sk, true);
	return 0;
}

/* ---- connection life cycle -------------------------------------------------------- */

/* Mark a socket whose open was counted; true when the mark is held. */
static __always_inline bool mark_opened(const struct sock *sk, const bool storage)
{
	__u64 key = (__u64)sk;
	__u8 one = 1;

	if (storage)
		return bpf_sk_storage_get(&tcp_opened, (void *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE) != 0;
	return bpf_map_update_elem(&tcp_opened_hash, &key, &one, BPF_ANY) == 0;
}

/* Take a socket's mark away; true when it had one. */
static __always_inline bool unmark_opened(const struct sock *sk, const bool storage)
{
	__u64 key = (__u64)sk;

	if (storage) {
		if (!bpf_sk_storage_get(&tcp_opened, (void *)sk, 0, 0))
			return false;
		bpf_sk_storage_delete(&tcp_opened, (void *)sk);
		return true;
	}
	return bpf_map_delete_elem(&tcp_opened_hash, &key) == 0;
}

static __always_inline void on_state(const struct sock *sk, int oldstate, int newstate,
				     const bool raw, const bool storage)
{
	struct kpod_tcp_stats *st;
	__u16 proto = raw ? BPF_CORE_READ(sk, sk_protocol) : sk->sk_protocol;

	if (proto != IPPROTO_TCP)
		return;
	if (newstate == TCP_ESTABLISHED) {
		if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV)
			return;
		st = stats_of(sk, raw);
		if (!st)
			return;
		if (oldstate == TCP_SYN_SENT)
			__sync_fetch_and_add(&st->opened_active, 1);
		else
			__sync_fetch_and_add(&st->opened_passive, 1);
		if (mark_opened(sk, storage))
			__sync_fetch_and_add(&st->active_delta, 1);
		return;
	}
	if (newstate != TCP_CLOSE)
		return;
	/* LISTEN -> CLOSE is a listener going away; CLOSE -> CLOSE a repeated close */
	if (oldstate == TCP_LISTEN || oldstate == TCP_CLOSE)
		return;
	st = stats_of(sk, raw);
	if (!st)
		return;
	if (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV) {
		__sync_fetch_and_add(&st->failed, 1);
		return;
	}
	__sync_fetch_and_add(&st->closed, 1);
	if (unmark_opened(sk, storage))
		__sync_fetch_and_add(&st->active_delta, (__u64)-1);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(kpod_tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	on_state(sk, oldstate, newstate, false, true);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(kpod_tcp_state_hash, const struct sock *sk, const int oldstate, const int newstate)
{
	on_state(sk, oldstate, newstate, false, false);
	return 0;
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(kpod_tcp_state_raw, const struct sock *sk, const int oldstate, const int newstate)
{
	on_state(sk, oldstate, newstate, true, false);
	return 0;
}

/* ---- RTT -------------------------------------------------------------------------- */

static __always_inline void rtt_sample(const struct sock *sk, __u32 srtt, const bool raw)
{
	struct kpod_tcp_stats *st;

	if (!srtt) /* no RTT measured yet */
		return;
	st = stats_of(sk, raw);
	if (st)
		kpod_hist_add(&st->rtt, (__u64)srtt * 125); /* (us / 8) * 1000 = ns, exact */
}

/* Fires for every segment received on an established socket: sample its srtt (us << 3). */
SEC("tp_btf/tcp_probe")
int BPF_PROG(kpod_tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk); /* a BTF pointer: direct loads */

	if (tp)
		rtt_sample(sk, tp->srtt_us, false);
	return 0;
}

/* tcp_probe fires for TCP sockets only (tcp_rcv_established), so the cast is safe. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(kpod_tcp_probe_read, struct sock *sk, const struct sk_buff *skb)
{
	rtt_sample(sk, BPF_CORE_READ((struct tcp_sock *)sk, srtt_us), false);
	return 0;
}

SEC("raw_tp/tcp_probe")
int BPF_PROG(kpod_tcp_probe_raw, struct sock *sk, const struct sk_buff *skb)
{
	rtt_sample(sk, BPF_CORE_READ((struct tcp_sock *)sk, srtt_us), true);
	return 0;
}

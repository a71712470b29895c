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
 * All hooks are tp_btf tracepoints. Each one feeds its own metrics, so a kernel
 * without one (sock_send_length and sock_recv_length appeared in 6.3) loses only
 * those; the loader disables that program alone and reports why.
 *
 * Per-event work on the hot hooks (send/recv per call, tcp_probe per received
 * segment) is: a few direct BTF loads, one hash lookup, one to three atomic adds.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kpod_bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KPOD_MSG_PEEK 2

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

static const struct kpod_tcp_stats zero_stats;

/* Before 5.15 sock_cgroup_data was a union whose `val` held the cgroup pointer
 * (bit 0 set: classid/prioidx mode, owner unknown). */
struct sock_cgroup_data___old {
	__u64 val;
};

/* cgroup v2 id of the socket's owner; 0 when unknown. */
static __always_inline __u64 sk_cgroup_id(const struct sock *sk)
{
	if (bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return sk->sk_cgrp_data.cgroup->kn->id;

	__u64 val = BPF_CORE_READ((struct sock_cgroup_data___old *)&sk->sk_cgrp_data, val);
	if (!val || (val & 1))
		return 0;
	return BPF_CORE_READ((struct cgroup *)val, kn, id);
}

static __always_inline struct kpod_tcp_stats *stats_of(const struct sock *sk)
{
	__u64 cg = sk_cgroup_id(sk);

	if (!cg)
		return 0;
	return kpod_lookup_or_init(&tcp_stats, &cg, &zero_stats, &net_health,
				   KPOD_HEALTH_NET_TCP_STATS);
}

/* A TCP socket (not a raw socket with protocol 6, not MPTCP's user-facing socket). */
static __always_inline bool is_tcp(const struct sock *sk)
{
	return sk->sk_protocol == IPPROTO_TCP && sk->sk_type == SOCK_STREAM;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(kpod_tcp_send, struct sock *sk, int ret, int flags)
{
	struct kpod_tcp_stats *st;

	if (ret <= 0 || !is_tcp(sk))
		return 0;
	st = stats_of(sk);
	if (st)
		__sync_fetch_and_add(&st->sent_bytes, (__u64)ret);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(kpod_tcp_recv, struct sock *sk, int ret, int flags)
{
	struct kpod_tcp_stats *st;

	/* MSG_PEEK leaves the data queued: it is counted when really read */
	if (ret <= 0 || (flags & KPOD_MSG_PEEK) || !is_tcp(sk))
		return 0;
	st = stats_of(sk);
	if (st)
		__sync_fetch_and_add(&st->received_bytes, (__u64)ret);
	return 0;
}

/*
 * One event per retransmitted skb; RetransSegs adds tcp_skb_pcount(skb) segments for
 * it, so do we. Since 6.13 the tracepoint carries `err` and fires for failed attempts
 * as well (some of them before RetransSegs is touched): count successful ones only.
 * Older kernels fire on success only and have no third argument; the `err` field of
 * the trace event record tells the two apart at load time.
 */
SEC("tp_btf/tcp_retransmit_skb")
int kpod_tcp_retrans(__u64 *ctx)
{
	const struct sock *sk = (const struct sock *)ctx[0];
	const struct sk_buff *skb = (const struct sk_buff *)ctx[1];
	struct kpod_tcp_stats *st;
	struct tcp_skb_cb *cb;
	__u16 segs;

	if (bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err)) {
		int err = (int)ctx[2];

		if (err)
			return 0;
	}
	cb = (struct tcp_skb_cb *)skb->cb;
	segs = BPF_CORE_READ(cb, tcp_gso_segs);
	st = stats_of(sk);
	if (st)
		__sync_fetch_and_add(&st->retrans_segs, segs > 1 ? segs : 1);
	return 0;
}

/* SYN-ACK retransmits (counted in RetransSegs) come through here, on the listener. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(kpod_tcp_synack, const struct sock *sk, const struct request_sock *req)
{
	struct kpod_tcp_stats *st = stats_of(sk);

	if (st)
		__sync_fetch_and_add(&st->retrans_segs, 1);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(kpod_tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct kpod_tcp_stats *st;
	__u8 *mark;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_ESTABLISHED) {
		if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV)
			return 0;
		st = stats_of(sk);
		if (!st)
			return 0;
		if (oldstate == TCP_SYN_SENT)
			__sync_fetch_and_add(&st->opened_active, 1);
		else
			__sync_fetch_and_add(&st->opened_passive, 1);
		mark = bpf_sk_storage_get(&tcp_opened, (void *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (mark)
			__sync_fetch_and_add(&st->active_delta, 1);
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	/* LISTEN -> CLOSE is a listener going away; CLOSE -> CLOSE a repeated close */
	if (oldstate == TCP_LISTEN || oldstate == TCP_CLOSE)
		return 0;
	st = stats_of(sk);
	if (!st)
		return 0;
	if (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV) {
		__sync_fetch_and_add(&st->failed, 1);
		return 0;
	}
	__sync_fetch_and_add(&st->closed, 1);
	mark = bpf_sk_storage_get(&tcp_opened, (void *)sk, 0, 0);
	if (mark) {
		__sync_fetch_and_add(&st->active_delta, (__u64)-1);
		bpf_sk_storage_delete(&tcp_opened, (void *)sk);
	}
	return 0;
}

/* Fires for every segment received on an established socket: sample its srtt. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(kpod_tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk); /* a BTF pointer: direct loads */
	struct kpod_tcp_stats *st;
	__u32 srtt;

	if (!tp)
		return 0;
	srtt = tp->srtt_us; /* us << 3 */
	if (!srtt) /* no RTT measured yet */
		return 0;
	st = stats_of(sk);
	if (st)
		kpod_hist_add(&st->rtt, (__u64)srtt * 125); /* (us / 8) * 1000 = ns, exact */
	return 0;
}

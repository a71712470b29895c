// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Block I/O latency per cgroup, disk and operation: from the request's issue to the
 * device (block_rq_issue) to its completion (block_rq_complete).
 *
 * Owner: the cgroup the block layer charges the I/O to, i.e. the blkcg of the
 * request's first bio (rq->bio->bi_blkg->blkcg->css.cgroup). That is the cgroup that
 * submitted the bio, or for buffered writeback the cgroup that dirtied the pages —
 * never whichever task happens to issue or complete the request (kworkers, the
 * interrupt). It matches what io.stat counts.
 *
 * Hybrid hosts (the io controller on a cgroup v1 hierarchy): the blkcg is then a v1
 * cgroup whose id means nothing in the v2 tree. For those the owner falls back to the
 * cgroup v2 of the task that made the request for the bio (block_getrq runs in the
 * submitter's context), remembered per bio until the request completes (not just
 * until its issue: a request the driver requeues, e.g. on a full virtqueue, is issued
 * again); buffered writeback is then charged to the flusher, as the v1 block layer
 * itself does.
 *
 * Completions with no owner (no bio: flush requests) or whose issue was not seen are
 * counted in bio_unowned, never charged to anybody.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kpod_bpf.h"
#include "core_fixes.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KPOD_REQ_OP_MASK 0xffU /* REQ_OP_BITS = 8 since 4.10 */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct kpod_bio_key);
	__type(value, struct kpod_bio_stats);
} bio_stats SEC(".maps");

/* requests issued and not completed yet; LRU so that a request whose completion is
 * never seen cannot pin an entry forever */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64); /* struct request address */
	__type(value, struct kpod_bio_start);
} bio_inflight SEC(".maps");

/* hybrid hosts only: bio address -> cgroup v2 id of the task that made its request */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u64);
} bio_submitter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KPOD_HEALTH_BIO_N);
	__type(key, __u32);
	__type(value, struct kpod_map_health);
} bio_health SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KPOD_BIO_UNOWNED_N);
	__type(key, __u32);
	__type(value, __u64);
} bio_unowned SEC(".maps");

static const struct kpod_bio_stats zero_stats;

static __always_inline void unowned(__u32 idx)
{
	__u64 *n = bpf_map_lookup_elem(&bio_unowned, &idx);

	if (n)
		__sync_fetch_and_add(n, 1);
}

/* The blkcg's cgroup of a bio; *v2 says whether it lives on the cgroup v2 hierarchy
 * (hierarchy_id 0 is the default hierarchy). 0 when the kernel has no blk-cgroup. */
static __always_inline __u64 blkcg_cgroup_id(struct bio *bio, bool *v2)
{
	struct cgroup *cg;

	*v2 = false;
	if (!bio || !bpf_core_field_exists(bio->bi_blkg))
		return 0;
	cg = BPF_CORE_READ(bio, bi_blkg, blkcg, css.cgroup);
	if (!cg)
		return 0;
	*v2 = BPF_CORE_READ(cg, root, hierarchy_id) == 0;
	return BPF_CORE_READ(cg, kn, id);
}

static __always_inline void on_getrq(struct bio *bio)
{
	__u64 key = (__u64)bio, cg;
	bool v2;

	if (blkcg_cgroup_id(bio, &v2) && v2)
		return; /* the blkcg says it all: nothing to remember */
	cg = bpf_get_current_cgroup_id();
	if (bpf_map_update_elem(&bio_submitter, &key, &cg, BPF_ANY) == 0)
		KPOD_HEALTH_INC(bio_health, KPOD_HEALTH_BIO_SUBMITTER, entries_written);
	else
		KPOD_HEALTH_INC(bio_health, KPOD_HEALTH_BIO_SUBMITTER, update_errors);
}

static __always_inline void on_issue(struct request *rq)
{
	struct kpod_bio_start st = {};
	struct bio *bio = BPF_CORE_READ(rq, bio);
	struct gendisk *disk = kpod_rq_disk(rq);
	__u64 key = (__u64)rq, bkey = (__u64)bio, *sub;
	bool v2;

	st.key.cgroup_id = blkcg_cgroup_id(bio, &v2);
	if (bio && !v2) {
		/* kept until completion: a request the driver requeues is issued again */
		sub = bpf_map_lookup_elem(&bio_submitter, &bkey);
		st.key.cgroup_id = sub ? *sub : 0;
		st.submitter_bio = sub ? bkey : 0;
	}
	if (disk)
		st.key.dev = ((__u32)BPF_CORE_READ(disk, major) << 20) |
			     (__u32)BPF_CORE_READ(disk, first_minor);
	st.key.op = BPF_CORE_READ(rq, cmd_flags) & KPOD_REQ_OP_MASK;
	st.issued_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&bio_inflight, &key, &st, BPF_ANY) == 0)
		KPOD_HEALTH_INC(bio_health, KPOD_HEALTH_BIO_INFLIGHT, entries_written);
	else
		KPOD_HEALTH_INC(bio_health, KPOD_HEALTH_BIO_INFLIGHT, update_errors);
}

SEC("tp_btf/block_getrq")
int BPF_PROG(kpod_block_getrq, struct bio *bio)
{
	on_getrq(bio);
	return 0;
}

SEC("tp_btf/block_getrq")
int BPF_PROG(kpod_block_getrq_q, struct request_queue *q, struct bio *bio)
{
	on_getrq(bio);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(kpod_block_rq_issue, struct request *rq)
{
	on_issue(rq);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(kpod_block_rq_issue_q, struct request_queue *q, struct request *rq)
{
	on_issue(rq);
	return 0;
}

/* Fires once per completion step of a request (blk_update_request); a request whose
 * data completes in several steps is counted at its first step, the rest find no
 * in-flight entry and are ignored (they are not new requests). */
SEC("tp_btf/block_rq_complete")
int BPF_PROG(kpod_block_rq_complete, struct request *rq)
{
	__u64 key = (__u64)rq, now = bpf_ktime_get_ns();
	struct kpod_bio_start *st;
	struct kpod_bio_stats *val;
	struct kpod_bio_key k;
	__u64 issued, bio;

	st = bpf_map_lookup_elem(&bio_inflight, &key);
	if (!st) {
		unowned(KPOD_BIO_NO_START);
		return 0;
	}
	k = st->key;
	issued = st->issued_ns;
	bio = st->submitter_bio;
	bpf_map_delete_elem(&bio_inflight, &key);
	if (bio)
		bpf_map_delete_elem(&bio_submitter, &bio);
	if (!k.cgroup_id) {
		unowned(KPOD_BIO_NO_OWNER);
		return 0;
	}
	val = kpod_lookup_or_init(&bio_stats, &k, &zero_stats, &bio_health, KPOD_HEALTH_BIO_STATS);
	if (val)
		kpod_hist_add(&val->latency, now > issued ? now - issued : 0);
	return 0;
}

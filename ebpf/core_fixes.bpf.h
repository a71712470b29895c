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

#endif

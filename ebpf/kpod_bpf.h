/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Small helpers shared by the BPF programs: histogram slot, lookup-or-init, map health. */
#ifndef KPOD_BPF_H
#define KPOD_BPF_H

#include "kpod_shared.h"

#ifndef EEXIST
#define EEXIST 17
#endif

/* floor(log2(v)) for v > 0, branch-light (no clz instruction in BPF). */
static __always_inline __u32 kpod_log2_floor(__u64 v)
{
	__u32 r, shift;

	r = (v > 0xFFFFFFFFULL) << 5; v >>= r;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

/* Slot k with 2^(k-1) < v <= 2^k, i.e. ceil(log2(v)); v <= 1 -> 0; clamped to the last slot. */
static __always_inline __u32 kpod_slot(__u64 v)
{
	__u32 k;

	if (v <= 1)
		return 0;
	k = kpod_log2_floor(v - 1) + 1;
	return k < KPOD_HIST_SLOTS ? k : KPOD_HIST_SLOTS - 1;
}

static __always_inline void kpod_hist_add(struct kpod_hist *h, __u64 v)
{
	__u64 slot = kpod_slot(v);

	/* Bound the index on the register that indexes: kernels before 6.10 lose the
	 * bounds of kpod_slot()'s arithmetic and clang drops a check it can prove
	 * redundant (core_fixes.bpf.h, "Histogram slot"). The mask changes no value. */
	_Static_assert((KPOD_HIST_SLOTS & (KPOD_HIST_SLOTS - 1)) == 0, "power of two");
	barrier_var(slot);
	slot &= KPOD_HIST_SLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum, v);
	__sync_fetch_and_add(&h->count, 1);
}

/* Bump one health counter; `health` is an ARRAY of struct kpod_map_health. */
#define KPOD_HEALTH_INC(health, idx, field)                                     \
	do {                                                                    \
		__u32 _k = (idx);                                               \
		struct kpod_map_health *_h = bpf_map_lookup_elem(&(health), &_k); \
		if (_h)                                                         \
			__sync_fetch_and_add(&_h->field, 1);                    \
	} while (0)

/* Look a key up; insert `init` if absent (counting inserts and failures). */
static __always_inline void *kpod_lookup_or_init(void *map, const void *key, const void *init,
						 void *health, __u32 health_idx)
{
	void *val = bpf_map_lookup_elem(map, key);
	long err;

	if (val)
		return val;
	err = bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	if (err == 0) {
		struct kpod_map_health *h = bpf_map_lookup_elem(health, &health_idx);
		if (h)
			__sync_fetch_and_add(&h->entries_written, 1);
	} else if (err != -EEXIST) {
		struct kpod_map_health *h = bpf_map_lookup_elem(health, &health_idx);
		if (h)
			__sync_fetch_and_add(&h->update_errors, 1);
		return 0;
	}
	return bpf_map_lookup_elem(map, key);
}

/* cgroup v2 id (kernfs node id = directory inode) of a task, via CO-RE. */
static __always_inline __u64 kpod_task_cgroup_id(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

#endif

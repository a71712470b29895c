/* Reads unsigned 64-bit values (one per line) and prints kpod_slot(v) for each, using
 * the very function the BPF programs compile (ebpf/kpod_bpf.h). */
#include <stdio.h>
#include <stdint.h>
typedef uint64_t __u64;
typedef uint32_t __u32;
typedef int64_t __s64;
typedef int32_t __s32;
typedef uint16_t __u16;
typedef uint8_t __u8;
#define __always_inline inline __attribute__((always_inline))
/* only the slot maths of kpod_bpf.h is used; stub what the header needs from BPF */
#define BPF_NOEXIST 1
static long bpf_map_update_elem(void *m, const void *k, const void *v, __u64 f) { return 0; }
static void *bpf_map_lookup_elem(void *m, const void *k) { return 0; }
#define BPF_CORE_READ(...) 0
struct task_struct;
#include "kpod_bpf.h"

int main(void)
{
	unsigned long long v;
	while (scanf("%llu", &v) == 1)
		printf("%u\n", kpod_slot(v));
	return 0;
}

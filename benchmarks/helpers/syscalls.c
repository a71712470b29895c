/* Syscall-bound workload for the slowdown benchmark.
 *   syscalls <iterations>
 * Each iteration makes three cheap syscalls (getppid, an 8-byte read of /dev/zero,
 * and a failing close(-1) so error paths are exercised too). Prints the wall time per
 * syscall in ns; the clock is the vDSO, so timing adds no syscalls of its own.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	char buf[8];
	int fd = open("/dev/zero", O_RDONLY);
	if (fd < 0 || n <= 0)
		return 2;
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		syscall(SYS_getppid);
		if (read(fd, buf, sizeof buf) != sizeof buf)
			return 3;
		syscall(SYS_close, -1);
	}
	double t1 = now_ns();
	printf("ns_per_op %.3f\n", (t1 - t0) / (3.0 * n));
	return 0;
}

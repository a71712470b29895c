/* Syscall workload with exact counts (raw syscall(2), so libc cannot substitute
 * another syscall). Prints "ready", waits for one byte on stdin (the test takes its
 * baseline meanwhile), runs, prints "done <count>", then blocks in pause().
 *   sys_calls openat <n> <m>   n openat calls: the first m on a missing path (ENOENT)
 *   sys_calls storm <n>        n getppid calls (untracked by default)
 *   sys_calls hammer <ms> <cpu> close(-1) (EBADF) on one CPU for ms milliseconds
 *   sys_calls interrupted <k> <sa_restart>
 *                              one read() of a pipe that a child fills after sending
 *                              k SIGUSR1 (2 ms apart); the handler has SA_RESTART when
 *                              <sa_restart> is 1, else each interrupt is an EINTR that
 *                              the loop retries. Prints "done <reads> <eintr> <handled>
 *                              <ns>": the read calls made, those that failed with
 *                              EINTR, signals handled, and the time the loop took.
 *   sys_calls idle             no work
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void);
static volatile sig_atomic_t handled;

static void on_usr1(int sig)
{
	(void)sig;
	handled++; /* no syscall in the handler */
}

/* The "interrupted" mode; prints its own done line. */
static int interrupted(int k, int sa_restart)
{
	struct sigaction sa = {0};
	long reads = 0, eintr = 0;
	int p[2];
	char c;
	pid_t child, parent = getpid();
	double t0;

	sa.sa_handler = on_usr1;
	sa.sa_flags = sa_restart ? SA_RESTART : 0;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) || pipe(p))
		return 5;
	child = fork();
	if (child < 0)
		return 6;
	if (child == 0) {
		struct timespec gap = {0, 2000000};
		for (int i = 0; i < k; i++) {
			kill(parent, SIGUSR1);
			nanosleep(&gap, NULL);
		}
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		_exit(0);
	}
	t0 = now();
	for (;;) {
		long r = syscall(SYS_read, p[0], &c, 1);
		reads++;
		if (r < 0 && errno == EINTR) {
			eintr++;
			continue;
		}
		if (r != 1)
			return 7;
		break;
	}
	printf("done %ld %ld %d %.0f\n", reads, eintr, (int)handled, (now() - t0) * 1e9);
	fflush(stdout);
	waitpid(child, NULL, 0);
	pause();
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no syscall */
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char go;
	long count = 0;

	if (argc < 2)
		return 2;
	if (strcmp(argv[1], "hammer") == 0 && argc >= 4) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(atoi(argv[3]), &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			return 4;
	}
	printf("ready\n");
	fflush(stdout);
	if (read(0, &go, 1) != 1)
		return 3;
	if (strcmp(argv[1], "interrupted") == 0 && argc >= 4)
		return interrupted(atoi(argv[2]), atoi(argv[3]));
	if (strcmp(argv[1], "openat") == 0 && argc >= 4) {
		long n = atol(argv[2]), m = atol(argv[3]);
		for (long i = 0; i < n; i++) {
			const char *path = i < m ? "/nonexistent-kpod-test/x" : "/dev/null";
			long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
			if (fd >= 0)
				syscall(SYS_close, fd);
			count++;
		}
	} else if (strcmp(argv[1], "storm") == 0 && argc >= 3) {
		long n = atol(argv[2]);
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
		count = n;
	} else if (strcmp(argv[1], "hammer") == 0 && argc >= 4) {
		double end = now() + atof(argv[2]) / 1000.0;
		while (now() < end) {
			for (int i = 0; i < 1000; i++)
				syscall(SYS_close, -1);
			count += 1000;
		}
	} else if (strcmp(argv[1], "idle") != 0) {
		return 2;
	}
	printf("done %ld\n", count);
	fflush(stdout);
	pause();
	return 0;
}

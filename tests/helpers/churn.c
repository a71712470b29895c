/* Churn of short-lived processes for the scratch-map tests: forks N children one after
 * another; each plays R ping-pong rounds with the parent over two pipes, then exits.
 * Parent and children run on different CPUs (0 and 1 when there are two), so every
 * wake-up is remote. The parent writes the next byte the moment it reads one, often while the child is
 * between preparing to sleep and sleeping: a wake-up of a task still on its CPU, which
 * then exits without being switched in again (the stamp such a wake-up leaves is what
 * cpu_start must not keep).
 *   churn <children> <rounds>      prints "done <children>" when all were reaped
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long n = atol(argv[1]), rounds = atol(argv[2]);
	char b = 'x';
	cpu_set_t parent_cpu, child_cpu;

	CPU_ZERO(&parent_cpu);
	CPU_ZERO(&child_cpu);
	CPU_SET(0, &parent_cpu);
	CPU_SET(sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 1 : 0, &child_cpu);
	if (sched_setaffinity(0, sizeof(parent_cpu), &parent_cpu))
		return 8;

	for (long i = 0; i < n; i++) {
		int p2c[2], c2p[2];
		if (pipe(p2c) || pipe(c2p))
			return 3;
		pid_t pid = fork();
		if (pid < 0)
			return 4;
		if (pid == 0) {
			if (sched_setaffinity(0, sizeof(child_cpu), &child_cpu))
				_exit(9);
			for (long r = 0; r < rounds; r++) {
				if (read(p2c[0], &b, 1) != 1 || write(c2p[1], &b, 1) != 1)
					_exit(5);
			}
			_exit(0);
		}
		for (long r = 0; r < rounds; r++) {
			if (write(p2c[1], &b, 1) != 1 || read(c2p[0], &b, 1) != 1)
				return 6;
		}
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
			return 7;
		close(p2c[0]); close(p2c[1]); close(c2p[0]); close(c2p[1]);
	}
	printf("done %ld\n", n);
	return 0;
}

/* The C floor of the agent's file reading (issue 18).
 *   filefloor <list> <rounds>
 * <list> holds one opened file per line, "f PATH" (a file: read to EOF) or "d PATH"
 * (a directory: read all its entries with getdents64), in the order and with the
 * multiplicity the agent opened them in a traced window (benchmarks/floor.py). Each
 * round opens, reads and closes every entry once, with nothing else in the loop: what
 * a program that knows exactly which files to read cannot avoid paying. Prints, per
 * round, the process CPU seconds (user + system, getrusage) the round took, then the
 * count of entries that could not be opened (a cgroup removed since the trace).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

struct entry {
	char *path;
	int dir;
};

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: filefloor <list> <rounds>\n");
		return 2;
	}
	FILE *fh = fopen(argv[1], "r");
	long rounds = atol(argv[2]);
	if (!fh || rounds <= 0) {
		fprintf(stderr, "filefloor: cannot read %s or bad rounds\n", argv[1]);
		return 2;
	}
	size_t n = 0, cap = 1024;
	struct entry *e = malloc(cap * sizeof *e);
	char *line = NULL;
	size_t len = 0;
	ssize_t got;
	while ((got = getline(&line, &len, fh)) > 0) {
		if (got < 3 || (line[0] != 'f' && line[0] != 'd') || line[1] != ' ')
			continue;
		if (line[got - 1] == '\n')
			line[got - 1] = '\0';
		if (n == cap)
			e = realloc(e, (cap *= 2) * sizeof *e);
		e[n].dir = line[0] == 'd';
		e[n].path = strdup(line + 2);
		n++;
	}
	fclose(fh);
	static char buf[65536];
	long missing = 0;
	for (long r = 0; r < rounds; r++) {
		double c0 = cpu_seconds();
		for (size_t i = 0; i < n; i++) {
			int flags = O_RDONLY | O_CLOEXEC | (e[i].dir ? O_DIRECTORY : 0);
			int fd = open(e[i].path, flags);
			if (fd < 0) {
				missing++;
				continue;
			}
			if (e[i].dir)
				while (syscall(SYS_getdents64, fd, buf, sizeof buf) > 0)
					;
			else
				while (read(fd, buf, sizeof buf) > 0)
					;
			close(fd);
		}
		printf("round_cpu_s %.6f\n", cpu_seconds() - c0);
	}
	printf("entries %zu\nmissing %ld\n", n, missing);
	return 0;
}

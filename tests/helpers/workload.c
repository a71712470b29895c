/* Test workload: waits for one byte on stdin (so the test can take a baseline while
 * it is blocked), then either spins or sleeps 1 ms in a loop for argv[2] ms, prints
 * "done", and blocks in pause() until killed (so its schedstat stays readable).
 *   workload spin|sleep <ms>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char go;
	if (argc < 3)
		return 2;
	int spin = strcmp(argv[1], "spin") == 0;
	double end;
	volatile unsigned long x = 0;
	struct timespec d = {0, 1000000};

	printf("ready\n");
	fflush(stdout);
	if (read(0, &go, 1) != 1)
		return 3;
	end = now() + atof(argv[2]) / 1000.0;
	while (now() < end) {
		if (spin)
			for (int i = 0; i < 20000; i++)
				x += i;
		else
			nanosleep(&d, NULL);
	}
	printf("done\n");
	fflush(stdout);
	pause();
	return 0;
}

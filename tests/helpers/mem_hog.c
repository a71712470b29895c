/* Memory workload for the OOM test: prints "ready", waits for a byte on stdin,
 * allocates and touches <mib> MiB one MiB at a time, prints "done", then pause().
 * The test sets oom_score_adj so the OOM killer picks the intended victim.
 *   mem_hog <mib>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char go;

	if (argc < 2)
		return 2;
	printf("ready\n");
	fflush(stdout);
	if (read(0, &go, 1) != 1)
		return 3;
	for (int i = 0; i < atoi(argv[1]); i++) {
		char *p = malloc(1 << 20);
		if (!p)
			return 4;
		memset(p, i + 1, 1 << 20);
	}
	printf("done\n");
	fflush(stdout);
	pause();
	return 0;
}

/* Block I/O with a known size, bypassing the page cache (O_DIRECT): prints "ready",
 * waits for a byte on stdin, overwrites <count> blocks of <block> bytes of <file> (which
 * the test wrote and synced beforehand, so no block is allocated here), reads them
 * back, prints "done" and exits. Each call is one aligned bio of <block> bytes: the
 * cgroup's io.stat must grow by exactly count writes and count reads of that size.
 *   direct_io <file> <block> <count>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char go;
	void *buf;

	if (argc < 4)
		return 2;
	long block = atol(argv[2]), count = atol(argv[3]);
	int fd = open(argv[1], O_RDWR | O_DIRECT);
	if (fd < 0 || posix_memalign(&buf, 4096, block))
		return 3;
	memset(buf, 0x5a, block);
	printf("ready\n");
	fflush(stdout);
	if (read(0, &go, 1) != 1)
		return 4;
	for (long i = 0; i < count; i++)
		if (pwrite(fd, buf, block, i * block) != block)
			return 5;
	for (long i = 0; i < count; i++)
		if (pread(fd, buf, block, i * block) != block)
			return 6;
	printf("done\n");
	fflush(stdout);
	return 0;
}

/* Major-fault workload: drops the page cache of <file> (fdatasync, then
 * posix_fadvise DONTNEED on this file only), maps it, and reads one byte per page
 * with MADV_RANDOM so that each page is its own major fault (no read-ahead).
 * Prints "ready", waits for a byte on stdin, works, prints "done <checksum>", pause().
 *   mem_fault <file>
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char go;
	struct stat st;
	unsigned long sum = 0;
	long page = sysconf(_SC_PAGESIZE);

	if (argc < 2)
		return 2;
	printf("ready\n");
	fflush(stdout);
	if (read(0, &go, 1) != 1)
		return 3;
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st))
		return 4;
	fdatasync(fd);
	if (posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
		return 5;
	volatile unsigned char *p = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 6;
	madvise((void *)p, st.st_size, MADV_RANDOM);
	for (off_t off = 0; off < st.st_size; off += page)
		sum += p[off];
	printf("done %lu\n", sum);
	fflush(stdout);
	pause();
	return 0;
}

/* hangfs: a tiny FUSE filesystem standing in for a dead NFS server.
 *
 *   hangfs MOUNTPOINT statfs|read GATE VICTIM_FILE
 *
 * One file, /data (4096 bytes of 'x'). statfs answers f_blocks=1000, f_bfree=400,
 * f_bavail=300 (4096-byte blocks), f_files=100, f_ffree=50 - the figures a test checks.
 * In "statfs" mode, statfs calls made by the process whose pid is written in VICTIM_FILE
 * (or by its children) wait while the file GATE does not exist (other callers, e.g. other agents on a shared
 * machine, are answered at once). In "read" mode every read of /data waits likewise.
 * Multi-threaded, so a waiting request never holds the others.
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *gate, *victim_file;
static int block_statfs, block_read;

static long read_long(const char *path, const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		if (!key) {
			v = strtol(line, NULL, 10);
			break;
		}
		if (!strncmp(line, key, strlen(key))) {
			v = strtol(line + strlen(key), NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/* The victim process or one of its children (fuse gives the calling thread's id). */
static int caller_is_victim(void)
{
	char path[64];
	long victim = read_long(victim_file, NULL);

	if (victim <= 0)
		return 0;
	snprintf(path, sizeof path, "/proc/%d/status", fuse_get_context()->pid);
	return read_long(path, "Tgid:") == victim || read_long(path, "PPid:") == victim;
}

static void wait_gate(void)
{
	while (access(gate, F_OK) != 0)
		usleep(20000);
}

static int hang_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	memset(st, 0, sizeof *st);
	if (!strcmp(path, "/")) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (!strcmp(path, "/data")) {
		st->st_mode = S_IFREG | 0644;
		st->st_nlink = 1;
		st->st_size = 4096;
		return 0;
	}
	return -ENOENT;
}

static int hang_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
			struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)off, (void)fi, (void)flags;
	if (strcmp(path, "/"))
		return -ENOENT;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	fill(buf, "data", NULL, 0, 0);
	return 0;
}

static int hang_open(const char *path, struct fuse_file_info *fi)
{
	if (strcmp(path, "/data"))
		return -ENOENT;
	fi->direct_io = 1; /* every read reaches us: no page cache answers for us */
	return 0;
}

static int hang_read(const char *path, char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)path, (void)fi;
	if (block_read)
		wait_gate();
	if (off >= 4096)
		return 0;
	if (off + (off_t)size > 4096)
		size = 4096 - off;
	memset(buf, 'x', size);
	return size;
}

static int hang_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	if (block_statfs && caller_is_victim())
		wait_gate();
	memset(st, 0, sizeof *st);
	st->f_bsize = st->f_frsize = 4096;
	st->f_blocks = 1000;
	st->f_bfree = 400;
	st->f_bavail = 300;
	st->f_files = 100;
	st->f_ffree = 50;
	st->f_namemax = 255;
	return 0;
}

static const struct fuse_operations ops = {
	.getattr = hang_getattr,
	.readdir = hang_readdir,
	.open = hang_open,
	.read = hang_read,
	.statfs = hang_statfs,
};

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s MOUNTPOINT statfs|read GATE VICTIM_FILE\n", argv[0]);
		return 2;
	}
	block_statfs = !strcmp(argv[2], "statfs");
	block_read = !strcmp(argv[2], "read");
	gate = argv[3];
	victim_file = argv[4];
	char *fargv[] = { argv[0], "-f", "-o", "fsname=kpod-test-hangfs", argv[1], NULL };
	return fuse_main(5, fargv, &ops, NULL);
}

/* ia32 (32-bit compat) syscalls with exact counts, for tests/kernel/test_syscall_ia32.py.
 * Built with `gcc -m32 -static` (every call is an ia32 one) and also natively, where
 * only the int80 modes make ia32 calls (a 64-bit task may use int $0x80 too).
 * Prints "ready", waits for one byte on stdin, runs, prints "done <n>", then pause()s.
 *   sys_calls_ia32 calls <reads> <bad_closes> <opens> <how>
 *        <reads> read(2) of 1 byte from /dev/zero, <bad_closes> close(-1) (EBADF),
 *        <opens> openat(/dev/null) each followed by a successful close;
 *        <how>: "libc" (glibc's syscall(): the vDSO's sysenter/syscall entry when
 *        built -m32) or "int80" (inline int $0x80)
 *   sys_calls_ia32 int80_close <n>   n close(-1) through int $0x80 (any build)
 *   sys_calls_ia32 interrupted <k> <sa_restart>
 *        one read() of a pipe that a child fills after sending k SIGUSR1 (2 ms apart),
 *        retried on EINTR; prints "done <reads> <eintr> <handled>"
 * The numbers are the ia32 table's (arch/x86/entry/syscalls/syscall_32.tbl).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IA32_READ 3
#define IA32_CLOSE 6
#define IA32_OPENAT 295

/* One ia32 call through int $0x80; returns the kernel's value (-errno on failure). */
static long int80(long nr, long a, long b, long c, long d)
{
	long ret = nr;
#if defined(__i386__)
	__asm__ volatile("push %%ebx\n\tmov %2, %%ebx\n\tint $0x80\n\tpop %%ebx"
			 : "+a"(ret)
			 : "0"(nr), "r"(a), "c"(b), "d"(c), "S"(d)
			 : "memory");
#elif defined(__x86_64__)
	register long rbx __asm__("rbx") = a;
	__asm__ volatile("int $0x80"
			 : "+a"(ret)
			 : "r"(rbx), "c"(b), "d"(c), "S"(d)
			 : "memory", "r8", "r9", "r10", "r11");
#else
#error "x86 only"
#endif
	return (int)ret;
}

static long call(int use_int80, long nr, long a, long b, long c, long d)
{
	long r;

	if (use_int80)
		return int80(nr, a, b, c, d);
	r = syscall(nr, a, b, c, d);
	return r < 0 ? -errno : r;
}

static volatile sig_atomic_t handled;

static void on_usr1(int sig)
{
	(void)sig;
	handled++;
}

static int interrupted(int k, int sa_restart)
{
	struct sigaction sa;
	long reads = 0, eintr = 0;
	int p[2];
	char c;
	pid_t child, parent = getpid();

	memset(&sa, 0, sizeof(sa));
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
		_exit(write(p[1], "x", 1) == 1 ? 0 : 1);
	}
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
	printf("done %ld %ld %d\n", reads, eintr, (int)handled);
	fflush(stdout);
	waitpid(child, NULL, 0);
	pause();
	return 0;
}

int main(int argc, char **argv)
{
	char go, buf[1];
	long count = 0;

	if (argc < 2)
		return 2;
	printf("ready\n");
	fflush(stdout);
	if (read(0, &go, 1) != 1)
		return 3;
	if (strcmp(argv[1], "interrupted") == 0 && argc >= 4)
		return interrupted(atoi(argv[2]), atoi(argv[3]));
	if (strcmp(argv[1], "calls") == 0 && argc >= 6) {
		long reads = atol(argv[2]), bad = atol(argv[3]), opens = atol(argv[4]);
		int i80 = strcmp(argv[5], "int80") == 0;
		int zero = open("/dev/zero", O_RDONLY);

		if (zero < 0)
			return 4;
#if !defined(__i386__)
		if (!i80)
			return 8; /* a 64-bit build makes ia32 calls only through int $0x80 */
#endif
		for (long i = 0; i < reads; i++)
			if (call(i80, IA32_READ, zero, (long)buf, 1, 0) != 1)
				return 9;
		for (long i = 0; i < bad; i++)
			if (call(i80, IA32_CLOSE, -1, 0, 0, 0) != -EBADF)
				return 10;
		for (long i = 0; i < opens; i++) {
			long fd = call(i80, IA32_OPENAT, AT_FDCWD, (long)"/dev/null",
				       O_RDONLY | O_CLOEXEC, 0);
			if (fd < 0 || call(i80, IA32_CLOSE, fd, 0, 0, 0) != 0)
				return 11;
		}
		count = reads + bad + 2 * opens;
	} else if (strcmp(argv[1], "int80_close") == 0 && argc >= 3) {
		long n = atol(argv[2]);
		for (long i = 0; i < n; i++)
			if (int80(IA32_CLOSE, -1, 0, 0, 0) != -EBADF)
				return 10;
		count = n;
	} else {
		return 2;
	}
	printf("done %ld\n", count);
	fflush(stdout);
	pause();
	return 0;
}

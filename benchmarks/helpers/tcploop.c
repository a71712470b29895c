/* TCP loopback workload for the slowdown benchmark.
 *   tcploop rr <round_trips>     64-byte request/response over 127.0.0.1 (TCP_NODELAY)
 *   tcploop stream <megabytes>   one-way bulk transfer in 64 KiB writes
 * A forked child is the peer. Prints ns per round trip (rr) or ns per MiB (stream).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int full(int fd, char *p, size_t len, int writing)
{
	while (len > 0) {
		ssize_t r = writing ? write(fd, p, len) : read(fd, p, len);
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int rr = strcmp(argv[1], "rr") == 0;
	long n = atol(argv[2]);
	static char buf[CHUNK];
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof a;
	int one = 1;
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&a, &alen))
		return 3;
	pid_t child = fork();
	if (child == 0) { /* the peer: echo (rr) or sink (stream) */
		int s = accept(ls, NULL, NULL);
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (rr) {
			for (long i = 0; i < n; i++)
				if (full(s, buf, 64, 0) || full(s, buf, 64, 1))
					_exit(1);
		} else {
			while (read(s, buf, CHUNK) > 0)
				;
		}
		_exit(0);
	}
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&a, sizeof a))
		return 4;
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	memset(buf, 'k', sizeof buf);
	double t0 = now_ns();
	if (rr) {
		for (long i = 0; i < n; i++)
			if (full(c, buf, 64, 1) || full(c, buf, 64, 0))
				return 5;
	} else {
		for (long i = 0; i < n * (1048576 / CHUNK); i++)
			if (full(c, buf, CHUNK, 1))
				return 5;
		shutdown(c, SHUT_WR);
	}
	close(c);
	int st = 0;
	waitpid(child, &st, 0);
	double t1 = now_ns();
	printf("ns_per_op %.3f\n", (t1 - t0) / (double)n);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 6;
}

/* TCP test peer for the net kernel tests. It joins a network namespace itself
 * (setns) so that the test can start it directly inside a cgroup: the cgroup then
 * holds this process only, and every socket it creates is owned by that cgroup.
 *
 *   tcp_peer server NETNS 4|6 PORT K echo|echortt|sink
 *       listen on loopback, print "ready", accept K connections, print "accepted",
 *       read every connection to EOF (echoing back in echo modes), print
 *       "received <bytes> sent <bytes>", close all and exit. echortt also reads the
 *       socket's smoothed RTT (TCP_INFO tcpi_rtt, us) after every read and appends
 *       " srtt_median_us <median of those readings>" to that line.
 *   tcp_peer client NETNS 4|6 PORT K
 *       open K connections, print "connected", then obey stdin lines:
 *       "send N" (N bytes on connection 0), "sendecho N" (send N, read N back),
 *       "ping R" (R rounds of 64 bytes out, 64 back), "rttping R" (the same, reading
 *       TCP_INFO's tcpi_rtt after each round: answers "pinged R srtt_median_us M"),
 *       "sendfile N" (N bytes from a
 *       file through sendfile(2)), "tssend N" (send N bytes with TX timestamps on,
 *       wait for the peer's ACK, then drain the error queue with MSG_ERRQUEUE and
 *       answer "sent N errqueue <bytes those reads returned> <messages>"),
 *       "close" (close all, exit). Each command answers one line.
 *   tcp_peer refused NETNS 4|6 PORT
 *       connect to a port nobody listens on; print "refused" on ECONNREFUSED.
 * NETNS is a path such as /run/netns/NAME, or "-" to stay in the current one.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/net_tstamp.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 256
static char buf[65536];

static void die(const char *what)
{
	printf("error %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void say(const char *fmt, unsigned long long a, unsigned long long b)
{
	printf(fmt, a, b);
	fflush(stdout);
}

/* TCP_INFO's smoothed RTT readings (us), taken in-band right after a segment was read:
 * the same instants at which the kernel samples srtt for the RTT histogram, with no
 * extra process competing for the CPU the way a polling `ss` does. */
static unsigned int *rtts;
static size_t nrtt, caprtt;

static void sample_rtt(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		die("getsockopt TCP_INFO");
	if (!ti.tcpi_rtt)
		return; /* no RTT measured yet */
	if (nrtt == caprtt) {
		caprtt = caprtt ? caprtt * 2 : 4096;
		rtts = realloc(rtts, caprtt * sizeof(*rtts));
		if (!rtts)
			die("realloc");
	}
	rtts[nrtt++] = ti.tcpi_rtt;
}

static int cmp_uint(const void *a, const void *b)
{
	unsigned int x = *(const unsigned int *)a, y = *(const unsigned int *)b;

	return (x > y) - (x < y);
}

/* the median reading so far (0 when there was none); starts a new series */
static unsigned long long take_rtt_median(void)
{
	unsigned long long m = 0;

	if (nrtt) {
		qsort(rtts, nrtt, sizeof(*rtts), cmp_uint);
		m = rtts[nrtt / 2];
	}
	nrtt = 0;
	return m;
}

static void join_netns(const char *path)
{
	int fd;

	if (strcmp(path, "-") == 0)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
		die("setns");
	close(fd);
}

static socklen_t loopback(int fam, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (fam == 6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		a->sin6_addr = in6addr_loopback;
		return sizeof(*a);
	}
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sizeof(*a);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
		p += w;
		n -= (size_t)w;
	}
}

static void read_exact(int fd, size_t n)
{
	while (n) {
		ssize_t r = read(fd, buf, n < sizeof(buf) ? n : sizeof(buf));
		if (r <= 0)
			die("read");
		n -= (size_t)r;
	}
}

static int server(int fam, int port, int k, int echo, int rtt)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(fam, port, &ss);
	int one = 1, open_n, conns[MAXC];
	unsigned long long got = 0, sent = 0;
	struct pollfd pf[MAXC];
	int ls = socket(fam == 6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);

	if (ls < 0)
		die("socket");
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&ss, len) < 0 || listen(ls, MAXC) < 0)
		die("listen");
	say("ready\n", 0, 0);
	for (int i = 0; i < k; i++) {
		conns[i] = accept(ls, NULL, NULL);
		if (conns[i] < 0)
			die("accept");
		pf[i].fd = conns[i];
		pf[i].events = POLLIN;
	}
	say("accepted\n", 0, 0);
	open_n = k;
	while (open_n > 0) {
		if (poll(pf, k, -1) < 0)
			die("poll");
		for (int i = 0; i < k; i++) {
			if (pf[i].fd < 0 || !pf[i].revents)
				continue;
			ssize_t r = read(pf[i].fd, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				close(pf[i].fd);
				pf[i].fd = -1;
				open_n--;
				continue;
			}
			got += (unsigned long long)r;
			if (rtt)
				sample_rtt(pf[i].fd);
			if (echo) {
				write_all(pf[i].fd, buf, (size_t)r);
				sent += (unsigned long long)r;
			}
		}
	}
	close(ls);
	if (rtt)
		printf("received %llu sent %llu srtt_median_us %llu\n", got, sent,
		       take_rtt_median());
	else
		printf("received %llu sent %llu\n", got, sent);
	fflush(stdout);
	return 0;
}

/* send n bytes on fd and read n back, interleaved so neither side blocks the other */
static unsigned long long send_echo(int fd, unsigned long long n)
{
	unsigned long long out = 0, in = 0;
	static char src[16384];
	struct pollfd pf = {.fd = fd};

	while (out < n || in < n) {
		pf.events = POLLIN | (out < n ? POLLOUT : 0);
		if (poll(&pf, 1, -1) < 0)
			die("poll");
		if ((pf.revents & POLLOUT) && out < n) {
			size_t want = n - out < sizeof(src) ? (size_t)(n - out) : sizeof(src);
			ssize_t w = send(fd, src, want, MSG_DONTWAIT);
			if (w > 0)
				out += (unsigned long long)w;
		}
		if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r == 0)
				die("eof");
			if (r > 0)
				in += (unsigned long long)r;
		}
	}
	return in;
}

/* n bytes from a file (a memfd) through sendfile: the kernel's splice-to-socket path */
static void send_file(int fd, unsigned long long n)
{
	static char src[16384];
	int mf = memfd_create("tcp_peer", 0);
	unsigned long long left = n;
	off_t off = 0;

	if (mf < 0)
		die("memfd_create");
	while (left) {
		size_t want = left < sizeof(src) ? (size_t)left : sizeof(src);
		write_all(mf, src, want);
		left -= want;
	}
	left = n;
	while (left) {
		ssize_t w = sendfile(fd, mf, &off, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("sendfile");
		}
		left -= (unsigned long long)w;
	}
	close(mf);
}

/* Send n bytes with software and ACK transmit timestamps on, then read every
 * notification the kernel queued on the error queue. Returns what those reads
 * returned in total; *msgs gets their number. */
static unsigned long long send_timestamped(int fd, unsigned long long n, unsigned long long *msgs)
{
	static char src[16384];
	int flags = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_TX_ACK |
		    SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_ID;
	unsigned long long left = n, got = 0;
	char ctrl[512];

	if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof(flags)) < 0)
		die("SO_TIMESTAMPING");
	while (left) {
		size_t want = left < sizeof(src) ? (size_t)left : sizeof(src);
		write_all(fd, src, want);
		left -= want;
	}
	*msgs = 0;
	/* the ACK timestamps come when the peer acknowledges: poll until quiet */
	for (int idle = 0; idle < 20;) {
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1,
				   .msg_control = ctrl, .msg_controllen = sizeof(ctrl)};
		ssize_t r = recvmsg(fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT);

		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR)
				die("recvmsg MSG_ERRQUEUE");
			idle++;
			usleep(10000);
			continue;
		}
		idle = 0;
		got += (unsigned long long)r;
		(*msgs)++;
	}
	flags = 0;
	setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof(flags));
	return got;
}

static int client(int fam, int port, int k)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(fam, port, &ss);
	int conns[MAXC];
	char line[128];
	static char src[16384];

	for (int i = 0; i < k; i++) {
		conns[i] = socket(fam == 6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
		if (conns[i] < 0 || connect(conns[i], (struct sockaddr *)&ss, len) < 0)
			die("connect");
	}
	say("connected\n", 0, 0);
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long long n = 0;
		if (sscanf(line, "send %llu", &n) == 1) {
			unsigned long long left = n;
			while (left) {
				size_t want = left < sizeof(src) ? (size_t)left : sizeof(src);
				write_all(conns[0], src, want);
				left -= want;
			}
			say("sent %llu\n", n, 0);
		} else if (sscanf(line, "sendfile %llu", &n) == 1) {
			send_file(conns[0], n);
			say("sent %llu\n", n, 0);
		} else if (sscanf(line, "tssend %llu", &n) == 1) {
			unsigned long long msgs = 0, got = send_timestamped(conns[0], n, &msgs);
			printf("sent %llu errqueue %llu %llu\n", n, got, msgs);
			fflush(stdout);
		} else if (sscanf(line, "sendecho %llu", &n) == 1) {
			unsigned long long back = send_echo(conns[0], n);
			say("sent %llu received %llu\n", n, back);
		} else if (sscanf(line, "ping %llu", &n) == 1) {
			for (unsigned long long i = 0; i < n; i++) {
				write_all(conns[0], src, 64);
				read_exact(conns[0], 64);
			}
			say("pinged %llu\n", n, 0);
		} else if (sscanf(line, "rttping %llu", &n) == 1) {
			for (unsigned long long i = 0; i < n; i++) {
				write_all(conns[0], src, 64);
				read_exact(conns[0], 64);
				sample_rtt(conns[0]);
			}
			say("pinged %llu srtt_median_us %llu\n", n, take_rtt_median());
		} else if (strncmp(line, "close", 5) == 0) {
			for (int i = 0; i < k; i++)
				close(conns[i]);
			say("closed\n", 0, 0);
			return 0;
		}
	}
	return 0;
}

static int refused(int fam, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(fam, port, &ss);
	int fd = socket(fam == 6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
		say("connected\n", 0, 0);
		return 1;
	}
	if (errno != ECONNREFUSED)
		die("connect");
	close(fd);
	say("refused\n", 0, 0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	join_netns(argv[2]);
	int fam = atoi(argv[3]), port = atoi(argv[4]);

	if (strcmp(argv[1], "server") == 0 && argc >= 7) {
		int k = atoi(argv[5]);
		if (k < 1 || k > MAXC)
			return 2;
		return server(fam, port, k, strncmp(argv[6], "echo", 4) == 0,
			      strcmp(argv[6], "echortt") == 0);
	}
	if (strcmp(argv[1], "client") == 0 && argc >= 6) {
		int k = atoi(argv[5]);
		if (k < 1 || k > MAXC)
			return 2;
		return client(fam, port, k);
	}
	if (strcmp(argv[1], "refused") == 0)
		return refused(fam, port);
	return 2;
}

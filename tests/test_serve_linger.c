/* test_serve_linger.c -- refusals a client can read (issue 17, F-2), through
   the real `zprefill serve` on a temporary Unix socket. A client sends its
   request after the server has already answered (refused) its connection;
   the send must succeed and the client must read the answer, then EOF:
     1  max_connections reached: 503 (a refusal slot lingers)
     2  a uid not in allow_uids: 403
     3  a body past body_bytes_max: 413 after the head, the body still sent
     4  a refused client that never closes is closed by the server within a
        bound (its connection count comes back)
   Before the lingering close, the server closed each socket right after its
   answer, and the client's send failed with EPIPE (ECONNRESET on TCP). The
   request is sent once the answer has arrived, so the order is certain.
   Every wait is a liveness bound, never a speed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "serve_proc.h"
#include "client.h"

static char dir[256], sock[300], log_path[300];
static const char *bin;

/* A server up (its /health answers ready_status: 403 where our uid is refused) */
static pid_t start(const char *cfg_text, int ready_status)
{
	char cfg[300];
	snprintf(cfg, sizeof cfg, "%s/c.ini", dir);
	FILE *f = fopen(cfg, "w");
	ZP_ASSERT(f);
	fputs(cfg_text, f);
	fclose(f);
	unlink(sock);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		execl(bin, bin, "serve", "--model", "tests/models/tiny-tok", "--socket", sock,
		      "--config", cfg, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1500; i++) { /* 30 s */
		zp_err e;
		int fd = zp_client_connect(sock, &e);
		if (fd >= 0) {
			zp_buf out;
			zp_buf_init(&out, 256);
			int st = zp_client_call(fd, "GET", "/health", NULL, 0, &out, &e);
			close(fd);
			zp_buf_free(&out);
			if (st == ready_status)
				return pid;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;
		sleep_ms(20);
	}
	CHECK(0, "the server did not become ready");
	return -1;
}

static int connect_raw(void)
{
	zp_err e;
	int fd = zp_client_connect(sock, &e);
	ZP_ASSERT(fd >= 0);
	return fd;
}

/* Wait (30 s bound) until the server's answer has arrived, then 100 ms more:
   a server that closes right after answering has closed by then. */
static bool answered(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 30000) != 1)
		return false;
	sleep_ms(100);
	return true;
}

/* Every byte sent: 0, or the errno of the failed send. */
static int send_errno(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? errno : EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* All bytes until EOF (30 s bound) into out: 0 at EOF, else the errno (or ETIMEDOUT). */
static int read_to_eof(int fd, zp_buf *out)
{
	char tmp[65536];
	zp_buf_reset(out);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 30000) != 1)
			return ETIMEDOUT;
		ssize_t r = recv(fd, tmp, sizeof tmp, 0);
		if (r == 0)
			return 0;
		if (r < 0)
			return errno;
		zp_buf_put(out, tmp, (size_t)r);
	}
}

/* A request sent after the refusal arrived: the send succeeds, the client reads
   the status, then EOF. */
static void refused_then_sent(const char *what, int want, int rounds)
{
	static char body[65536];
	char req[70000];
	memset(body, 'a', sizeof body);
	int n = snprintf(req, sizeof req, "POST /v1/prefill HTTP/1.1\r\nHost: x\r\nContent-Type: "
			 "application/json\r\nContent-Length: %zu\r\n\r\n%.*s", sizeof body,
			 (int)sizeof body, body);
	char status[16];
	snprintf(status, sizeof status, "HTTP/1.1 %d", want);
	zp_buf out;
	zp_buf_init(&out, 4096);
	int ok = 0;
	for (int i = 0; i < rounds; i++) {
		int fd = connect_raw();
		bool got = answered(fd);
		int se = send_errno(fd, req, (size_t)n);
		int re = read_to_eof(fd, &out);
		bool read_ok = re == 0 && out.len > 12 && memcmp(out.p, status, strlen(status)) == 0;
		if (got && se == 0 && read_ok)
			ok++;
		else if (ok == i) /* the first failure, in words */
			fprintf(stderr, "%s: round %d: answer %s, send: %s, read: %s, %.40s\n", what, i,
				got ? "came" : "never came", se ? strerror(se) : "ok",
				re ? strerror(re) : "EOF", out.p);
		close(fd);
	}
	CHECK(ok == rounds, "%s: %d of %d clients sent their request and read %d", what, ok, rounds,
	      want);
	printf("%-40s %d of %d clients read their %d\n", what, ok, rounds, want);
	zp_buf_free(&out);
}

/* 3: 413 after the head; the client still sends its whole body, then reads. */
static void body_too_large(int rounds)
{
	static char body[1 << 20];
	memset(body, 'b', sizeof body);
	char head[200];
	int n = snprintf(head, sizeof head, "POST /v1/prefill HTTP/1.1\r\nHost: x\r\nContent-Type: "
			 "application/json\r\nContent-Length: %zu\r\n\r\n", sizeof body);
	zp_buf out;
	zp_buf_init(&out, 4096);
	int ok = 0;
	for (int i = 0; i < rounds; i++) {
		int fd = connect_raw();
		int se = send_errno(fd, head, (size_t)n);
		bool got = answered(fd);
		se = se ? se : send_errno(fd, body, sizeof body);
		int re = read_to_eof(fd, &out);
		if (got && se == 0 && re == 0 && strncmp(out.p, "HTTP/1.1 413", 12) == 0)
			ok++;
		else if (ok == i)
			fprintf(stderr, "413: round %d: answer %s, send: %s, read: %s, %.40s\n", i,
				got ? "came" : "never came", se ? strerror(se) : "ok",
				re ? strerror(re) : "EOF", out.p);
		close(fd);
	}
	CHECK(ok == rounds, "413: %d of %d clients sent their body and read the 413", ok, rounds);
	printf("%-40s %d of %d clients read their 413\n", "3: body past body_bytes_max", ok, rounds);
	zp_buf_free(&out);
}

/* zprefill_connections_open from /metrics over fd (a kept-alive connection) */
static int conns_open(int fd)
{
	zp_err e;
	zp_buf out;
	zp_buf_init(&out, 4096);
	int st = zp_client_call(fd, "GET", "/metrics", NULL, 0, &out, &e), n = -1;
	const char *at = st == 200 ? strstr(out.p, "\nzprefill_connections_open ") : NULL;
	if (at)
		n = atoi(at + strlen("\nzprefill_connections_open "));
	zp_buf_free(&out);
	return n;
}

int main(void)
{
	bin = getenv("ZPREFILL") ? getenv("ZPREFILL") : "./zprefill";
	snprintf(dir, sizeof dir, "/tmp/zp-linger-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock, sizeof sock, "%s/s", dir);
	snprintf(log_path, sizeof log_path, "%s/log", dir);
	signal(SIGPIPE, SIG_IGN);

	/* 1 and 4: one connection allowed, held by `held` */
	pid_t pid = start("[server]\nmax_connections = 1\nbody_bytes_max = 1048576\n[log]\nlevel = warn\n", 200);
	if (pid > 0) {
		int held = connect_raw();
		CHECK(conns_open(held) == 1, "the held connection is the only one");
		refused_then_sent("1: max_connections reached", 503, 20);
		int silent = connect_raw(); /* refused; it never sends nor closes */
		CHECK(answered(silent), "4: the silent client's refusal came");
		int n = -1;
		for (int i = 0; i < 150 && (n = conns_open(held)) != 1; i++)
			sleep_ms(200); /* 30 s */
		CHECK(n == 1, "4: a silent refused client is still held (%d open)", n);
		printf("%-40s closed by the server (%d open)\n", "4: a refused client that stays", n);
		close(silent);
		close(held);
		CHECK(stop(pid) == 0, "1: clean stop");
	}

	/* 2: a uid that is not ours */
	char cfg[200];
	snprintf(cfg, sizeof cfg, "[server]\nallow_uids = %u\n[log]\nlevel = warn\n",
		 (unsigned)getuid() + 1);
	pid = start(cfg, 403);
	if (pid > 0) {
		refused_then_sent("2: uid not in allow_uids", 403, 20);
		CHECK(stop(pid) == 0, "2: clean stop");
	}

	/* 3: a body over the limit */
	pid = start("[server]\nbody_bytes_max = 1024\n[log]\nlevel = warn\n", 200);
	if (pid > 0) {
		body_too_large(10);
		CHECK(stop(pid) == 0, "3: clean stop");
	}
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	ZP_ASSERT(system(cmd) == 0);
	return check_exit("test_serve_linger");
}

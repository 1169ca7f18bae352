/* test_systemd.c -- `zprefill serve` under systemd's protocols, without
   systemd: this test plays the service manager. It creates and listens on
   the Unix socket itself and passes it as descriptor 3 with LISTEN_FDS /
   LISTEN_PID, and listens on a NOTIFY_SOCKET datagram socket. Checked: the
   STATUS lines, READY=1 and STOPPING=1 arrive in that order; a connection
   made before the server process existed is accepted and answered; requests
   are served on the passed socket (and no socket of its own is created); the
   socket file survives the server's exit and still queues connections for
   the next instance; watchdog pings come at half of WATCHDOG_USEC and stop
   once an executor is wedged (ZP_FAULT_EXEC_STALL); a passed descriptor that
   is not a listening Unix stream socket is a start error. Waits are liveness
   bounds, never speeds. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "client.h"

#define LIVENESS_MS 60000 /* a loaded machine (make tsan) may be slow: not a speed */

static char dir[256], sock_path[300], notify_path[300], unused_path[300];
static const char *bin;

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int unix_socket(int type, const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	unlink(path);
	int fd = socket(AF_UNIX, type, 0); /* no CLOEXEC: the listener goes to the child */
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a))
		return -1;
	if (type == SOCK_STREAM && listen(fd, 64))
		return -1;
	return fd;
}

/* The service manager's side of exec: pass fd as descriptor 3, set the
   environment, run `zprefill serve` (its own --socket names a path it must
   not create: it serves on what it was passed). */
static pid_t spawn(int fd, int notify, const char *watchdog_usec, bool stall)
{
	pid_t pid = fork();
	if (pid)
		return pid;
	if (fd != 3) {
		if (dup2(fd, 3) < 0)
			_exit(126);
		close(fd);
	}
	if (notify >= 0 && notify != 3)
		close(notify);
	char pidbuf[32];
	snprintf(pidbuf, sizeof pidbuf, "%d", (int)getpid());
	setenv("LISTEN_PID", pidbuf, 1);
	setenv("LISTEN_FDS", "1", 1);
	setenv("NOTIFY_SOCKET", notify_path, 1);
	if (watchdog_usec)
		setenv("WATCHDOG_USEC", watchdog_usec, 1);
	if (stall)
		setenv("ZP_FAULT_EXEC_STALL", "1", 1);
	execl(bin, bin, "serve", "--model", "tests/models/tiny-tok", "--socket", unused_path,
	      "--config", "tests/data/serve-test.ini", (char *)NULL);
	_exit(127);
}

/* Next notification datagram within ms, NUL-terminated in buf; false on
   timeout. */
static bool next_note(int nfd, char *buf, size_t cap, int ms)
{
	struct pollfd p = { .fd = nfd, .events = POLLIN };
	if (poll(&p, 1, ms) <= 0)
		return false;
	ssize_t r = recv(nfd, buf, cap - 1, 0);
	if (r < 0)
		return false;
	buf[r] = '\0';
	return true;
}

/* Notifications until one holds `want` (or the liveness bound): counts the
   STATUS lines seen before it. */
static bool wait_note(int nfd, const char *want, int *statuses)
{
	char buf[1024];
	double end = now_ms() + LIVENESS_MS;
	while (now_ms() < end) {
		if (!next_note(nfd, buf, sizeof buf, 200))
			continue;
		if (statuses && strstr(buf, "STATUS="))
			(*statuses)++;
		if (strstr(buf, want))
			return true;
	}
	return false;
}

static int reap(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int call(const char *method, const char *path, const char *body, zp_buf *out)
{
	zp_err e;
	int fd = zp_client_connect(sock_path, &e);
	if (fd < 0)
		return -1;
	int st = zp_client_call(fd, method, path, body, body ? strlen(body) : 0, out, &e);
	close(fd);
	return st;
}

/* Everything the peer sends until it closes (or the liveness bound). */
static void read_all(int fd, zp_buf *out)
{
	char tmp[4096];
	double end = now_ms() + LIVENESS_MS;
	while (now_ms() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t r = recv(fd, tmp, sizeof tmp, 0);
		if (r <= 0)
			return;
		zp_buf_put(out, tmp, (size_t)r);
	}
}

/* Activation, readiness, serving, stopping, the socket left behind. */
static void test_lifecycle(void)
{
	int lfd = unix_socket(SOCK_STREAM, sock_path), nfd = unix_socket(SOCK_DGRAM, notify_path);
	CHECK(lfd >= 0 && nfd >= 0, "test sockets: %s", strerror(errno));
	if (lfd < 0 || nfd < 0)
		return;
	/* a client that connects and asks before the server process exists */
	zp_err e;
	int early = zp_client_connect(sock_path, &e);
	CHECK(early >= 0, "connect before the server started: %s", e.msg);
	static const char body[] = "{\"prompt\":\"hello world\"}";
	char req[256];
	int n = snprintf(req, sizeof req, "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s", strlen(body), body);
	CHECK(send(early, req, (size_t)n, MSG_NOSIGNAL) == n, "early request not sent");

	pid_t pid = spawn(lfd, nfd, NULL, false);
	int statuses = 0;
	CHECK(wait_note(nfd, "READY=1", &statuses), "no READY=1");
	CHECK(statuses >= 1, "no STATUS line before READY=1 (%d)", statuses);

	zp_buf out;
	zp_buf_init(&out, 1024);
	read_all(early, &out);
	close(early);
	CHECK(out.len > 12 && !memcmp(out.p, "HTTP/1.1 200", 12),
	      "the connection made before start was not answered 200: %.*s", (int)ZP_MIN(out.len, 200),
	      out.p);
	out.len = 0;
	int st = call("POST", "/v1/prefill", "{\"prompt_token_ids\":[1,2,3]}", &out);
	CHECK(st == 200, "prefill on the passed socket: %d %.*s", st, (int)out.len, out.p);
	struct stat sb;
	CHECK(stat(unused_path, &sb) != 0, "the server created its own socket %s", unused_path);

	kill(pid, SIGTERM);
	CHECK(wait_note(nfd, "STOPPING=1", NULL), "no STOPPING=1 after SIGTERM");
	CHECK(reap(pid) == 0, "exit after SIGTERM not 0");
	CHECK(stat(sock_path, &sb) == 0 && S_ISSOCK(sb.st_mode),
	      "the socket file did not survive the server's exit");
	/* the listening socket still queues connections for the next instance */
	int later = zp_client_connect(sock_path, &e);
	CHECK(later >= 0, "connect after the server exited: %s", e.msg);
	if (later >= 0)
		close(later);
	zp_buf_free(&out);
	close(lfd);
	close(nfd);
}

/* Count WATCHDOG=1 pings within ms. */
static int pings_within(int nfd, int ms)
{
	char buf[1024];
	int pings = 0;
	double end = now_ms() + ms;
	while (now_ms() < end)
		if (next_note(nfd, buf, sizeof buf, 50) && strstr(buf, "WATCHDOG=1"))
			pings++;
	return pings;
}

/* Pings while idle; none once an executor wedges on a batch. */
static void test_watchdog(void)
{
	int lfd = unix_socket(SOCK_STREAM, sock_path), nfd = unix_socket(SOCK_DGRAM, notify_path);
	CHECK(lfd >= 0 && nfd >= 0, "test sockets: %s", strerror(errno));
	if (lfd < 0 || nfd < 0)
		return;
	pid_t pid = spawn(lfd, nfd, "400000", true); /* 0.4 s: pings every 0.2 s */
	CHECK(wait_note(nfd, "READY=1", NULL), "no READY=1");
	int idle = pings_within(nfd, 2000);
	CHECK(idle >= 2, "idle server sent %d watchdog pings in 2 s (period 0.4 s)", idle);

	/* a request the wedged executor never finishes (its client waits) */
	zp_err e;
	int fd = zp_client_connect(sock_path, &e);
	static const char body[] = "{\"prompt_token_ids\":[1,2,3]}";
	char req[256];
	int n = snprintf(req, sizeof req, "POST /v1/prefill HTTP/1.1\r\nHost: x\r\nContent-Length: %zu"
			 "\r\n\r\n%s", strlen(body), body);
	CHECK(fd >= 0 && send(fd, req, (size_t)n, MSG_NOSIGNAL) == n, "stalling request not sent");
	/* pings stop: a quiet stretch of 5 periods appears within the bound */
	bool quiet = false;
	double end = now_ms() + LIVENESS_MS;
	while (!quiet && now_ms() < end)
		quiet = pings_within(nfd, 2000) == 0;
	CHECK(quiet, "watchdog pings went on with a wedged executor");
	kill(pid, SIGKILL);
	reap(pid);
	if (fd >= 0)
		close(fd);
	close(lfd);
	close(nfd);
}

/* A passed descriptor of the wrong kind (a datagram socket) stops the start
   with a message, and nothing is created or removed. */
static void test_wrong_socket(void)
{
	char dgram[300];
	snprintf(dgram, sizeof dgram, "%s/dgram.sock", dir);
	int dfd = unix_socket(SOCK_DGRAM, dgram), nfd = unix_socket(SOCK_DGRAM, notify_path);
	CHECK(dfd >= 0 && nfd >= 0, "test sockets: %s", strerror(errno));
	if (dfd < 0 || nfd < 0)
		return;
	pid_t pid = spawn(dfd, nfd, NULL, false);
	CHECK(reap(pid) == 1, "a datagram socket passed as the listener was not a start error");
	struct stat sb;
	CHECK(stat(unused_path, &sb) != 0, "the server created %s", unused_path);
	CHECK(stat(dgram, &sb) == 0, "the passed socket's file was removed");
	close(dfd);
	close(nfd);
}

int main(void)
{
	bin = getenv("ZPREFILL") ? getenv("ZPREFILL") : "./zprefill";
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof dir, "/tmp/zp-sd-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(sock_path, sizeof sock_path, "%s/zprefill.sock", dir);
	snprintf(notify_path, sizeof notify_path, "%s/notify", dir);
	snprintf(unused_path, sizeof unused_path, "%s/not-created.sock", dir);
	test_lifecycle();
	test_watchdog();
	test_wrong_socket();
	unlink(sock_path);
	unlink(notify_path);
	char dgram[300];
	snprintf(dgram, sizeof dgram, "%s/dgram.sock", dir);
	unlink(dgram);
	rmdir(dir);
	return check_exit("test_systemd");
}

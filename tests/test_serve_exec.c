/* test_serve_exec.c -- executors lost or wedged, through the real `zprefill
   serve` on a temporary Unix socket (issue 17: item 2, F-3, F-4):
     lost     two asyncep executors, ZP_FAULT_EXEC_DIE=1:1 (executor 1's first
              batch faults as a device that never comes back), 8 requests at
              once: every one a 200 with the bytes a clean server gives;
              /health 200 "degraded" naming executor 1 down; /metrics counts
              it (zprefill_executor_lost_total 1, executor_up 0); one log line;
              systemd's STATUS= (a datagram socket as NOTIFY_SOCKET)
     stalled  two executors, ZP_FAULT_EXEC_STALL=1:1 (executor 1 wedges at its
              first batch): /health 200 "degraded" naming it stalled (the
              progress test, stall_timeout_ms, no watchdog configured); later
              requests are served by executor 0
     none     one executor, ZP_FAULT_EXEC_STALL=1: /health 503 saying no
              executor makes progress
     deadline SIGTERM with the wedged request admitted (the two above):
              after shutdown_timeout_ms it gets a 503 and the process exits 1,
              saying why in the log
   Every wait is a liveness bound, never a speed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "serve_proc.h"
#include "client.h"

static char dir[256], sock[300], log_path[300], notify_path[300], notify_env[340];
static const char *bin;

#define TRIES SERVE_TRIES
#define NREQ 8
#define MODEL "tests/models/tiny-tok" /* 8 experts, a tokenizer */

/* zprefill serve on MODEL with config text cfg, ready; the fault hook env
   (NAME=VALUE, or NULL) and NOTIFY_SOCKET (when set) in its environment. */
static pid_t start(const char *cfg, const char *env)
{
	char path[300];
	snprintf(path, sizeof path, "%s/c.ini", dir);
	serve_write_file(path, cfg);
	const char *envs[3] = { 0 }, **e = envs;
	if (env)
		*e++ = env;
	if (notify_env[0])
		*e++ = notify_env;
	pid_t pid = serve_wait_ready(serve_spawn(bin, MODEL, sock, path, log_path, envs), sock);
	CHECK(pid > 0, "the server starts");
	return pid;
}

/* Request i sent on a new connection, not read: its fd. */
static int send_req(int i)
{
	char body[128], req[512];
	zp_err e;
	int fd = zp_client_connect(sock, &e);
	if (fd < 0)
		return -1;
	int n = snprintf(body, sizeof body, "{\"prompt\":\"hello world %d times\",\"top_logprobs\":3}",
			 i);
	int m = snprintf(req, sizeof req, "POST /v1/prefill HTTP/1.1\r\nHost: t\r\nContent-Type: "
			 "application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", n, body);
	send_all(fd, req, (size_t)m);
	return fd;
}

/* The status of the answer read on fd (its body into out), -1 for none
   within ms; fd is closed unless keep and nothing came. */
static int read_answer_or_keep(int fd, zp_buf *out, int ms, bool keep)
{
	int st = -1;
	read_for(fd, out, ms);
	if (!keep || out->len)
		close(fd);
	zp_buf_put(out, "", 1);
	out->len--;
	if (out->len && sscanf(out->p, "HTTP/1.1 %d", &st) != 1)
		st = -1;
	const char *b = strstr(out->p, "\r\n\r\n");
	if (b) { /* the body only: the head holds nothing to compare */
		size_t off = (size_t)(b + 4 - out->p);
		memmove(out->p, out->p + off, out->len - off + 1);
		out->len -= off;
	}
	return st;
}

static int read_answer(int fd, zp_buf *out, int ms)
{
	return read_answer_or_keep(fd, out, ms, false);
}

/* NREQ requests at once; each answer's status and body. */
static void burst(int *st, zp_buf *ans)
{
	int fd[NREQ];
	for (int i = 0; i < NREQ; i++)
		fd[i] = send_req(i);
	for (int i = 0; i < NREQ; i++)
		st[i] = fd[i] < 0 ? -1 : read_answer(fd[i], &ans[i], 30000);
}

/* /health until its body holds want (or the bound): its status, body in out. */
static int health_until(const char *want, zp_buf *out)
{
	int st = -1;
	for (int i = 0; i < TRIES; i++) {
		st = serve_get(sock, "/health", out);
		if (st > 0 && strstr(out->p, want))
			break;
		sleep_ms(20);
	}
	return st;
}

static const char cfg_two[] =
	"[engine]\ndtype = fp32\nexecutors = 2\nthreads_per_executor = 1\nparallel = asyncep\n"
	"schedule = least_tokens\nqueue_requests_max = 16\n"
	"[server]\nstall_timeout_ms = 300\nshutdown_timeout_ms = 1000\n[log]\nlevel = info\n";

/* A datagram socket playing systemd's notification socket (NOTIFY_SOCKET
   for the next server started). */
static int notify_listen(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ZP_ASSERT(strlen(notify_path) < sizeof a.sun_path);
	memcpy(a.sun_path, notify_path, strlen(notify_path) + 1);
	ZP_ASSERT(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
	snprintf(notify_env, sizeof notify_env, "NOTIFY_SOCKET=%s", notify_path);
	return fd;
}

/* Whether a notification holding want arrived (each read within 2 s). */
static bool notified(int fd, const char *want)
{
	char buf[1024];
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 2000) <= 0)
			return false;
		ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
		if (r <= 0)
			return false;
		buf[r] = 0;
		if (strstr(buf, want))
			return true;
	}
}

static void test_lost(void)
{
	int st[NREQ], st_ref[NREQ];
	zp_buf ans[NREQ], ref[NREQ], out;
	zp_buf_init(&out, 1 << 16);
	for (int i = 0; i < NREQ; i++) {
		zp_buf_init(&ans[i], 1 << 16);
		zp_buf_init(&ref[i], 1 << 16);
	}
	pid_t pid = start(cfg_two, NULL);
	if (pid > 0) {
		burst(st_ref, ref);
		CHECK(serve_stop_bounded(pid) == 0, "lost: the clean server stops");
	}
	int nfd = notify_listen();
	pid = start(cfg_two, "ZP_FAULT_EXEC_DIE=1:1");
	notify_env[0] = 0;
	if (pid <= 0) {
		close(nfd);
		goto out;
	}
	burst(st, ans);
	int ok = 0, same = 0;
	for (int i = 0; i < NREQ; i++) {
		ok += st[i] == 200;
		same += st[i] == 200 && st_ref[i] == 200 && ans[i].len == ref[i].len &&
			!memcmp(ans[i].p, ref[i].p, ans[i].len);
	}
	printf("lost: %d requests, %d answered 200, %d identical to a clean server's\n", NREQ, ok,
	       same);
	CHECK(ok == NREQ && same == NREQ, "lost: every request a 200 with the clean answer (%d, %d)",
	      ok, same);
	int h = health_until("down", &out);
	printf("lost: /health %d %s\n", h, out.p);
	CHECK(h == 200 && strstr(out.p, "\"degraded\"") && strstr(out.p, "\"executor\":1") &&
	      strstr(out.p, "\"down\"") && strstr(out.p, "\"executors_up\":1"),
	      "lost: /health degraded naming executor 1 down: %d %s", h, out.p);
	CHECK(serve_get(sock, "/metrics", &out) == 200 && strstr(out.p, "\nzprefill_executor_lost_total 1\n") &&
	      strstr(out.p, "\nzprefill_executor_up{executor=\"1\"} 0\n") &&
	      strstr(out.p, "\nzprefill_executor_up{executor=\"0\"} 1\n") &&
	      strstr(out.p, "\nzprefill_expert_replacements_total 1\n"),
	      "lost: /metrics counts it");
	burst(st, ans); /* the survivor serves on, the experts re-placed on it */
	ok = 0;
	for (int i = 0; i < NREQ; i++)
		ok += st[i] == 200 && ans[i].len == ref[i].len && !memcmp(ans[i].p, ref[i].p, ref[i].len);
	CHECK(ok == NREQ, "lost: later requests exact on the survivor (%d of %d)", ok, NREQ);
	CHECK(notified(nfd, "STATUS=degraded: executor 1 out (its device faulted"),
	      "lost: systemd hears STATUS=degraded naming executor 1");
	close(nfd);
	CHECK(serve_stop_bounded(pid) == 0, "lost: clean stop");
	char *log = serve_read_file(log_path);
	CHECK(strstr(log, "msg=\"executor lost: its work goes to the others\" executor=1") &&
	      strstr(log, "msg=\"experts re-placed\""), "lost: the log says so");
	free(log);
out:
	for (int i = 0; i < NREQ; i++) {
		zp_buf_free(&ans[i]);
		zp_buf_free(&ref[i]);
	}
	zp_buf_free(&out);
}

/* The wedged request's connection gets a 503 at the deadline; the process
   exits 1 saying why. */
static void check_deadline(pid_t pid, int fd, const char *tag)
{
	zp_buf out;
	zp_buf_init(&out, 1 << 16);
	int rc = serve_stop_bounded(pid);
	int st = fd >= 0 ? read_answer(fd, &out, 5000) : -1;
	printf("%s: SIGTERM with a request on a wedged executor: exit %d, the request %d %.120s\n",
	       tag, rc, st, out.p);
	CHECK(rc == 1, "%s: the process exits 1 after the shutdown deadline (%d)", tag, rc);
	CHECK(st == 503 && strstr(out.p, "shutdown deadline"), "%s: the request got 503: %d %.200s",
	      tag, st, out.p);
	char *log = serve_read_file(log_path);
	CHECK(strstr(log, "msg=\"shutdown deadline passed: answering the admitted requests 503 and "
			  "exiting\""), "%s: the log says why", tag);
	free(log);
	zp_buf_free(&out);
}

static void test_stalled(void)
{
	zp_buf out;
	zp_buf_init(&out, 1 << 16);
	int st[NREQ];
	zp_buf ans[NREQ];
	pid_t pid = start(cfg_two, "ZP_FAULT_EXEC_STALL=1:1");
	if (pid <= 0)
		return zp_buf_free(&out);
	int fd[NREQ], wedged = -1;
	for (int i = 0; i < NREQ; i++)
		fd[i] = send_req(i);
	int h = health_until("stalled", &out);
	printf("stalled: /health %d %s\n", h, out.p);
	CHECK(h == 200 && strstr(out.p, "\"degraded\"") && strstr(out.p, "\"executor\":1") &&
	      strstr(out.p, "\"stalled\""), "stalled: /health degraded naming executor 1: %d %s", h,
	      out.p);
	int answered = 0;
	for (int i = 0; i < NREQ; i++) { /* one batch is wedged; the rest come back */
		zp_buf_init(&ans[i], 1 << 16);
		st[i] = read_answer_or_keep(fd[i], &ans[i], 1500, true);
		answered += st[i] == 200;
		if (st[i] == -1 && !ans[i].len && wedged < 0)
			wedged = fd[i]; /* its batch is on executor 1: open until the deadline */
		else if (st[i] == -1 && !ans[i].len)
			close(fd[i]);
	}
	printf("stalled: %d of %d answered while executor 1 is wedged\n", answered, NREQ);
	CHECK(answered >= 1 && answered < NREQ, "stalled: the others are served (%d)", answered);
	burst(st, ans); /* new work goes to executor 0 only */
	answered = 0;
	for (int i = 0; i < NREQ; i++)
		answered += st[i] == 200;
	CHECK(answered == NREQ, "stalled: later requests all served (%d of %d)", answered, NREQ);
	for (int i = 0; i < NREQ; i++)
		zp_buf_free(&ans[i]);
	CHECK(wedged >= 0, "stalled: a request waits on the wedged executor");
	check_deadline(pid, wedged, "stalled");
	zp_buf_free(&out);
}

static void test_none(void)
{
	zp_buf out;
	zp_buf_init(&out, 1 << 16);
	pid_t pid = start("[engine]\ndtype = fp32\nthreads_per_executor = 1\n[server]\n"
			  "stall_timeout_ms = 300\nshutdown_timeout_ms = 1000\n", "ZP_FAULT_EXEC_STALL=1");
	if (pid <= 0)
		return zp_buf_free(&out);
	int fd = send_req(0);
	int h = health_until("progress", &out);
	printf("none: /health %d %s\n", h, out.p);
	CHECK(h == 503 && strstr(out.p, "\"unavailable\"") &&
	      strstr(out.p, "no executor is making progress") && strstr(out.p, "\"stalled\""),
	      "none: /health 503 saying no executor makes progress: %d %s", h, out.p);
	check_deadline(pid, fd, "none");
	zp_buf_free(&out);
}

int main(void)
{
	bin = getenv("ZPREFILL") ? getenv("ZPREFILL") : "./zprefill";
	snprintf(dir, sizeof dir, "/tmp/zp-exec-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock, sizeof sock, "%s/s", dir);
	snprintf(log_path, sizeof log_path, "%s/log", dir);
	snprintf(notify_path, sizeof notify_path, "%s/notify", dir);
	signal(SIGPIPE, SIG_IGN);
	test_lost();
	test_stalled();
	test_none();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		return 1;
	return check_exit("test_serve_exec");
}

/* serve_proc.h -- what the end-to-end tests of `zprefill serve` share: a
   sleep, starting a server process (config file, log, environment) and
   waiting for its /health, stopping it with SIGTERM (its exit code, within a
   bound or not), a test's text files, and raw socket I/O (send every byte;
   read what comes within a silence bound). Header only; include after
   check.h. Every bound is a liveness bound, never a speed. */
#ifndef ZP_SERVE_PROC_H
#define ZP_SERVE_PROC_H

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "json.h"

#define SERVE_POLL_MS 20
#define SERVE_TRIES 1500 /* polls at 20 ms: 30 s, a bound for a loaded machine */

static inline void sleep_ms(int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&t, NULL);
}

/* SIGTERM to pid, then its exit code (128 + signal when killed). */
static inline int stop(pid_t pid)
{
	int st;
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* pid's exit code once it exits within tries polls (128 + signal when
   killed), -1 when it is still running. */
static inline int serve_wait_exit(pid_t pid, int tries)
{
	int st;
	for (int i = 0; i < tries; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		sleep_ms(SERVE_POLL_MS);
	}
	return -1;
}

/* SIGTERM, then its exit code within the bound (-1: it had to be killed). */
static inline int serve_stop_bounded(pid_t pid)
{
	kill(pid, SIGTERM);
	int rc = serve_wait_exit(pid, SERVE_TRIES);
	if (rc < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return rc;
}

static inline void serve_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ZP_ASSERT(f);
	fputs(text, f);
	fclose(f);
}

/* The text of path (its first 4 MiB), "" when it does not exist; the caller
   frees it. */
static inline char *serve_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	char *b = calloc(1, 1 << 22);
	ZP_ASSERT(b);
	size_t n = fread(b, 1, (1 << 22) - 1, f);
	b[n] = 0;
	fclose(f);
	return b;
}

/* `bin serve --model model --socket sock [--config cfg_path]` in a child,
   stderr into log_path (truncated), each NAME=VALUE of env (NULL-terminated,
   or NULL) added to its environment. */
static inline pid_t serve_spawn(const char *bin, const char *model, const char *sock,
				const char *cfg_path, const char *log_path,
				const char *const *env)
{
	pid_t pid = fork();
	ZP_ASSERT(pid >= 0);
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		for (; env && *env; env++)
			putenv((char *)*env);
		if (cfg_path)
			execl(bin, bin, "serve", "--model", model, "--socket", sock, "--config",
			      cfg_path, (char *)NULL);
		else
			execl(bin, bin, "serve", "--model", model, "--socket", sock, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* GET path on a new connection to sock: the status (body into out), -1
   when nobody answers. */
static inline int serve_get(const char *sock, const char *path, zp_buf *out)
{
	zp_err e;
	int fd = zp_client_connect(sock, &e);
	if (fd < 0)
		return -1;
	int st = zp_client_call(fd, "GET", path, NULL, 0, out, &e);
	close(fd);
	return st;
}

/* pid once its /health on sock says 200; -1 when it exited first or was not
   ready within the bound (then it is killed). */
static inline pid_t serve_wait_ready(pid_t pid, const char *sock)
{
	zp_buf out;
	zp_buf_init(&out, 4096);
	int st = -1, i;
	for (i = 0; i < SERVE_TRIES && st != 200; i++) {
		if (i)
			sleep_ms(SERVE_POLL_MS);
		st = serve_get(sock, "/health", &out);
		if (st != 200 && waitpid(pid, NULL, WNOHANG) == pid)
			break;
	}
	zp_buf_free(&out);
	if (st == 200)
		return pid;
	if (i == SERVE_TRIES) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return -1;
}

static inline void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Whatever comes until EOF or ms of silence, into out (reset first). */
static inline void read_for(int fd, zp_buf *out, int ms)
{
	char tmp[65536];
	zp_buf_reset(out);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, ms) <= 0)
			return;
		ssize_t r = recv(fd, tmp, sizeof tmp, 0);
		if (r <= 0)
			return;
		zp_buf_put(out, tmp, (size_t)r);
	}
}

#endif

/* serve_proc.h -- what the end-to-end tests of `zprefill serve` share: a
   sleep, stopping a server process with SIGTERM (its exit code), and raw
   socket I/O (send every byte; read what comes within a silence bound). Header
   only; include after check.h. */
#ifndef ZP_SERVE_PROC_H
#define ZP_SERVE_PROC_H

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "json.h"

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

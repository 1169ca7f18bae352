/* sd.c -- see sd.h. */
#define _GNU_SOURCE
#include "sd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct {
	int fd;				/* datagram socket, -1: not notifying */
	struct sockaddr_un addr;
	socklen_t addr_len;
	double watchdog_s;
	_Atomic bool warned;
} sd = { .fd = -1 };

/* An environment variable naming this process's pid (LISTEN_PID,
   WATCHDOG_PID), or absent: true when it is absent or names us. */
static bool pid_is_us(const char *var, bool absent_ok)
{
	const char *v = getenv(var);
	if (!v)
		return absent_ok;
	char *end;
	errno = 0;
	long pid = strtol(v, &end, 10);
	return !errno && end != v && !*end && pid == (long)getpid();
}

int zp_sd_init(zp_err *e)
{
	const char *ns = getenv("NOTIFY_SOCKET");
	const char *wd = getenv("WATCHDOG_USEC");
	if (wd && pid_is_us("WATCHDOG_PID", true)) {
		char *end;
		errno = 0;
		unsigned long long us = strtoull(wd, &end, 10);
		if (errno || end == wd || *end || us == 0)
			return zp_errf(e, "WATCHDOG_USEC=%s is not a positive number of microseconds", wd);
		sd.watchdog_s = (double)us * 1e-6;
	}
	if (ns && *ns) {
		size_t n = strlen(ns);
		if ((ns[0] != '/' && ns[0] != '@') || n >= sizeof sd.addr.sun_path)
			return zp_errf(e, "NOTIFY_SOCKET=%s: not a socket path or an abstract name "
				       "under %zu bytes", ns, sizeof sd.addr.sun_path);
		sd.addr.sun_family = AF_UNIX;
		memcpy(sd.addr.sun_path, ns, n);
		if (ns[0] == '@')
			sd.addr.sun_path[0] = '\0'; /* the abstract namespace */
		sd.addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
		sd.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (sd.fd < 0)
			return zp_errf(e, "notify socket: %s", strerror(errno));
	}
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return 0;
}

int zp_sd_listen_fd(int *fd, char *path, size_t path_len, zp_err *e)
{
	*fd = -1;
	path[0] = '\0';
	const char *nfds = getenv("LISTEN_FDS");
	bool ours = nfds && pid_is_us("LISTEN_PID", false);
	if (!ours)
		return 0;
	char *end;
	errno = 0;
	long n = strtol(nfds, &end, 10);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (errno || end == nfds || *end || n < 0)
		return zp_errf(e, "LISTEN_FDS=%s is not a count of descriptors", nfds);
	if (n == 0)
		return 0;
	if (n != 1)
		return zp_errf(e, "systemd passed %ld sockets; zprefill serves on exactly one "
			       "(one ListenStream= in the .socket unit)", n);
	int type = 0, domain = 0, listening = 0;
	socklen_t l1 = sizeof type, l2 = sizeof domain, l3 = sizeof listening;
	if (getsockopt(ZP_SD_LISTEN_FD, SOL_SOCKET, SO_TYPE, &type, &l1) ||
	    getsockopt(ZP_SD_LISTEN_FD, SOL_SOCKET, SO_DOMAIN, &domain, &l2) ||
	    getsockopt(ZP_SD_LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l3))
		return zp_errf(e, "the passed descriptor %d is not a socket: %s", ZP_SD_LISTEN_FD,
			       strerror(errno));
	if (domain != AF_UNIX || type != SOCK_STREAM || !listening)
		return zp_errf(e, "the passed socket is not a listening Unix stream socket "
			       "(ListenStream=/path in the .socket unit)");
	int fl = fcntl(ZP_SD_LISTEN_FD, F_GETFD);
	if (fl < 0 || fcntl(ZP_SD_LISTEN_FD, F_SETFD, fl | FD_CLOEXEC))
		return zp_errf(e, "fcntl on the passed socket: %s", strerror(errno));
	struct sockaddr_un a;
	socklen_t al = sizeof a;
	if (getsockname(ZP_SD_LISTEN_FD, (struct sockaddr *)&a, &al) == 0 &&
	    al > offsetof(struct sockaddr_un, sun_path) && a.sun_path[0])
		snprintf(path, path_len, "%.*s",
			 (int)(al - offsetof(struct sockaddr_un, sun_path)), a.sun_path);
	*fd = ZP_SD_LISTEN_FD;
	return 0;
}

bool zp_sd_notifying(void)
{
	return sd.fd >= 0;
}

double zp_sd_watchdog_s(void)
{
	return sd.watchdog_s;
}

void zp_sd_notify(const char *fmt, ...)
{
	if (sd.fd < 0)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof msg)
		n = sizeof msg - 1;
	ssize_t w = sendto(sd.fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sd.addr,
			   sd.addr_len);
	if (w < 0 && !atomic_exchange(&sd.warned, true))
		zp_log(ZP_LOG_WARN, "msg=\"cannot notify the service manager\" error=\"%s\"",
		       strerror(errno));
}

/* sd.h -- running under systemd without libsystemd: socket activation
   (sd_listen_fds(3) semantics: LISTEN_PID, LISTEN_FDS, fds from 3) and the
   notification datagram (sd_notify(3): NOTIFY_SOCKET, a path or an abstract
   name starting with '@'; WATCHDOG_USEC, WATCHDOG_PID). Both protocols are a
   few lines over plain sockets, so zprefill carries them itself rather than
   a dependency on libsystemd (and its dependencies) for two functions.
   Threads: zp_sd_init and zp_sd_listen_fd at start-up, before any thread;
   zp_sd_notify from any thread (one datagram, no shared state after init). */
#ifndef ZP_SD_H
#define ZP_SD_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

/* The first passed descriptor (sd_listen_fds' SD_LISTEN_FDS_START). */
#define ZP_SD_LISTEN_FD 3

/* Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, then unset them (and
   LISTEN_*, once zp_sd_listen_fd read them) so that no child inherits them.
   0, or -1 with e set: NOTIFY_SOCKET is set but unusable. */
int zp_sd_init(zp_err *e);

/* The listening socket systemd passed, if LISTEN_PID names this process:
   *fd = ZP_SD_LISTEN_FD, checked to be exactly one listening AF_UNIX stream
   socket (close-on-exec set); *fd = -1 when not socket-activated. *path gets
   the socket's bound path ("" for an unnamed or abstract one).
   0, or -1 with e set (more than one descriptor, or not a listening Unix
   stream socket: the unit file is wrong). */
int zp_sd_listen_fd(int *fd, char *path, size_t path_len, zp_err *e);

/* Send one notification ("READY=1", "STATUS=...", ...), formatted as printf.
   Nothing without NOTIFY_SOCKET. Failures are logged once and otherwise
   ignored: the service manager may be gone at shutdown. */
void zp_sd_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* True when a service manager listens for notifications. */
bool zp_sd_notifying(void);

/* The watchdog period in seconds (WATCHDOG_USEC, when WATCHDOG_PID is absent
   or names this process), or 0: no watchdog. Pings go at half of it. */
double zp_sd_watchdog_s(void);

#endif

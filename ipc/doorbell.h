/* doorbell.h -- how a thread that waits for work is woken: an eventfd that
   counts rings. Any number of threads ring; exactly one thread (the
   consumer) waits or drains. Rings coalesce: several before a wait wake it
   once and the wait returns how many there were. A consumer always re-checks
   its rings after a wake, since a ring says "look", not "one item".
   An event loop (the reactor's io_uring) may read zp_bell_fd itself: one
   8-byte read returns and clears the count, as zp_bell_wait does. */
#ifndef ZP_DOORBELL_H
#define ZP_DOORBELL_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ipc.h"

typedef struct {
	int fd;				/* the eventfd; -1 when not open */
} zp_bell;

/* 0, or -1 with errno set (out of file descriptors). */
static inline int zp_bell_init(zp_bell *b)
{
	b->fd = eventfd(0, EFD_CLOEXEC);
	return b->fd < 0 ? -1 : 0;
}

static inline void zp_bell_free(zp_bell *b)
{
	if (b->fd >= 0) {
		int rc = close(b->fd);
		ZP_IPC_ASSERT(rc == 0 || errno != EBADF); /* EBADF: freed twice */
	}
	b->fd = -1;
}

static inline int zp_bell_fd(const zp_bell *b)
{
	return b->fd;
}

/* Any thread. Never blocks: the count cannot reach the eventfd's limit. */
static inline void zp_bell_ring(zp_bell *b)
{
	uint64_t one = 1;
	ssize_t n;
	while ((n = write(b->fd, &one, sizeof one)) < 0 && errno == EINTR)
		;
	ZP_IPC_ASSERT(n == (ssize_t)sizeof one);
}

/* Consumer. Block until rung; the rings since the last wait or drain (>= 1). */
static inline uint64_t zp_bell_wait(zp_bell *b)
{
	uint64_t v = 0;
	ssize_t n;
	while ((n = read(b->fd, &v, sizeof v)) < 0 && errno == EINTR)
		;
	ZP_IPC_ASSERT(n == (ssize_t)sizeof v && v > 0);
	return v;
}

/* Consumer. Never blocks: the rings pending (0: none), now cleared. */
static inline uint64_t zp_bell_drain(zp_bell *b)
{
	struct pollfd p = { .fd = b->fd, .events = POLLIN };
	int rc;
	while ((rc = poll(&p, 1, 0)) < 0 && errno == EINTR)
		;
	ZP_IPC_ASSERT(rc >= 0);
	return rc > 0 ? zp_bell_wait(b) : 0; /* readable: the read cannot block */
}

#endif

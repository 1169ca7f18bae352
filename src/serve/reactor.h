/* reactor.h -- the event-loop core: one io_uring and nothing else (redis
   ae.c's spirit). It arms multishot accepts, multishot receives into a ring
   of provided buffers, sends, reads and cancels, and hands each completion
   to a callback, decoded: its user_data packs op (8 bits), slot (24) and a
   generation (32), so the owner of a slot recognises a stale completion.
   Knows nothing of HTTP, connections or the engine. Reactor thread only. */
#ifndef ZP_REACTOR_H
#define ZP_REACTOR_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define ZP_REACTOR_ENTRIES 1024		/* submission queue entries */
#define ZP_REACTOR_BUFS 512		/* provided receive buffers (a power of two) */
#define ZP_REACTOR_BUF_BYTES 16384	/* bytes each */

enum zp_reactor_op {
	ZP_REACTOR_ACCEPT = 1,	/* slot: which listener */
	ZP_REACTOR_RECV,	/* slot, gen: a connection */
	ZP_REACTOR_SEND,	/* slot, gen: a connection */
	ZP_REACTOR_EVENT,	/* a read of the executors' eventfd */
	ZP_REACTOR_SIGNAL,	/* a read of the signalfd */
	ZP_REACTOR_CANCEL,	/* a cancel's own completion (nothing to do) */
};

typedef struct {
	struct io_uring ring;
	struct io_uring_buf_ring *br;	/* [ZP_REACTOR_BUFS] */
	char *bufs;			/* [ZP_REACTOR_BUFS][ZP_REACTOR_BUF_BYTES] */
	bool ring_up;
} zp_reactor;

/* One completion, decoded. */
typedef struct {
	enum zp_reactor_op op;
	uint32_t slot, gen;
	int res;		/* bytes, an fd (accept), or -errno */
	bool more;		/* a multishot operation stays armed */
	const char *data;	/* RECV: the res bytes received (NULL: no buffer); valid
				   during the callback only, the buffer goes back after */
} zp_reactor_event;

/* 0, or -1 with e saying why (no io_uring, no memory). */
int zp_reactor_init(zp_reactor *r, zp_err *e);
void zp_reactor_free(zp_reactor *r);	/* safe on a zeroed or half-set-up reactor */

void zp_reactor_accept(zp_reactor *r, int listen_fd, uint32_t slot);
void zp_reactor_cancel_accept(zp_reactor *r, uint32_t slot);
void zp_reactor_recv(zp_reactor *r, int fd, uint32_t slot, uint32_t gen);
void zp_reactor_send(zp_reactor *r, int fd, const void *p, size_t n, uint32_t slot,
		     uint32_t gen);
/* Cancel every operation on fd (each still completes, with -ECANCELED). */
void zp_reactor_cancel_fd(zp_reactor *r, int fd);
/* A single read of n bytes into buf, completing as op (EVENT or SIGNAL). */
void zp_reactor_read(zp_reactor *r, int fd, void *buf, unsigned n, enum zp_reactor_op op);

/* Submit what is armed and wait up to timeout_s for a completion. */
void zp_reactor_wait(zp_reactor *r, double timeout_s);
/* Hand every completion that has arrived to fn; returns how many. */
unsigned zp_reactor_drain(zp_reactor *r, void (*fn)(void *arg, const zp_reactor_event *ev),
			  void *arg);

#endif

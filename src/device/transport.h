/* transport.h -- how AsyncEP's comm thread moves experts (DESIGN.md section
   3): a transport issues a list of segments (one gather: every peer's shard
   of a layer into one executor's buffer; or one prefetch: an executor's own
   part from the host store into a window slot) onto the destination
   executor's copy queue (backend.h). `cpu` (src/cpu/transport_cpu.c) is
   memcpy between executors sharing host memory; `p2p` (transport_p2p.c)
   queues each segment on the destination's copy queue, which reads a peer's
   memory directly (copy engines, no SMs; on the sim, its copy stream);
   `nccl` is collective: every executor's gather of a layer is one round,
   issued together (on cuda: NCCL send/receive pairs in one group on the
   queues' streams, src/cuda/transport_cuda.c; on the sim, its twin: the
   same copies over the sim's queues, in executor order). The registry
   (device.h) makes them by name.
   Threads: one thread copies at a time (the comm thread; calibration while
   the executors are idle); zp_transport_fail_after may be called from any
   thread. */
#ifndef ZP_TRANSPORT_H
#define ZP_TRANSPORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "backend.h"
#include "util.h"

/* One contiguous copy into the destination executor's memory, from a peer
   executor's memory or from host memory (the host store). */
typedef struct {
	void *dst;
	const void *src;
	size_t bytes;
	int src_exec;		/* the peer executor src belongs to; -1: host memory */
} zp_copy_seg;

/* Where an executor's copies land: its backend and its copy queue. */
typedef struct {
	zp_backend *be;
	zp_bqueue *q;
} zp_port;

typedef struct zp_transport zp_transport;
struct zp_transport {
	const char *name;
	/* Issue segs[0..n) (they do not overlap) into dst's memory, on dst's
	   queue, in order: they may still run when copy returns (the caller
	   records the queue after them). 0, or -1 with e set: that transfer
	   failed (its destinations hold anything); the transport serves the
	   next call. Called through zp_transport_copy. */
	int (*copy)(zp_transport *t, const zp_port *dst, const zp_copy_seg *segs, int n, zp_err *e);
	void (*free)(zp_transport *t);
	/* Collective transports (NULL otherwise): one round, every executor's
	   gather of one layer issued together: segs[x][0..nseg[x]) into
	   ports[x]'s memory, for x < n (all the executors). Contract as copy's,
	   for the whole round. The executors' forwards run in lockstep so that
	   each asks for the same layers in the same order. */
	int (*round)(zp_transport *t, const zp_port *ports, const zp_copy_seg *const *segs,
		     const int *nseg, int n, zp_err *e);
	/* Once every executor is attached, before any copy (the engine's start;
	   NULL: nothing to set up): the executors' ports, ports[x] executor x's.
	   0, or -1 with e set: these executors cannot use the transport. */
	int (*setup)(zp_transport *t, const zp_port *ports, int n, zp_err *e);
	/* Fault injection for tests: when > 0, the fail_after-th copy from now
	   fails as a transport error would, before copying anything. */
	_Atomic int fail_after;
};

/* What every caller of a transport calls: the injected fault if one is due,
   else t's copy. Contract as copy's above. */
static inline int zp_transport_copy(zp_transport *t, const zp_port *dst, const zp_copy_seg *segs,
				    int n, zp_err *e)
{
	int due = atomic_load(&t->fail_after);
	if (due > 0 && atomic_fetch_sub(&t->fail_after, 1) == 1)
		return zp_errf(e, "transport %s: copy failed (injected fault)", t->name);
	return t->copy(t, dst, segs, n, e);
}

/* A round of a collective transport, through the same injected fault. */
static inline int zp_transport_round(zp_transport *t, const zp_port *ports,
				     const zp_copy_seg *const *segs, const int *nseg, int n, zp_err *e)
{
	int due = atomic_load(&t->fail_after);
	if (due > 0 && atomic_fetch_sub(&t->fail_after, 1) == 1)
		return zp_errf(e, "transport %s: round failed (injected fault)", t->name);
	return t->round(t, ports, segs, nseg, n, e);
}

/* Tests: the n-th copy from now fails (0: none). */
static inline void zp_transport_fail_after(zp_transport *t, int n)
{
	atomic_store(&t->fail_after, n);
}

static inline void zp_transport_free(zp_transport *t)
{
	if (t)
		t->free(t);
}

/* The device transports over backend copy queues (transport_p2p.c): "p2p",
   or (collective) "nccl"'s twin for the sim device. */
zp_transport *zp_transport_queue_new(bool collective);

#endif

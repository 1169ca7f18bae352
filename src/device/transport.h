/* transport.h -- how AsyncEP's comm thread moves experts (DESIGN.md section
   3): a transport copies a list of segments (one gather: every peer's shard of
   a layer into one executor's buffer; or one prefetch: an executor's own part
   from the host store into a window slot). `cpu` (src/cpu/transport_cpu.c)
   is memcpy between executors sharing host memory; `p2p` and `nccl` (src/cuda/
   transport_cuda.h) copy between CUDA devices. The registry (device.h) makes
   them by name.
   Threads: one thread copies at a time (the comm thread; calibration while the
   executors are idle); zp_transport_fail_after may be called from any thread. */
#ifndef ZP_TRANSPORT_H
#define ZP_TRANSPORT_H

#include <stdatomic.h>
#include <stddef.h>

#include "util.h"

#define ZP_DEV_HOST (-1) /* a segment end in host memory */

/* One contiguous copy. A device transport needs to know where each pointer
   lives: the CUDA device of each end, or ZP_DEV_HOST. */
typedef struct {
	void *dst;
	const void *src;
	size_t bytes;
	int dst_dev, src_dev;
} zp_copy_seg;

typedef struct zp_transport zp_transport;
struct zp_transport {
	const char *name;
	/* Copy segs[0..n) (they do not overlap). 0 when every byte is in place
	   and readable by the destination's owner (device copies have completed),
	   or -1 with e set: that transfer failed and only it (its destinations
	   hold anything); the transport serves the next call. Called through
	   zp_transport_copy. */
	int (*copy)(zp_transport *t, const zp_copy_seg *segs, int n, zp_err *e);
	void (*free)(zp_transport *t);
	/* Fault injection for tests: when > 0, the fail_after-th copy from now
	   fails as a transport error would, before copying anything. */
	_Atomic int fail_after;
};

/* What every caller of a transport calls: the injected fault if one is due,
   else t's copy. Contract as copy's above. */
static inline int zp_transport_copy(zp_transport *t, const zp_copy_seg *segs, int n, zp_err *e)
{
	int due = atomic_load(&t->fail_after);
	if (due > 0 && atomic_fetch_sub(&t->fail_after, 1) == 1)
		return zp_errf(e, "transport %s: copy failed (injected fault)", t->name);
	return t->copy(t, segs, n, e);
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

#endif

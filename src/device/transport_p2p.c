/* transport_p2p.c -- the device transports over backend copy queues
   (transport.h): each segment is one queue_copy on the destination
   executor's queue: a peer's memory read directly (cudaMemcpyAsync with
   peer access: copy engines, no SMs), or the host store over PCIe. The
   collective one is NCCL's twin for the sim device: a round is the same
   copies, every destination in executor order, as one call (cuda's is
   src/cuda/transport_cuda.c). Threads: transport.h's. */
#include "transport.h"

#include <stdlib.h>

static int queue_copy(zp_transport *t, const zp_port *dst, const zp_copy_seg *segs, int n,
		      zp_err *e)
{
	for (int i = 0; i < n; i++)
		dst->be->ops->queue_copy(dst->be, dst->q, segs[i].dst, segs[i].src, segs[i].bytes);
	return 0;
}

static int queue_round(zp_transport *t, const zp_port *ports, const zp_copy_seg *const *segs,
		       const int *nseg, int n, zp_err *e)
{
	for (int x = 0; x < n; x++)
		queue_copy(t, &ports[x], segs[x], nseg[x], e);
	return 0;
}

static void queue_free(zp_transport *t)
{
	free(t);
}

zp_transport *zp_transport_queue_new(bool collective)
{
	zp_transport *t = zp_xcalloc(1, sizeof *t);
	t->name = collective ? "nccl" : "p2p";
	t->copy = queue_copy;
	t->free = queue_free;
	t->round = collective ? queue_round : NULL;
	return t;
}

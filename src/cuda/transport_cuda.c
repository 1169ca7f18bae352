/* transport_cuda.c -- see transport_cuda.h. */
#include "transport_cuda.h"

#ifdef ZP_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>

#include "backend_cuda.h"

typedef struct {
	zp_transport t;			/* first: what callers hold */
	int n;				/* ranks (executors); 0 until the first round */
	ncclComm_t comm[ZP_CUDA_RANKS_MAX];
	int dev[ZP_CUDA_RANKS_MAX];	/* rank x's GPU */
} nccl_xport;

#define CU(call)                                                                         \
	do {                                                                             \
		cudaError_t rc_ = (call);                                                \
		if (rc_ != cudaSuccess)                                                  \
			return zp_errf(e, "%s: %s (%s:%d)", #call, cudaGetErrorString(rc_), \
				       __FILE__, __LINE__);                              \
	} while (0)

#define NC(call)                                                                         \
	do {                                                                             \
		ncclResult_t rc_ = (call);                                               \
		if (rc_ != ncclSuccess)                                                  \
			return zp_errf(e, "%s: %s (%s:%d)", #call, ncclGetErrorString(rc_), \
				       __FILE__, __LINE__);                              \
	} while (0)

/* one rank per executor, each on its own GPU */
static int comms(nccl_xport *x, const zp_port *ports, int n, zp_err *e)
{
	if (x->n == n)
		return 0;
	if (x->n || n > ZP_CUDA_RANKS_MAX)
		return zp_errf(e, "transport nccl: %d executors (at most %d, set once)", n,
			       ZP_CUDA_RANKS_MAX);
	for (int r = 0; r < n; r++) {
		x->dev[r] = zp_backend_cuda_ordinal(ports[r].be);
		for (int q = 0; q < r; q++)
			if (x->dev[q] == x->dev[r])
				return zp_errf(e, "transport nccl: executors %d and %d share GPU %d "
					       "(NCCL takes one rank per GPU; use p2p)", q, r, x->dev[r]);
	}
	NC(ncclCommInitAll(x->comm, n, x->dev));
	x->n = n;
	zp_log(ZP_LOG_INFO, "msg=\"nccl communicators\" ranks=%d", n);
	return 0;
}

static int nccl_setup(zp_transport *t, const zp_port *ports, int n, zp_err *e)
{
	return comms((nccl_xport *)t, ports, n, e);
}

static int nccl_round(zp_transport *t, const zp_port *ports, const zp_copy_seg *const *segs,
		      const int *nseg, int n, zp_err *e)
{
	nccl_xport *x = (nccl_xport *)t;
	if (comms(x, ports, n, e))
		return -1;
	/* host segments first, outside the group: plain copies on the queue */
	for (int d = 0; d < n; d++)
		for (int i = 0; i < nseg[d]; i++)
			if (segs[d][i].src_exec < 0) {
				CU(cudaSetDevice(x->dev[d]));
				CU(cudaMemcpyAsync(segs[d][i].dst, segs[d][i].src, segs[d][i].bytes,
						   cudaMemcpyDefault,
						   zp_backend_cuda_queue_stream(ports[d].be, ports[d].q)));
			}
	NC(ncclGroupStart());
	for (int d = 0; d < n; d++)
		for (int i = 0; i < nseg[d]; i++) {
			const zp_copy_seg *s = &segs[d][i];
			int p = s->src_exec;
			if (p < 0)
				continue;
			ZP_ASSERT(p < n && p != d);
			cudaStream_t sp = zp_backend_cuda_queue_stream(ports[p].be, ports[p].q);
			cudaStream_t sd = zp_backend_cuda_queue_stream(ports[d].be, ports[d].q);
			ncclResult_t a = ncclSend(s->src, s->bytes, ncclInt8, d, x->comm[p], sp);
			ncclResult_t b = ncclRecv(s->dst, s->bytes, ncclInt8, p, x->comm[d], sd);
			if (a != ncclSuccess || b != ncclSuccess) {
				ncclGroupEnd();
				return zp_errf(e, "ncclSend/ncclRecv %d -> %d: %s", p, d,
					       ncclGetErrorString(a != ncclSuccess ? a : b));
			}
		}
	NC(ncclGroupEnd());
	return 0;
}

/* a lone copy (a prefetch from the host store): the destination's queue */
static int nccl_copy(zp_transport *t, const zp_port *dst, const zp_copy_seg *segs, int n, zp_err *e)
{
	for (int i = 0; i < n; i++) {
		ZP_ASSERT(segs[i].src_exec < 0); /* peers' shards move in rounds */
		dst->be->ops->queue_copy(dst->be, dst->q, segs[i].dst, segs[i].src, segs[i].bytes);
	}
	return 0;
}

static void nccl_free(zp_transport *t)
{
	nccl_xport *x = (nccl_xport *)t;
	for (int r = 0; r < x->n; r++)
		ncclCommDestroy(x->comm[r]);
	free(x);
}

zp_transport *zp_transport_nccl_new(void)
{
	nccl_xport *x = zp_xcalloc(1, sizeof *x);
	x->t.name = "nccl";
	x->t.copy = nccl_copy;
	x->t.round = nccl_round;
	x->t.setup = nccl_setup;
	x->t.free = nccl_free;
	return &x->t;
}
#else
zp_transport *zp_transport_nccl_new(void)
{
	return NULL;
}
#endif

/* transport_cuda.c -- see transport_cuda.h. A call enqueues every segment,
   then waits for the streams it used; on an error it first drains every
   stream, so nothing of a failed call still writes when the next one starts. */
#include "transport_cuda.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	zp_transport t;			/* first: what callers hold */
	int ndev;
	bool nccl;
	cudaStream_t stream[ZP_CUDA_DEVICES_MAX];	/* [ndev] copy streams */
	ncclComm_t comm[ZP_CUDA_DEVICES_MAX];		/* [ndev] nccl: rank d on device d */
} cuda_xport;

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

/* A segment names devices of this transport; host to host is the cpu
   transport's job. Segments come from the placement: a wrong one is a bug. */
static void check_seg(const cuda_xport *x, const zp_copy_seg *s)
{
	ZP_ASSERT(s->dst_dev >= ZP_DEV_HOST && s->dst_dev < x->ndev);
	ZP_ASSERT(s->src_dev >= ZP_DEV_HOST && s->src_dev < x->ndev);
	ZP_ASSERT(s->dst_dev != ZP_DEV_HOST || s->src_dev != ZP_DEV_HOST);
}

static bool cross_device(const zp_copy_seg *s)
{
	return s->dst_dev != ZP_DEV_HOST && s->src_dev != ZP_DEV_HOST && s->dst_dev != s->src_dev;
}

/* s on a copy engine, on the destination device's stream (it pulls), or the
   source's when the destination is the host. */
static int enqueue_copy(cuda_xport *x, const zp_copy_seg *s, bool *used, zp_err *e)
{
	int d = s->dst_dev != ZP_DEV_HOST ? s->dst_dev : s->src_dev;
	CU(cudaSetDevice(d));
	if (cross_device(s))
		CU(cudaMemcpyPeerAsync(s->dst, s->dst_dev, s->src, s->src_dev, s->bytes, x->stream[d]));
	else /* unified addressing tells host from device */
		CU(cudaMemcpyAsync(s->dst, s->src, s->bytes, cudaMemcpyDefault, x->stream[d]));
	used[d] = true;
	return 0;
}

/* s as one send/recv pair (inside the caller's NCCL group). */
static int enqueue_pair(cuda_xport *x, const zp_copy_seg *s, bool *used, zp_err *e)
{
	NC(ncclSend(s->src, s->bytes, ncclUint8, s->dst_dev, x->comm[s->src_dev],
		    x->stream[s->src_dev]));
	NC(ncclRecv(s->dst, s->bytes, ncclUint8, s->src_dev, x->comm[s->dst_dev],
		    x->stream[s->dst_dev]));
	used[s->src_dev] = used[s->dst_dev] = true;
	return 0;
}

static int wait_used(cuda_xport *x, const bool *used, zp_err *e)
{
	for (int d = 0; d < x->ndev; d++) {
		if (!used[d])
			continue;
		CU(cudaSetDevice(d));
		CU(cudaStreamSynchronize(x->stream[d]));
	}
	return 0;
}

/* After an error (already in e): let whatever was enqueued finish. Their own
   errors are the same failure and are not reported twice. */
static int fail(cuda_xport *x)
{
	for (int d = 0; d < x->ndev; d++)
		if (cudaSetDevice(d) == cudaSuccess)
			(void)cudaStreamSynchronize(x->stream[d]);
	return -1;
}

static int p2p_copy(zp_transport *t, const zp_copy_seg *segs, int n, zp_err *e)
{
	cuda_xport *x = (cuda_xport *)t;
	bool used[ZP_CUDA_DEVICES_MAX] = { false };
	for (int i = 0; i < n; i++) {
		check_seg(x, &segs[i]);
		if (enqueue_copy(x, &segs[i], used, e))
			return fail(x);
	}
	return wait_used(x, used, e) ? fail(x) : 0;
}

static int nccl_copy(zp_transport *t, const zp_copy_seg *segs, int n, zp_err *e)
{
	cuda_xport *x = (cuda_xport *)t;
	bool used[ZP_CUDA_DEVICES_MAX] = { false };
	int rc = 0;
	for (int i = 0; i < n; i++) {
		check_seg(x, &segs[i]);
		if (!cross_device(&segs[i]) && enqueue_copy(x, &segs[i], used, e))
			return fail(x);
	}
	ncclResult_t start = ncclGroupStart();
	if (start != ncclSuccess) {
		zp_errf(e, "ncclGroupStart: %s", ncclGetErrorString(start));
		return fail(x);
	}
	for (int i = 0; i < n && !rc; i++)
		if (cross_device(&segs[i]))
			rc = enqueue_pair(x, &segs[i], used, e);
	ncclResult_t end = ncclGroupEnd(); /* closed even after a failed enqueue */
	if (!rc && end != ncclSuccess)
		rc = zp_errf(e, "ncclGroupEnd: %s", ncclGetErrorString(end));
	if (rc || wait_used(x, used, e))
		return fail(x);
	return 0;
}

static void cuda_free(zp_transport *t)
{
	cuda_xport *x = (cuda_xport *)t;
	for (int d = 0; d < x->ndev; d++) {
		ncclResult_t nr = x->comm[d] ? ncclCommDestroy(x->comm[d]) : ncclSuccess;
		cudaError_t cr = cudaSuccess;
		if (x->stream[d] && (cr = cudaSetDevice(d)) == cudaSuccess)
			cr = cudaStreamDestroy(x->stream[d]);
		if (nr != ncclSuccess || cr != cudaSuccess)
			zp_log(ZP_LOG_WARN, "msg=\"cuda transport: release failed\" device=%d nccl=\"%s\" "
			       "cuda=\"%s\"", d, ncclGetErrorString(nr), cudaGetErrorString(cr));
	}
	free(x);
}

static int setup(cuda_xport *x, int ndev, zp_err *e)
{
	int count = 0;
	CU(cudaGetDeviceCount(&count));
	if (ndev < 1 || ndev > count || ndev > ZP_CUDA_DEVICES_MAX)
		return zp_errf(e, "cuda transport: %d devices asked, %d present (at most %d)", ndev,
			       count, ZP_CUDA_DEVICES_MAX);
	x->ndev = ndev;
	for (int d = 0; d < ndev; d++) {
		CU(cudaSetDevice(d));
		CU(cudaStreamCreateWithFlags(&x->stream[d], cudaStreamNonBlocking));
		for (int p = 0; p < ndev; p++) {
			int ok = 0;
			if (p == d)
				continue;
			CU(cudaDeviceCanAccessPeer(&ok, d, p));
			if (!ok)
				return zp_errf(e, "cuda transport: device %d cannot reach device %d "
					       "peer to peer", d, p);
			cudaError_t rc = cudaDeviceEnablePeerAccess(p, 0);
			if (rc != cudaSuccess && rc != cudaErrorPeerAccessAlreadyEnabled)
				CU(rc);
			(void)cudaGetLastError(); /* clear "already enabled" */
		}
	}
	if (x->nccl) {
		int devs[ZP_CUDA_DEVICES_MAX];
		for (int d = 0; d < ndev; d++)
			devs[d] = d;
		NC(ncclCommInitAll(x->comm, ndev, devs));
	}
	return 0;
}

zp_transport *zp_transport_cuda_new(const char *name, int ndev, zp_err *e)
{
	bool nccl = !strcmp(name, "nccl");
	if (!nccl && strcmp(name, "p2p")) {
		zp_errf(e, "cuda transport must be p2p or nccl");
		return NULL;
	}
	cuda_xport *x = zp_xcalloc(1, sizeof *x);
	x->t.name = nccl ? "nccl" : "p2p";
	x->t.copy = nccl ? nccl_copy : p2p_copy;
	x->t.free = cuda_free;
	x->nccl = nccl;
	if (setup(x, ndev, e)) {
		cuda_free(&x->t);
		return NULL;
	}
	return &x->t;
}

/* transport_cuda.c -- see transport_cuda.h. */
#include "transport_cuda.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

struct zp_cuda_xport {
	int ndev;
	cudaStream_t stream[ZP_CUDA_DEVICES_MAX];
	ncclComm_t comm[ZP_CUDA_DEVICES_MAX];
	bool nccl;
};

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

static int setup(zp_cuda_xport *x, int ndev, bool nccl, zp_err *e)
{
	int count = 0;
	CU(cudaGetDeviceCount(&count));
	if (ndev < 1 || ndev > count || ndev > ZP_CUDA_DEVICES_MAX)
		return zp_errf(e, "cuda transport: %d devices asked, %d present", ndev, count);
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
	if (nccl) {
		int devs[ZP_CUDA_DEVICES_MAX];
		for (int d = 0; d < ndev; d++)
			devs[d] = d;
		NC(ncclCommInitAll(x->comm, ndev, devs));
		x->nccl = true;
	}
	return 0;
}

zp_cuda_xport *zp_cuda_xport_new(int ndev, bool nccl, zp_err *e)
{
	zp_cuda_xport *x = zp_xcalloc(1, sizeof *x);
	if (setup(x, ndev, nccl, e)) {
		zp_cuda_xport_free(x);
		return NULL;
	}
	return x;
}

void zp_cuda_xport_free(zp_cuda_xport *x)
{
	if (!x)
		return;
	for (int d = 0; d < x->ndev; d++) {
		if (x->nccl && x->comm[d])
			ncclCommDestroy(x->comm[d]);
		if (x->stream[d]) {
			cudaSetDevice(d);
			cudaStreamDestroy(x->stream[d]);
		}
	}
	free(x);
}

int zp_cuda_p2p_gather(zp_cuda_xport *x, int dst, void *buf, void *const *shard,
		       const size_t *off, const size_t *bytes, zp_err *e)
{
	ZP_ASSERT(dst >= 0 && dst < x->ndev);
	CU(cudaSetDevice(dst));
	for (int p = 0; p < x->ndev; p++) {
		if (p == dst || !bytes[p])
			continue;
		CU(cudaMemcpyPeerAsync((char *)buf + off[p], dst, shard[p], p, bytes[p],
				       x->stream[dst]));
	}
	CU(cudaStreamSynchronize(x->stream[dst]));
	return 0;
}

int zp_cuda_nccl_gather(zp_cuda_xport *x, void *const *shard, void *const *buf,
			size_t shard_bytes, zp_err *e)
{
	if (!x->nccl)
		return zp_errf(e, "cuda transport: built without an NCCL communicator");
	NC(ncclGroupStart());
	for (int d = 0; d < x->ndev; d++)
		NC(ncclAllGather(shard[d], buf[d], shard_bytes, ncclUint8, x->comm[d], x->stream[d]));
	NC(ncclGroupEnd());
	for (int d = 0; d < x->ndev; d++) {
		CU(cudaSetDevice(d));
		CU(cudaStreamSynchronize(x->stream[d]));
	}
	return 0;
}

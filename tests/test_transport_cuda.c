/* test_transport_cuda.c -- the GPU transports on real devices: shards of
   random bytes on every device, gathered by p2p into each device's buffer and
   by NCCL into every buffer; the buffers read back must equal the shards
   laid out in order. Prints GB/s of each. Exit 77 where this build has no
   CUDA or the machine no GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "util.h"

#ifndef ZP_HAVE_CUDA
int main(void)
{
	printf("built without CUDA: the GPU transports are not compiled in\n");
	return 77;
}
#else
#include <cuda_runtime.h>

#include "transport_cuda.h"

#define SHARD (64u << 20)

int main(void)
{
	int ndev = 0;
	zp_err e;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
		printf("no CUDA device here\n");
		return 77;
	}
	ndev = ndev > 8 ? 8 : ndev;
	unsigned char *host = zp_xmalloc((size_t)SHARD * ndev), *back = zp_xmalloc((size_t)SHARD * ndev);
	for (size_t i = 0; i < (size_t)SHARD * ndev; i++)
		host[i] = (unsigned char)(i * 2654435761u >> 13);
	void *shard[ZP_CUDA_DEVICES_MAX], *buf[ZP_CUDA_DEVICES_MAX];
	size_t off[ZP_CUDA_DEVICES_MAX], bytes[ZP_CUDA_DEVICES_MAX];
	for (int d = 0; d < ndev; d++) {
		CHECK(cudaSetDevice(d) == cudaSuccess, "set device");
		CHECK(cudaMalloc(&shard[d], SHARD) == cudaSuccess, "malloc shard");
		CHECK(cudaMalloc(&buf[d], (size_t)SHARD * ndev) == cudaSuccess, "malloc buf");
		CHECK(cudaMemcpy(shard[d], host + (size_t)d * SHARD, SHARD, cudaMemcpyHostToDevice) ==
		      cudaSuccess, "upload");
		off[d] = (size_t)d * SHARD;
		bytes[d] = SHARD;
	}
	for (int nccl = 0; nccl < 2; nccl++) {
		zp_cuda_xport *x = zp_cuda_xport_new(ndev, nccl, &e);
		CHECK(x, "transport: %s", e.msg);
		if (!x)
			continue;
		for (int d = 0; d < ndev; d++) { /* own shard into place, as the executor would */
			cudaSetDevice(d);
			cudaMemcpy((char *)buf[d] + off[d], shard[d], SHARD, cudaMemcpyDeviceToDevice);
		}
		double t0 = zp_now_s();
		int rc = 0;
		if (nccl)
			rc = zp_cuda_nccl_gather(x, shard, buf, SHARD, &e);
		else
			for (int d = 0; d < ndev && !rc; d++)
				rc = zp_cuda_p2p_gather(x, d, buf[d], shard, off, bytes, &e);
		double dt = zp_now_s() - t0;
		CHECK(rc == 0, "%s gather: %s", nccl ? "nccl" : "p2p", e.msg);
		for (int d = 0; d < ndev; d++) {
			cudaSetDevice(d);
			CHECK(cudaMemcpy(back, buf[d], (size_t)SHARD * ndev, cudaMemcpyDeviceToHost) ==
			      cudaSuccess, "download");
			CHECK(memcmp(back, host, (size_t)SHARD * ndev) == 0, "%s: device %d's layer "
			      "differs", nccl ? "nccl" : "p2p", d);
		}
		printf("%s: %d devices, %.1f GB moved in %.3f ms: %.1f GB/s\n", nccl ? "nccl" : "p2p",
		       ndev, (double)SHARD * ndev * (ndev - 1) / 1e9, dt * 1e3,
		       (double)SHARD * ndev * (ndev - 1) / 1e9 / dt);
		zp_cuda_xport_free(x);
	}
	return check_exit("test_transport_cuda");
}
#endif

/* dispatch.cu -- deterministic dispatch, three launches (zk_ops.h): per-slice histograms, exclusive scan, stable placement; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_dispatch). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_dispatch(zk_dispatch a)
{
	int lane = threadIdx.x;
	switch (a.phase) {
	case ZK_DISPATCH_COUNT:
		zk_dispatch_count(&a, blockIdx.x, lane);
		break;
	case ZK_DISPATCH_SCAN:
		zk_dispatch_sum(&a, lane);
		__syncthreads();
		if (lane == 0)
			zk_dispatch_scan(&a);
		__syncthreads();
		zk_dispatch_starts(&a, lane);
		break;
	default:
		zk_dispatch_place(&a, blockIdx.x, lane);
	}
}

extern "C" int zk_cu_dispatch(cudaStream_t s, const zk_launch *l)
{
	zk_k_dispatch<<<l->blocks, ZK_DISPATCH_LANES, 0, s>>>(l->u.dispatch);
	return (int)cudaGetLastError();
}

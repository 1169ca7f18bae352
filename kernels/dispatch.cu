/* dispatch.cu -- deterministic dispatch: per-expert histogram, exclusive scan, stable permutation; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_dispatch). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_dispatch(zk_dispatch a)
{
	zk_dispatch_count(&a, threadIdx.x);
	__syncthreads();
	if (threadIdx.x == 0)
		zk_dispatch_scan(&a);
	__syncthreads();
	zk_dispatch_place(&a, threadIdx.x);
}

extern "C" int zk_cu_dispatch(cudaStream_t s, const zk_launch *l)
{
	zk_k_dispatch<<<1, ZK_DISPATCH_LANES, 0, s>>>(l->u.dispatch);
	return (int)cudaGetLastError();
}

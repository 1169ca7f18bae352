/* combine.cu -- the MoE combine: each token's experts summed in ascending expert order; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_combine). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_combine(zk_combine a)
{
	zk_combine_lane(&a, blockIdx.x, threadIdx.x);
}

extern "C" int zk_cu_combine(cudaStream_t s, const zk_launch *l)
{
	zk_k_combine<<<l->blocks, ZK_WARP, 0, s>>>(l->u.combine);
	return (int)cudaGetLastError();
}

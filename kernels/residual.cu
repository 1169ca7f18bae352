/* residual.cu -- the residual add x += y (+ bias); the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_residual). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_residual(zk_vec a)
{
	zk_residual_lane(&a, blockIdx.x, threadIdx.x);
}

extern "C" int zk_cu_residual(cudaStream_t s, const zk_launch *l)
{
	zk_k_residual<<<l->blocks, ZK_WARP, 0, s>>>(l->u.vec);
	return (int)cudaGetLastError();
}

/* add_bias.cu -- y += bias per row; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_add_bias). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_add_bias(zk_vec a)
{
	zk_bias_lane(&a, blockIdx.x, threadIdx.x);
}

extern "C" int zk_cu_add_bias(cudaStream_t s, const zk_launch *l)
{
	zk_k_add_bias<<<l->blocks, ZK_WARP, 0, s>>>(l->u.vec);
	return (int)cudaGetLastError();
}

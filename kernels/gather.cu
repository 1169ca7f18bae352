/* gather.cu -- the MoE gather: row t to the slots slot_row[t K + k]; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_gather). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_gather(zk_gather a)
{
	zk_gather_lane(&a, blockIdx.x, threadIdx.x);
}

extern "C" int zk_cu_gather(cudaStream_t s, const zk_launch *l)
{
	zk_k_gather<<<l->blocks, ZK_WARP, 0, s>>>(l->u.gather);
	return (int)cudaGetLastError();
}

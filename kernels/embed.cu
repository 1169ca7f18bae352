/* embed.cu -- embedding gather: row t = table row ids[t]; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_embed). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_embed(zk_embed a)
{
	zk_embed_lane(&a, blockIdx.x, threadIdx.x);
}

extern "C" int zk_cu_embed(cudaStream_t s, const zk_launch *l)
{
	zk_k_embed<<<l->blocks, ZK_WARP, 0, s>>>(l->u.embed);
	return (int)cudaGetLastError();
}

/* to_bf16.cu -- f32 rows to bf16, round to nearest even; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_to_bf16). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_to_bf16(zk_tobf16 a)
{
	zk_tobf16_lane(&a, blockIdx.x, threadIdx.x);
}

extern "C" int zk_cu_to_bf16(cudaStream_t s, const zk_launch *l)
{
	zk_k_to_bf16<<<l->blocks, ZK_WARP, 0, s>>>(l->u.tobf16);
	return (int)cudaGetLastError();
}

/* fp8_widen.cu -- W8A16: an FP8 weight matrix (e4m3 codes, per-row block
   scales) widened to its compute type (f32 or bf16 rows) before the GEMM;
   the math is zk_fp8.h's, the host twin runs it in src/cuda/devrt_sim.c.
   Launched by src/cuda/devrt_cuda.c (zk_cu_fp8_widen). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_fp8_widen(zk_fp8w a)
{
	zk_fp8w_lane(&a, blockIdx.x, threadIdx.x);
}

extern "C" int zk_cu_fp8_widen(cudaStream_t s, const zk_launch *l)
{
	zk_k_fp8_widen<<<l->blocks, ZK_WARP, 0, s>>>(l->u.fp8w);
	return (int)cudaGetLastError();
}

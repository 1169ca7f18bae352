/* act_quant.cu -- W8A8's dynamic activation quantisation: per token per
   128-column group, scale = amax / 448, codes by cvt.rn.satfinite.e4m3x2
   (sm_89+); the math is zk_fp8.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_act_quant). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_act_quant(zk_actq a)
{
	int lane = threadIdx.x;
	float m = zk_actq_amax_part(&a, blockIdx.x, lane);
	for (int off = ZK_WARP / 2; off; off /= 2) /* max: exact in any order */
		m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
	zk_actq_store(&a, blockIdx.x, zk_actq_scale(m), lane);
}

extern "C" int zk_cu_act_quant(cudaStream_t s, const zk_launch *l)
{
	zk_k_act_quant<<<l->blocks, ZK_WARP, 0, s>>>(l->u.actq);
	return (int)cudaGetLastError();
}

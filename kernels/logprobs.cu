/* logprobs.cu -- log-prob rows: online log-sum-exp over vocabulary tiles, candidates, top-k, prompt log-probs; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_logprobs). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_logprobs(zk_lse a)
{
	int lane = threadIdx.x;
	zk_lse_acc r = zk_lse_part(&a, blockIdx.x, lane);
	for (int off = ZK_WARP / 2; off; off /= 2) {
		zk_lse_acc o;
		o.m = __shfl_xor_sync(0xffffffffu, r.m, off);
		o.s = __shfl_xor_sync(0xffffffffu, r.s, off);
		r = zk_lse_merge(r, o);
	}
	zk_lse_out(&a, blockIdx.x, r.m + logf(r.s), lane);
}

extern "C" int zk_cu_logprobs(cudaStream_t s, const zk_launch *l)
{
	zk_k_logprobs<<<l->blocks, ZK_WARP, 0, s>>>(l->u.lse);
	return (int)cudaGetLastError();
}

/* logprobs.cu -- log-prob rows, one block a row: online log-sum-exp over vocabulary tiles, candidates, prompt log-probs, the rank and the top-k over the lanes (zk_ops.h); the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_logprobs). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_logprobs(zk_lse a)
{
	__shared__ zk_topk_lane tk[ZK_WARP];
	int lane = threadIdx.x, row = blockIdx.x;
	zk_lse_acc r = zk_lse_part(&a, row, lane);
	for (int off = ZK_WARP / 2; off; off /= 2) {
		zk_lse_acc o;
		o.m = __shfl_xor_sync(0xffffffffu, r.m, off);
		o.s = __shfl_xor_sync(0xffffffffu, r.s, off);
		r = zk_lse_merge(r, o);
	}
	float lse = r.m + logf(r.s);
	zk_lse_out(&a, row, lse, lane);
	int above = zk_lse_rank_part(&a, row, lane);
	for (int off = ZK_WARP / 2; off; off /= 2)
		above += __shfl_xor_sync(0xffffffffu, above, off);
	zk_lse_topk_lane(&a, row, lane, &tk[lane]);
	__syncwarp();
	if (lane == 0) {
		zk_lse_rank_out(&a, row, above);
		zk_lse_topk_out(&a, row, lse, tk);
	}
}

extern "C" int zk_cu_logprobs(cudaStream_t s, const zk_launch *l)
{
	zk_k_logprobs<<<l->blocks, ZK_WARP, 0, s>>>(l->u.lse);
	return (int)cudaGetLastError();
}

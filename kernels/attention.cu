/* attention.cu -- attention v0: one warp per (query row, head), f32, causal, GQA, varlen, prefix keys/values; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_attention). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_attention(zk_attn a)
{
	int lane = threadIdx.x;
	zk_att_row s;
	zk_att_begin(&a, blockIdx.x, &s);
	for (int j = 0; j < s.nkeys; j++) {
		float dot = zk_bfly_sum(zk_att_dot_part(&a, &s, zk_att_kv(&a, &s, j, 0, blockIdx.x), lane));
		zk_att_update(&a, &s, dot, zk_att_kv(&a, &s, j, 1, blockIdx.x), lane);
	}
	zk_att_end(&a, &s, blockIdx.x, lane);
}

extern "C" int zk_cu_attention(cudaStream_t s, const zk_launch *l)
{
	zk_k_attention<<<l->blocks, ZK_WARP, 0, s>>>(l->u.attn);
	return (int)cudaGetLastError();
}

/* rope.cu -- q/k rmsnorm per head then RoPE (rotate_half) in place; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_rope). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_rope(zk_rope a)
{
	__shared__ double part[8];
	int lane = threadIdx.x;
	const float *w;
	const float *v = zk_rope_vec(&a, blockIdx.x, &w);
	if (lane < 8)
		part[lane] = zk_rms_part(v, a.d, lane);
	__syncwarp();
	float r = zk_rms_scale(part, a.d, a.eps);
	__syncwarp(); /* every lane has read v's norm before any lane rotates */
	zk_rope_apply(&a, blockIdx.x, r, lane);
}

extern "C" int zk_cu_rope(cudaStream_t s, const zk_launch *l)
{
	zk_k_rope<<<l->blocks, ZK_WARP, 0, s>>>(l->u.rope);
	return (int)cudaGetLastError();
}

/* rmsnorm.cu -- rmsnorm rows (sum of squares in double over 8 lanes, ops.c's order); the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_rmsnorm). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_rmsnorm(zk_rmsnorm a)
{
	__shared__ double part[8];
	int lane = threadIdx.x;
	if (lane < 8)
		part[lane] = zk_rms_part(zk_rmsnorm_x(&a, blockIdx.x), a.cols, lane);
	__syncwarp();
	zk_rmsnorm_apply(&a, blockIdx.x, zk_rms_scale(part, a.cols, a.eps), lane);
}

extern "C" int zk_cu_rmsnorm(cudaStream_t s, const zk_launch *l)
{
	zk_k_rmsnorm<<<l->blocks, ZK_WARP, 0, s>>>(l->u.rmsnorm);
	return (int)cudaGetLastError();
}

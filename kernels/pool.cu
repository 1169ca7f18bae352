/* pool.cu -- pooling (last or mean of final-normed rows, optional L2), one block; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_pool). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_pool(zk_pool a)
{
	__shared__ double part[8];
	__shared__ float inv;
	int lane = threadIdx.x;
	for (int p = a.mean ? 0 : a.n - 1; p < a.n; p++) {
		if (lane < 8)
			part[lane] = zk_rms_part(a.x + (size_t)p * a.ldx, a.cols, lane);
		__syncwarp();
		zk_pool_row(&a, p, zk_rms_scale(part, a.cols, a.eps), lane);
		__syncwarp();
	}
	zk_pool_mean(&a, lane);
	__syncwarp();
	if (!a.normalize)
		return;
	if (lane == 0)
		inv = zk_pool_l2(&a);
	__syncwarp();
	zk_pool_scale(&a, inv, lane);
}

extern "C" int zk_cu_pool(cudaStream_t s, const zk_launch *l)
{
	zk_k_pool<<<1, ZK_WARP, 0, s>>>(l->u.pool);
	return (int)cudaGetLastError();
}

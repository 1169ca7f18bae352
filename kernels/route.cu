/* route.cu -- the router: softmax (f32), top-k (ties to the lower id), renormalisation, route gap; one row per thread; the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_route). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_route(zk_route a)
{
	int row = blockIdx.x * ZK_ROWS_PER_BLOCK + threadIdx.x;
	if (row < a.n)
		zk_route_row(&a, row);
}

extern "C" int zk_cu_route(cudaStream_t s, const zk_launch *l)
{
	zk_k_route<<<l->blocks, ZK_ROWS_PER_BLOCK, 0, s>>>(l->u.route);
	return (int)cudaGetLastError();
}

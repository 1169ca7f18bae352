/* swiglu.cu -- SwiGLU over gate/up halves (after the grouped and dense GEMMs); the math is zk_ops.h's, the host twin runs it in
   src/cuda/devrt_sim.c. Launched by src/cuda/devrt_cuda.c (zk_cu_swiglu). */
#include <cuda_runtime.h>

#include "zk_ops.h"

__global__ void zk_k_swiglu(zk_swiglu a)
{
	zk_swiglu_lane(&a, blockIdx.x, threadIdx.x);
}

extern "C" int zk_cu_swiglu(cudaStream_t s, const zk_launch *l)
{
	zk_k_swiglu<<<l->blocks, ZK_WARP, 0, s>>>(l->u.swiglu);
	return (int)cudaGetLastError();
}

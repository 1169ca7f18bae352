/* zk.h -- what every kernel of kernels/ shares with its host twin: the ZP_HD
   macro (__host__ __device__ under nvcc, empty in C), bf16 conversions equal
   bit for bit to util.h's, the warp butterfly and its host twin, and the one
   descriptor of a launch (zk_launch: which kernel, its argument block, its
   grid). The twin of a kernel is the same ZP_HD code run by
   src/cuda/devrt_sim.c in a loop over (block, lane); reductions inside a warp
   go through zk_bfly_* on the device and zk_bfly_*_host in the twin: the same
   pairs in the same order, so the sums are bitwise equal. Compiled with
   -ffp-contract=off (C) and -fmad=false (nvcc): a * b + c is never fused
   unless a kernel calls fmaf. */
#ifndef ZP_ZK_H
#define ZP_ZK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define ZP_HD __host__ __device__ __forceinline__
#define ZK_RESTRICT __restrict__
#else
#define ZP_HD static inline
#define ZK_RESTRICT
#endif

#define ZK_WARP 32

ZP_HD float zk_bf16_to_f32(uint16_t h)
{
	union { uint32_t u; float f; } v;
	v.u = (uint32_t)h << 16;
	return v.f;
}

ZP_HD uint16_t zk_f32_to_bf16(float f)
{
	union { uint32_t u; float f; } v;
	v.f = f;
	if ((v.u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((v.u >> 16) | 0x40);
	v.u += 0x7fffu + ((v.u >> 16) & 1u);
	return (uint16_t)(v.u >> 16);
}

/* Host twins of the xor butterfly: after the steps 16, 8, 4, 2, 1 every lane
   holds the same value (a + b == b + a in IEEE), the device's sum bit for bit. */
static inline float zk_bfly_sum_host(float v[ZK_WARP])
{
	for (int off = ZK_WARP / 2; off; off /= 2) {
		float t[ZK_WARP];
		for (int l = 0; l < ZK_WARP; l++)
			t[l] = v[l] + v[l ^ off];
		for (int l = 0; l < ZK_WARP; l++)
			v[l] = t[l];
	}
	return v[0];
}

#ifdef __CUDACC__
__device__ __forceinline__ float zk_bfly_sum(float v)
{
	for (int off = ZK_WARP / 2; off; off /= 2)
		v = v + __shfl_xor_sync(0xffffffffu, v, off);
	return v;
}
#endif

#endif

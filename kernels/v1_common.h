/* v1_common.h -- what the v1 kernels' twin headers share: ZP_V1_HD (code that
   nvcc builds for host and device and the C compiler for the host alone; zk.h's
   ZP_HD carries its own storage class, so the v1 headers keep a macro of their
   own), the bf16 conversions (round to nearest even, as util.h) and v1.h. */
#ifndef ZP_V1_COMMON_H
#define ZP_V1_COMMON_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "v1.h"	/* plain C, without its own extern "C" */
#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
#define ZP_V1_HD __host__ __device__
#else
#define ZP_V1_HD
#endif

static inline ZP_V1_HD float zp_v1_bf16_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline ZP_V1_HD uint16_t zp_v1_f32_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);	/* NaN stays a quiet NaN */
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

#endif

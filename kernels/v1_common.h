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

/* Deliberate slips in the shared per-lane address functions, for the test
   that proves the twins catch them (tests/test_kernels_v1.c): the C build
   reads zp_v1_mutate (0 = none, defined in expert_gemm_v1_host.c; set only by
   that test, between calls); under nvcc ZP_V1_MUT is 0 and the slips are
   not compiled. */
enum zp_v1_mut {
	ZP_V1_MUT_NONE = 0,
	ZP_V1_MUT_EV1_A_ROWS,	/* A ldmatrix: lanes 0 and 1 read each other's row */
	ZP_V1_MUT_EV1_B_MATS,	/* B ldmatrix: matrices 1 and 2 swapped (k and n halves) */
	ZP_V1_MUT_EV1_CP_ROW,	/* cp.async: A copied from one row down (global address) */
	ZP_V1_MUT_EV1_WAIT,	/* cp.async.wait_group 2 instead of 1: a stage read early */
	ZP_V1_MUT_EV1_C_ROW,	/* epilogue: accumulator rows g and g + 8 swapped */
	ZP_V1_MUT_AV1_Q_FRAG,	/* Q A fragment: registers 1 and 2 swapped (a transposition) */
	ZP_V1_MUT_AV1_K_ROWS,	/* K ldmatrix: lanes 0 and 1 read each other's row */
	ZP_V1_MUT_AV1_V_TRANS,	/* V ldmatrix .trans: matrices 1 and 2 swapped */
	ZP_V1_MUT_COUNT
};

#ifdef __CUDACC__
#define ZP_V1_MUT(m) 0
#else
extern int zp_v1_mutate;
#define ZP_V1_MUT(m) (zp_v1_mutate == (m))
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

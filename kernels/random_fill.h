/* random_fill.h -- the weights of --random-weights SEED (benchmarks at real
   shapes from a config-only model directory): element i (row-major index in
   the Hugging Face tensor) of the tensor named N is a counter-based hash of
   (seed, id(N), i), uniform in [-a, a) with a = 0.02 sqrt(3) (std 0.02, the
   config's initializer_range), so activations stay finite through 94 layers
   with unit norm weights. The same ZP_RF_HD code runs on the host (model.c
   fills host memory, in parallel where it packs experts) and on the device
   (random_fill.cu: zp_krf_fill_*), so both hold the same values bit for bit:
   the hash is integer math and the scaling one f32 multiply. Norm weights are
   1 (zp_rf_is_norm), as a freshly initialised model's. */
#ifndef ZP_RANDOM_FILL_H
#define ZP_RANDOM_FILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define ZP_RF_HD __host__ __device__
#else
#define ZP_RF_HD
#endif

#define ZP_RF_SCALE 0.034641016f	/* 0.02 * sqrt(3): std 0.02 */

/* splitmix64's finaliser */
static inline ZP_RF_HD uint64_t zp_rf_mix(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A tensor's id: FNV-1a of its Hugging Face name (host only; kernels take it). */
static inline uint64_t zp_rf_tensor_id(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *name; name++)
		h = (h ^ (uint8_t)*name) * 0x100000001b3ull;
	return h;
}

/* Norm weights (…norm.weight) are ones. */
static inline bool zp_rf_is_norm(const char *name)
{
	size_t n = strlen(name);
	return n >= 11 && !strcmp(name + n - 11, "norm.weight");
}

/* The per-tensor key: element i of tensor id under seed is zp_rf_at(key, i). */
static inline ZP_RF_HD uint64_t zp_rf_key(uint64_t seed, uint64_t id)
{
	return zp_rf_mix(seed ^ id);
}

static inline ZP_RF_HD float zp_rf_at(uint64_t key, uint64_t i)
{
	uint64_t h = zp_rf_mix(key + i);
	float u = (float)(h >> 40) * (1.0f / 8388608.0f) - 1.0f;	/* 24 bits: [-1, 1) exactly */
	return u * ZP_RF_SCALE;
}

/* Element i of tensor id under seed. */
static inline ZP_RF_HD float zp_rf_value(uint64_t seed, uint64_t id, uint64_t i)
{
	return zp_rf_at(zp_rf_key(seed, id), i);
}

#ifdef __cplusplus
extern "C" {
#endif
struct CUstream_st;
/* Device: dst[r * ld + c] = bf16(zp_rf_value(seed, id, (row0 + r) * cols + c))
   for r < rows, c < cols: rows [row0, row0 + rows) of the tensor id, whose rows
   hold cols elements. The f32 form writes the value itself. Enqueued on stream;
   0 or the cudaError_t of the launch. (random_fill.cu, CUDA builds.) */
int zp_krf_fill_bf16(struct CUstream_st *stream, uint16_t *dst, size_t rows, int cols, size_t ld,
		     uint64_t seed, uint64_t id, size_t row0);
int zp_krf_fill_f32(struct CUstream_st *stream, float *dst, size_t rows, int cols, size_t ld,
		    uint64_t seed, uint64_t id, size_t row0);
#ifdef __cplusplus
}
#endif

#endif

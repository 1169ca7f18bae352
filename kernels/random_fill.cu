/* random_fill.cu -- --random-weights on the device: fills a tensor's rows
   with random_fill.h's values (the same bits as the host's), one thread per
   element, grid-stride. Enqueued on the caller's stream only. */
#include <cuda_runtime.h>

#include "random_fill.h"
#include "v1_common.h"

template <typename T>
__global__ void rf_kernel(T *dst, size_t rows, int cols, size_t ld, uint64_t seed, uint64_t id,
			  size_t row0)
{
	size_t n = rows * (size_t)cols;
	uint64_t key = zp_rf_key(seed, id);
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		size_t r = i / (size_t)cols, c = i % (size_t)cols;
		float v = zp_rf_at(key, (row0 + r) * (size_t)cols + c);
		if constexpr (sizeof(T) == 2)
			dst[r * ld + c] = zp_v1_f32_bf16(v);
		else
			dst[r * ld + c] = v;
	}
}

template <typename T>
static int rf_launch(cudaStream_t s, T *dst, size_t rows, int cols, size_t ld, uint64_t seed,
		     uint64_t id, size_t row0)
{
	size_t n = rows * (size_t)cols;
	if (cols < 0 || ld < (size_t)cols)
		return (int)cudaErrorInvalidValue;
	if (n == 0)
		return 0;
	size_t blocks = (n + 255) / 256;
	rf_kernel<T><<<(unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, s>>>(dst, rows, cols, ld,
									      seed, id, row0);
	return (int)cudaGetLastError();
}

extern "C" int zp_krf_fill_bf16(struct CUstream_st *stream, uint16_t *dst, size_t rows, int cols,
				size_t ld, uint64_t seed, uint64_t id, size_t row0)
{
	return rf_launch(stream, dst, rows, cols, ld, seed, id, row0);
}

extern "C" int zp_krf_fill_f32(struct CUstream_st *stream, float *dst, size_t rows, int cols,
			       size_t ld, uint64_t seed, uint64_t id, size_t row0)
{
	return rf_launch(stream, dst, rows, cols, ld, seed, id, row0);
}

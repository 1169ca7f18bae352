/* weights.h -- the weight half of the device seam (ggml's buffer types): a
   weight matrix as a backend keeps it, and the interface of the layout that
   packs it there. Declared here, where the packing is driven: model/ reads
   checkpoint tensors and packs every matrix through the layout of the device
   it loads for (device.h's zp_device_layout), knowing no backend; each
   backend implements its own layout (cpu/: 32-row panels, k pairs
   interleaved; cuda/: row-major), and nothing above the seam reads a
   matrix's bytes. Layouts are pure functions: any
   thread, several at once on disjoint matrices. */
#ifndef ZP_WEIGHTS_H
#define ZP_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The compute type of the big matrices: what a GEMM's A operand holds (f32
   rows, or bf16 rows) and the precision of its products. An FP8 matrix has
   one too: it is computed as the dequantised matrix in this type. */
enum zp_wtype { ZP_W_F32, ZP_W_BF16 };

/* How a matrix's values are stored (the FP8 contract, for every layout):
   - ZP_WS_PLAIN: elements of the compute type.
   - ZP_WS_FP8: e4m3fn codes (1 byte: sign, 4 exponent bits biased 7, 3
     mantissa bits; no Inf; 0x7f / 0xff are NaN and never stored: model/
     refuses them; |value| <= 448; every code is exactly a bf16 value) and
     f32 block scales. The matrix's value is
         W[j, c] = e4m3(code[j, c]) * scale[j, c / 128]
     where scale[j, b] is the checkpoint's W_scale_inv[r / 128][b] for the
     row r that packed row j comes from, in its own source tensor (stacked
     q/k/v and gate/up keep their tensors' blocks). Blocks are 128 x 128 of
     the source tensor; the last block row / column is partial where n or k
     is not a multiple of 128 (its scale covers what is there). A GEMM with
     an FP8 matrix computes, per output, the sum over each 128-wide k block
     of the exact products a * e4m3 in f32, times that block's scale, added
     to the f32 accumulator block by block in k order: the scale multiplies
     the accumulator, never the weight (bf16(e4m3 * scale) would round). */
enum zp_wstore { ZP_WS_PLAIN, ZP_WS_FP8 };

#define ZP_FP8_BLOCK 128	/* block size of FP8 scales, rows and columns */

/* How a backend multiplies by FP8 weights (--fp8-compute). W8A16: the
   weights widened, the activations as they are (bf16 or f32; the cpu's only
   mode). W8A8: the activations quantised too, per token per 128 columns
   with dynamic scales (FP8 tensor cores; the cuda backend's, to come). */
/* How FP8 weights compute: AUTO is the device's own choice (the cpu W8A16;
   cuda and sim W8A8, as vLLM and SGLang run FP8 checkpoints). */
enum zp_fp8_compute { ZP_FP8_AUTO, ZP_FP8_W8A16, ZP_FP8_W8A8 };
#define ZP_FP8_MAX 448.0f	/* largest e4m3fn magnitude */

/* What a matrix's rows are for. PLAIN: an [n, k] matrix. SWIGLU: the gate
   (rows [0, n/2)) and up (rows [n/2, n)) projections of one SwiGLU MLP, which
   the layout arranges for its GEMM's SwiGLU epilogue (backend.h's ZP_EPI_SWIGLU). */
enum zp_wkind { ZP_WK_PLAIN, ZP_WK_SWIGLU };

/* A matrix in a layout: types and shape as the layout holds it (n may count
   padding rows, kp is k padded to even), data in the layout's bytes (backend
   memory; not owned). Set by the layout's pack.
   FP8 (store ZP_WS_FP8): data holds the codes in the layout's arrangement
   and, in the same allocation at data + scale_off, the layout's f32 scales
   (64-byte aligned): a copy of the layout's bytes() from data (an AsyncEP
   gather, an offload prefetch) moves codes and scales together, and a moved
   matrix is the same zp_wmat with data changed. The arrangement of both is
   the layout's own: cpu/ keeps the codes in its bf16 panels' k pairs (one
   byte per element, [P][kp/2][64], each pair's 64 in its widening's order)
   and one scale per packed row and k block ([P][ceil(k/128)][32] f32); see
   gemm.h. */
typedef struct {
	enum zp_wtype type;	/* compute type (A operand) */
	enum zp_wstore store;	/* how data holds the values */
	int n, k;
	int kp;
	void *data;
	size_t scale_off;	/* FP8: bytes from data to the scales; 0 for PLAIN */
} zp_wmat;

/* Source rows for packing: row(ctx, j) returns logical row j of the [n, k]
   matrix, or NULL for a row of zeros. */
typedef const void *(*zp_row_fn)(void *ctx, int j);

/* Where a matrix's rows come from. dt: enum zp_dtype (safetensors.h) of
   row()'s elements: F32, BF16, F16, or F8_E4M3 (codes, none NaN). For
   F8_E4M3, scale(ctx, j) returns row j's block scales: ceil(k / 128) f32,
   finite and > 0 (model/ converts BF16 scale tensors and checks them), NULL
   exactly where row() is NULL; unused otherwise. A bf16 checkpoint loaded
   with --dtype fp8 reaches the layout as F8_E4M3 rows too (model/ quantises
   it as it is read: zp_fp8_quantize), so a layout sees one FP8 source. */
typedef struct {
	int dt;
	zp_row_fn row;
	zp_row_fn scale;
	void *ctx;
} zp_wsrc;

typedef struct {
	const char *name;
	/* Bytes of an [n, k] matrix of this kind (SWIGLU: n = 2F): a multiple of
	   64. Every MoE layer's expert is this for gate_up plus down. */
	size_t (*bytes)(enum zp_wtype t, enum zp_wstore s, int n, int k, enum zp_wkind kind);
	/* Pack src's rows into dst (bytes(...) long, 64-byte aligned); w describes
	   it. s == ZP_WS_FP8 needs src->dt == F8_E4M3 and a layout with fp8. */
	void (*pack)(zp_wmat *w, void *dst, enum zp_wtype t, enum zp_wstore s, int n, int k,
		     enum zp_wkind kind, const zp_wsrc *src);
	/* The layout holds ZP_WS_FP8 matrices (and its backend computes them).
	   model/ refuses an FP8 model for a layout without, naming it. */
	bool fp8;
} zp_wlayout;

/* dst[0..k) as t (f32, or bf16 rounded to nearest even) from src's k
   elements of dtype src_dt (f32, bf16, f16; F8_E4M3 codes widen exactly,
   unscaled). For layouts. */
void zp_wrow_convert(void *dst, enum zp_wtype t, const void *src, int src_dt, int k);

/* e4m3fn code -> its value, exactly (0x7f / 0xff: NaN). */
float zp_fp8_to_f32(uint8_t code);
/* The same as a bf16 bit pattern (exact: 3 mantissa bits fit in 7). */
uint16_t zp_fp8_to_bf16(uint8_t code);
/* The nearest e4m3fn code to v (ties to even), v clamped to +-448; v finite. */
uint8_t zp_f32_to_fp8(float v);
/* Quantise one 128-row block row of a matrix as vLLM / DeepSeek do: for each
   128-column block b, scale[b] = amax / 448 (1 for an all-zero block) and
   codes = fp8(x / scale[b]). rows[r] (r < nr <= 128) are k elements of
   src_dt (f32, bf16, f16); codes [nr][k] row-major, scale [ceil(k/128)]. */
void zp_fp8_quantize(const void *const *rows, int nr, int k, int src_dt, uint8_t *codes,
		     float *scale);

#endif

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

#include <stddef.h>
#include <stdint.h>

/* The compute type of the big matrices. */
enum zp_wtype { ZP_W_F32, ZP_W_BF16 };

/* What a matrix's rows are for. PLAIN: an [n, k] matrix. SWIGLU: the gate
   (rows [0, n/2)) and up (rows [n/2, n)) projections of one SwiGLU MLP, which
   the layout arranges for its GEMM's SwiGLU epilogue (backend.h's ZP_EPI_SWIGLU). */
enum zp_wkind { ZP_WK_PLAIN, ZP_WK_SWIGLU };

/* A matrix in a layout: type and shape as the layout holds it (n may count
   padding rows, kp is k padded to even), data in the layout's bytes (backend
   memory; not owned). Set by the layout's pack. */
typedef struct {
	enum zp_wtype type;
	int n, k;
	int kp;
	void *data;
} zp_wmat;

/* Source rows for packing: row(ctx, j) returns logical row j of the [n, k]
   matrix in dtype src_dt (enum zp_dtype of safetensors.h), or NULL for a row of
   zeros. */
typedef const void *(*zp_row_fn)(void *ctx, int j);

typedef struct {
	const char *name;
	/* Bytes of an [n, k] matrix of this kind (SWIGLU: n = 2F): a multiple of
	   64. Every MoE layer's expert is this for gate_up plus down. */
	size_t (*bytes)(enum zp_wtype t, int n, int k, enum zp_wkind kind);
	/* Pack rows into dst (bytes(...) long, 64-byte aligned); w describes it. */
	void (*pack)(zp_wmat *w, void *dst, enum zp_wtype t, int n, int k, enum zp_wkind kind,
		     int src_dt, zp_row_fn row, void *ctx);
} zp_wlayout;

/* dst[0..k) as t (f32, or bf16 rounded to nearest even) from src's k
   elements of dtype src_dt (f32, bf16, f16). For layouts. */
void zp_wrow_convert(void *dst, enum zp_wtype t, const void *src, int src_dt, int k);

#endif

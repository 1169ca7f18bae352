/* gemm.c -- see gemm.h. Tasks: (op, panel, row chunk). Each task walks its
   panel in K blocks that fit L1 and keeps its partial sums in an f32 tile, so
   the sum over k stays sequential (storing an f32 partial is exact). */
#include "gemm.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "cpu.h"
#include "safetensors.h"
#include "util.h"
#include "vecmath.h"

#define MR 8		/* rows per micro-tile */
#define ROWS_TASK 64	/* rows per task */
#define KB_F32 256	/* K block: W slice 256 x 32 x 4 B = 32 KiB */
#define KB_BF16 512	/* 512 x 32 x 2 B = 32 KiB */
#define TASKS_MAX (1 << 30)
#define ROWS_TASK_FP8 256 /* FP8: a k chunk is widened once per task, for this many rows */

static int force_ref;

void zp_gemm_force_ref(int on)
{
	force_ref = on;
}

static int have_avx512(void)
{
	return zp_cpu_avx512() && !force_ref;
}

static int have_bf16(void)
{
	return zp_cpu_bf16() && !force_ref;
}

static int have_amx(void)
{
	return zp_cpu_amx() && !force_ref;
}

const char *zp_gemm_isa(void)
{
	return have_amx() ? "amx-bf16+avx512" : have_bf16() ? "avx512bf16" :
	       have_avx512() ? "avx512f" : "ref";
}

static int kblocks(int k)
{
	return (k + ZP_FP8_BLOCK - 1) / ZP_FP8_BLOCK;
}

/* FP8: the codes' bytes (panels as bf16's, one byte an element), 64-aligned;
   the scales follow them. */
static size_t fp8_codes_bytes(int n, int k)
{
	size_t panels = (size_t)(n + ZP_GEMM_NR - 1) / ZP_GEMM_NR;
	return ZP_ALIGN_UP(panels * (size_t)ZP_ALIGN_UP(k, 2) * ZP_GEMM_NR, 64);
}

size_t zp_wmat_bytes(enum zp_wtype type, enum zp_wstore store, int n, int k)
{
	size_t panels = (size_t)(n + ZP_GEMM_NR - 1) / ZP_GEMM_NR;
	size_t kp = (size_t)ZP_ALIGN_UP(k, 2);
	if (store == ZP_WS_FP8)
		return fp8_codes_bytes(n, k) +
		       ZP_ALIGN_UP(panels * (size_t)kblocks(k) * ZP_GEMM_NR * sizeof(float), 64);
	return ZP_ALIGN_UP(panels * kp * ZP_GEMM_NR * (type == ZP_W_F32 ? 4 : 2), 64);
}

static int panel_count(const zp_wmat *w)
{
	return (w->n + ZP_GEMM_NR - 1) / ZP_GEMM_NR;
}

/* Row j of an FP8 source: its codes k pairs interleaved as bf16's are, and
   its block scales at [p][b][col]. */
/* Where element x (0..63, the bf16 panel's order) of a k pair's 64 codes is
   stored: the order in which the widening's byte lookups and in-lane byte
   interleaves (fp8_widen_vbmi) give elements 0..31, then 32..63. */
static int fp8_slot(int x)
{
	return 16 * (x % 32 / 8) + 8 * (x / 32) + x % 8;
}

static void fp8_pack_row(zp_wmat *w, int j, const uint8_t *r, const float *sc)
{
	int p = j / ZP_GEMM_NR, col = j % ZP_GEMM_NR, kb = kblocks(w->k);
	uint8_t *d = (uint8_t *)w->data + (size_t)p * w->kp * ZP_GEMM_NR;
	float *s = (float *)((char *)w->data + w->scale_off) + (size_t)p * kb * ZP_GEMM_NR + col;
	for (int i = 0; i < w->k; i++)
		d[(size_t)(i / 2) * ZP_GEMM_NR * 2 + fp8_slot(2 * col + i % 2)] = r[i];
	for (int b = 0; b < kb; b++)
		s[(size_t)b * ZP_GEMM_NR] = sc[b];
}

/* A padding row (no source: codes 0) takes the scale of its 16-column half's
   first row, so a half whose rows share one 128-row group has one scale per
   k block (the widening's table path). Rows are packed in order: that row is
   done, and is a padding row too only when the whole half is. */
static void fp8_pad_scale(zp_wmat *w, int j)
{
	int p = j / ZP_GEMM_NR, col = j % ZP_GEMM_NR, kb = kblocks(w->k);
	float *s = (float *)((char *)w->data + w->scale_off) + (size_t)p * kb * ZP_GEMM_NR;
	for (int b = 0; b < kb; b++)
		s[(size_t)b * ZP_GEMM_NR + col] = s[(size_t)b * ZP_GEMM_NR + col / 16 * 16];
}

void zp_wmat_pack(zp_wmat *w, void *dst, enum zp_wtype type, enum zp_wstore store, int n, int k,
		  const zp_wsrc *src)
{
	float *tmp = zp_xmalloc((size_t)k * sizeof *tmp);

	*w = (zp_wmat){ .type = type, .store = store, .n = n, .k = k, .kp = ZP_ALIGN_UP(k, 2),
			.data = dst, .scale_off = store == ZP_WS_FP8 ? fp8_codes_bytes(n, k) : 0 };
	ZP_ASSERT(((uintptr_t)dst & 63) == 0);
	ZP_ASSERT(store == ZP_WS_PLAIN || src->dt == ZP_DT_F8_E4M3);
	memset(dst, 0, zp_wmat_bytes(type, store, n, k));
	for (int j = 0; j < n; j++) {
		const void *r = src->row(src->ctx, j);
		int p = j / ZP_GEMM_NR, col = j % ZP_GEMM_NR, src_dt = src->dt;
		if (!r && store == ZP_WS_FP8)
			fp8_pad_scale(w, j);
		if (!r)
			continue;
		if (store == ZP_WS_FP8) {
			const float *sc = src->scale(src->ctx, j);
			ZP_ASSERT(sc);
			fp8_pack_row(w, j, r, sc);
			continue;
		}
		if (type == ZP_W_BF16 && src_dt == ZP_DT_BF16) { /* copy k pairs as they are */
			uint32_t *d = (uint32_t *)((uint16_t *)dst + (size_t)p * w->kp * ZP_GEMM_NR) + col;
			for (int i = 0; i + 1 < k; i += 2)
				memcpy(d + (size_t)(i / 2) * ZP_GEMM_NR, (const uint16_t *)r + i, 4);
			if (k % 2)
				memcpy(d + (size_t)(k / 2) * ZP_GEMM_NR, (const uint16_t *)r + k - 1, 2);
			continue;
		}
		zp_wrow_convert(tmp, ZP_W_F32, r, src_dt, k);
		if (type == ZP_W_F32) {
			float *d = (float *)dst + (size_t)p * w->kp * ZP_GEMM_NR + col;
			for (int i = 0; i < k; i++)
				d[(size_t)i * ZP_GEMM_NR] = tmp[i];
		} else {
			uint16_t *d = (uint16_t *)dst + (size_t)p * w->kp * ZP_GEMM_NR + 2 * col;
			for (int i = 0; i < k; i++)
				d[(size_t)(i / 2) * ZP_GEMM_NR * 2 + i % 2] = zp_f32_to_bf16(tmp[i]);
		}
	}
	for (int j = n; store == ZP_WS_FP8 && j % ZP_GEMM_NR; j++)
		fp8_pad_scale(w, j); /* the last panel's rows past n */
	free(tmp);
}

/* ---- the layout (weights.h) ---- */

struct swiglu_rows {
	zp_row_fn row, scale;
	void *ctx;
	int f;		/* gate rows; up rows follow them in the source */
};

/* packed row j: panel j / 32 holds gate columns 16p.. in its first 16 rows
   and the up rows of the same columns in the next 16 */
static int swiglu_src_row(const struct swiglu_rows *s, int j)
{
	int p = j / ZP_GEMM_NR, c = j % ZP_GEMM_NR, up = c / 16, q = p * 16 + c % 16;
	return q >= s->f ? -1 : up ? s->f + q : q;
}

static const void *swiglu_row(void *vctx, int j)
{
	const struct swiglu_rows *s = vctx;
	int r = swiglu_src_row(s, j);
	return r < 0 ? NULL : s->row(s->ctx, r);
}

static const void *swiglu_scale(void *vctx, int j)
{
	const struct swiglu_rows *s = vctx;
	int r = swiglu_src_row(s, j);
	return r < 0 ? NULL : s->scale(s->ctx, r);
}

static int held_rows(int n, enum zp_wkind kind)
{
	return kind == ZP_WK_SWIGLU ? 2 * ZP_ALIGN_UP(n / 2, 16) : n;
}

static size_t layout_bytes(enum zp_wtype t, enum zp_wstore st, int n, int k, enum zp_wkind kind)
{
	return zp_wmat_bytes(t, st, held_rows(n, kind), k);
}

static void layout_pack(zp_wmat *w, void *dst, enum zp_wtype t, enum zp_wstore st, int n, int k,
			enum zp_wkind kind, const zp_wsrc *src)
{
	struct swiglu_rows s = { src->row, src->scale, src->ctx, n / 2 };
	zp_wsrc sw = { src->dt, swiglu_row, swiglu_scale, &s };
	ZP_ASSERT(kind == ZP_WK_PLAIN || n % 2 == 0);
	if (kind == ZP_WK_SWIGLU)
		zp_wmat_pack(w, dst, t, st, held_rows(n, kind), k, &sw);
	else
		zp_wmat_pack(w, dst, t, st, n, k, src);
}

const zp_wlayout zp_cpu_wlayout = { "cpu-panels", layout_bytes, layout_pack, .fp8 = true };

/* ---- micro-kernels: tile[mr][32] (+)= A[mr][k0..k1) . panel ---------------- */

/* Plain-C twin: f32 is one fmaf per k, in k order (what the AVX512 FMA does);
   bf16 follows vdpbf16ps: odd element of the pair first, each product exact. */
static void ukr_ref(const zp_gemm_op *op, const void *wp, int m0, int mr, int k0, int k1,
		    float *tile, int first)
{
	for (int i = 0; i < mr; i++)
		for (int j = 0; j < ZP_GEMM_NR; j++) {
			float acc = first ? 0.0f : tile[i * ZP_GEMM_NR + j];
			if (op->w->type == ZP_W_F32) {
				const float *a = (const float *)op->a + (size_t)(m0 + i) * op->lda;
				const float *w = wp;
				for (int k = k0; k < k1; k++)
					acc = fmaf(a[k], w[(size_t)k * ZP_GEMM_NR + j], acc);
			} else {
				const uint16_t *a = (const uint16_t *)op->a + (size_t)(m0 + i) * op->lda;
				const uint16_t *w = wp;
				for (int k = k0; k < k1; k += 2) {
					const uint16_t *wk = w + (size_t)(k / 2) * 64 + 2 * j;
					acc = fmaf(zp_bf16_to_f32(a[k + 1]), zp_bf16_to_f32(wk[1]), acc);
					acc = fmaf(zp_bf16_to_f32(a[k]), zp_bf16_to_f32(wk[0]), acc);
				}
			}
			tile[i * ZP_GEMM_NR + j] = acc;
		}
}

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) static inline
#define AVX512BF16 \
	__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline)) static inline

AVX512 void ukr_f32_mr(const float *a, size_t lda, const float *w, int mr, int k0, int k1,
		       float *tile, int first)
{
	__m512 acc[MR][2];
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
		if (i < mr) {
			acc[i][0] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(tile + i * 32);
			acc[i][1] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(tile + i * 32 + 16);
		}
	for (int k = k0; k < k1; k++) {
		__m512 w0 = _mm512_load_ps(w + (size_t)k * 32);
		__m512 w1 = _mm512_load_ps(w + (size_t)k * 32 + 16);
	#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
			if (i < mr) {
				__m512 ai = _mm512_set1_ps(a[(size_t)i * lda + k]);
				acc[i][0] = _mm512_fmadd_ps(ai, w0, acc[i][0]);
				acc[i][1] = _mm512_fmadd_ps(ai, w1, acc[i][1]);
			}
	}
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
		if (i < mr) {
			_mm512_storeu_ps(tile + i * 32, acc[i][0]);
			_mm512_storeu_ps(tile + i * 32 + 16, acc[i][1]);
		}
}

AVX512BF16 void ukr_bf16_mr(const uint16_t *a, size_t lda, const uint16_t *w, int mr, int k0,
			    int k1, float *tile, int first)
{
	__m512 acc[MR][2];
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
		if (i < mr) {
			acc[i][0] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(tile + i * 32);
			acc[i][1] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(tile + i * 32 + 16);
		}
	for (int k = k0; k < k1; k += 2) {
		__m512bh w0 = (__m512bh)_mm512_load_si512(w + (size_t)(k / 2) * 64);
		__m512bh w1 = (__m512bh)_mm512_load_si512(w + (size_t)(k / 2) * 64 + 32);
	#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
			if (i < mr) {
				uint32_t pair;
				memcpy(&pair, a + (size_t)i * lda + k, 4);
				__m512bh ai = (__m512bh)_mm512_set1_epi32((int)pair);
				acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, w0);
				acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, w1);
			}
	}
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
		if (i < mr) {
			_mm512_storeu_ps(tile + i * 32, acc[i][0]);
			_mm512_storeu_ps(tile + i * 32 + 16, acc[i][1]);
		}
}

/* Specialise on mr so the accumulators stay in registers. */
#define DISPATCH_MR(fn, mr, ...)                                 \
	switch (mr) {                                            \
	case 1: fn(__VA_ARGS__, 1, k0, k1, tile, first); break;  \
	case 2: fn(__VA_ARGS__, 2, k0, k1, tile, first); break;  \
	case 3: fn(__VA_ARGS__, 3, k0, k1, tile, first); break;  \
	case 4: fn(__VA_ARGS__, 4, k0, k1, tile, first); break;  \
	case 5: fn(__VA_ARGS__, 5, k0, k1, tile, first); break;  \
	case 6: fn(__VA_ARGS__, 6, k0, k1, tile, first); break;  \
	case 7: fn(__VA_ARGS__, 7, k0, k1, tile, first); break;  \
	default: fn(__VA_ARGS__, 8, k0, k1, tile, first); break; \
	}

__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
ukr_f32(const zp_gemm_op *op, const void *wp, int m0, int mr, int k0, int k1, float *tile,
	int first)
{
	DISPATCH_MR(ukr_f32_mr, mr, (const float *)op->a + (size_t)m0 * op->lda, op->lda, wp);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
ukr_bf16(const zp_gemm_op *op, const void *wp, int m0, int mr, int k0, int k1, float *tile,
	 int first)
{
	DISPATCH_MR(ukr_bf16_mr, mr, (const uint16_t *)op->a + (size_t)m0 * op->lda, op->lda, wp);
}

/* SWIGLU rows: c[j] = silu(gate[j]) * up[j] for j < n (<= 16), one vector
   expression whatever the path that produced the tile. */
ZP_AVX512 static void swiglu16_avx512(float *c, const float *t, int n)
{
	__mmask16 k = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
	__m512 g = _mm512_loadu_ps(t), u = _mm512_loadu_ps(t + 16);
	_mm512_mask_storeu_ps(c, k, _mm512_mul_ps(zp_silu512(g), u));
}

static void swiglu16(float *c, const float *t, int n)
{
	/* shared by the kernels and their twin: not switched by zp_gemm_force_ref */
	if (zp_cpu_avx512()) {
		swiglu16_avx512(c, t, n);
		return;
	}
	for (int j = 0; j < n; j++)
		c[j] = t[j] / (1.0f + expf(-t[j])) * t[16 + j];
}

static void epilogue(const zp_gemm_op *op, int p, int m0, int mr, const float *tile)
{
	for (int i = 0; i < mr; i++) {
		float *c = op->c + (size_t)(m0 + i) * op->ldc;
		const float *t = tile + i * ZP_GEMM_NR;
		if (op->epi == ZP_EPI_SWIGLU) {
			swiglu16(c + p * 16, t, ZP_MIN(16, op->ncols - p * 16));
			continue;
		}
		int nj = ZP_MIN(ZP_GEMM_NR, op->w->n - p * ZP_GEMM_NR);
		float *cp = c + p * ZP_GEMM_NR;
		if (op->epi == ZP_EPI_STORE)
			memcpy(cp, t, (size_t)nj * sizeof *cp);
		else
			for (int j = 0; j < nj; j++)
				cp[j] += t[j];
	}
}

/* ---- AMX: 32 x 32 blocks, C in four tiles, the whole K in tile registers ------ */

/* Tiles 0-3: C (16 rows x 16 f32); 4-5: A (16 rows x 32 bf16); 6-7: B (16 k-pairs
   x 16 columns x 2). The packed panel rows (32 columns x 2 = 128 bytes) hold B0 in
   their first 64 bytes and B1 in the last 64. Each C element is summed over k in
   order, 32 at a time: the row count never changes the order. */
struct amx_cfg {
	uint8_t palette, start_row, reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};
_Static_assert(sizeof(struct amx_cfg) == 64, "AMX tile config is 64 bytes");

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f")))

/* Tile shapes for a block of r0 + r1 rows (r0 <= 16 in A0/C0/C1, r1 <= 16 in
   A1/C2/C3; r1 == 0 leaves those tiles unconfigured). A tail block gets its own
   shapes rather than a padded copy: tile loads never read past the last row. */
AMX static void amx_config(int r0, int r1)
{
	_Alignas(64) struct amx_cfg cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.palette = 1;
	static const int a1_tiles[] = { 2, 3, 5 };
	for (int t = 0; t < 8; t++) {
		cfg.colsb[t] = 64;
		cfg.rows[t] = t >= 6 ? 16 : (uint8_t)r0;
	}
	for (int i = 0; i < 3; i++) {
		cfg.rows[a1_tiles[i]] = (uint8_t)r1;
		cfg.colsb[a1_tiles[i]] = r1 ? 64 : 0;
	}
	/* gcc 12 does not see ldtilecfg read cfg and drops the stores above */
	__asm__ __volatile__("" : : "r"(&cfg) : "memory");
	_tile_loadconfig(&cfg);
}

/* C[32 x 32] (ldc floats) (+)= A[32 rows] . panel, the whole K in tile
   registers (first: from zero, else from C's f32 partial: reloading it is
   exact, so a K split in chunks sums as one pass). */
AMX static void amx_block32(const uint16_t *a, size_t lda, const uint16_t *w, int kp, float *c,
			    size_t ldc, int first)
{
	size_t sa = lda * 2, sc = ldc * 4;
	if (first) {
		_tile_zero(0);
		_tile_zero(1);
		_tile_zero(2);
		_tile_zero(3);
	} else {
		_tile_loadd(0, c, sc);
		_tile_loadd(1, c + 16, sc);
		_tile_loadd(2, c + 16 * ldc, sc);
		_tile_loadd(3, c + 16 * ldc + 16, sc);
	}
	for (int k = 0; k < kp; k += 32) {
		_tile_loadd(4, a + k, sa);
		_tile_loadd(5, a + 16 * lda + k, sa);
		_tile_loadd(6, w + (size_t)(k / 2) * 64, 128);
		_tile_loadd(7, w + (size_t)(k / 2) * 64 + 32, 128);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		_tile_dpbf16ps(2, 5, 6);
		_tile_dpbf16ps(3, 5, 7);
	}
	_tile_stored(0, c, sc);
	_tile_stored(1, c + 16, sc);
	_tile_stored(2, c + 16 * ldc, sc);
	_tile_stored(3, c + 16 * ldc + 16, sc);
}

/* The same for a block of <= 16 rows (tiles 0, 1, 4, 6, 7). */
AMX static void amx_block16(const uint16_t *a, size_t lda, const uint16_t *w, int kp, float *c,
			    size_t ldc, int first)
{
	size_t sa = lda * 2, sc = ldc * 4;
	if (first) {
		_tile_zero(0);
		_tile_zero(1);
	} else {
		_tile_loadd(0, c, sc);
		_tile_loadd(1, c + 16, sc);
	}
	for (int k = 0; k < kp; k += 32) {
		_tile_loadd(4, a + k, sa);
		_tile_loadd(6, w + (size_t)(k / 2) * 64, 128);
		_tile_loadd(7, w + (size_t)(k / 2) * 64 + 32, 128);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
	}
	_tile_stored(0, c, sc);
	_tile_stored(1, c + 16, sc);
}

/* Rows r0..r1 of panel wp, k [0, klen) of A (which starts at op->a), into c
   (row r0 first, ldc floats): from zero if first, else added to c. */
static void amx_rows(const zp_gemm_op *op, const uint16_t *wp, int r0, int r1, int klen,
		     float *c, size_t ldc, int first)
{
	int cfg_rows = -1;
	for (int m0 = r0; m0 < r1; m0 += 32) {
		int mr = ZP_MIN(32, r1 - m0);
		const uint16_t *a = (const uint16_t *)op->a + (size_t)m0 * op->lda;
		float *cm = c + (size_t)(m0 - r0) * ldc;
		if (mr != cfg_rows) {
			amx_config(ZP_MIN(mr, 16), mr > 16 ? mr - 16 : 0);
			cfg_rows = mr;
		}
		if (mr > 16)
			amx_block32(a, op->lda, wp, klen, cm, ldc, first);
		else
			amx_block16(a, op->lda, wp, klen, cm, ldc, first);
	}
}

/* Rows r0..r1 (<= 64) of panel p. A full panel with a plain store goes straight
   to C; anything else through the tile buffer and the epilogue. */
static void amx_task(const zp_gemm_op *op, const void *wp, int p, int r0, int r1, float *tile)
{
	bool direct = op->epi == ZP_EPI_STORE && (p + 1) * ZP_GEMM_NR <= op->w->n;
	if (direct) {
		amx_rows(op, wp, r0, r1, op->w->kp, op->c + (size_t)r0 * op->ldc + (size_t)p * ZP_GEMM_NR,
			 op->ldc, 1);
		return;
	}
	amx_rows(op, wp, r0, r1, op->w->kp, tile, ZP_GEMM_NR, 1);
	for (int m0 = r0; m0 < r1; m0 += MR)
		epilogue(op, p, m0, ZP_MIN(MR, r1 - m0), tile + (m0 - r0) * ZP_GEMM_NR);
}

int zp_gemm_amx(void)
{
	return have_amx();
}

void zp_gemm_amx_begin(void)
{
	ZP_ASSERT(have_amx());
	amx_config(16, 16);
}

void zp_gemm_amx_32x32(const uint16_t *a, size_t lda, const uint16_t *panel, int k, float *c,
		       size_t ldc)
{
	ZP_ASSERT(k % 32 == 0);
	amx_block32(a, lda, panel, k, c, ldc, 1);
}

typedef void (*ukr_fn)(const zp_gemm_op *, const void *, int, int, int, int, float *, int);

/* ---- FP8: e4m3 codes widened to bf16 (exact) ----------------------------- */

static uint16_t fp8_lut[256]; /* e4m3 code -> bf16 bits (exact) */
static float fp8_mag[128];   /* e4m3 magnitude code -> its value (NaN: 0), as fp8_lut */
static pthread_once_t fp8_once = PTHREAD_ONCE_INIT;
static int fp8_vbmi; /* the CPU has AVX512-VBMI (set once, with the table) */

static void fp8_lut_init(void)
{
	fp8_vbmi = __builtin_cpu_supports("avx512vbmi") && zp_cpu_avx512();
	for (int c = 0; c < 256; c++)
		fp8_lut[c] = (c & 0x7f) == 0x7f ? 0 : zp_fp8_to_bf16((uint8_t)c);
	for (int m = 0; m < 128; m++)
		fp8_mag[m] = zp_bf16_to_f32(fp8_lut[m]);
}

/* The twin: a k pair's 64 codes (fp8_slot order) -> bf16 by the table. */
static void fp8_widen_ref(const uint8_t *codes, size_t n, uint16_t *out)
{
	ZP_ASSERT(n % 64 == 0);
	for (size_t g = 0; g < n; g += 64)
		for (int x = 0; x < 64; x++)
			out[g + (size_t)x] = fp8_lut[codes[g + (size_t)fp8_slot(x)]];
}

/* 64 codes a step: two 128-entry byte lookups (vpermi2b reads the low 7 bits:
   the magnitude) give each bf16's high and low byte, the sign bit goes into
   the high byte, and in-lane byte interleaves make the 16-bit values: the
   slot order the codes are packed in comes out as elements 0..63. Gives the
   table's bits exactly (test_gemm_fp8 compares it with the twin). */
#define VBMI __attribute__((target("avx512f,avx512bw,avx512vbmi")))

/* The table's high and low bytes, for the two byte permutes of the widening. */
static void fp8_lut_bytes(uint8_t hi[128], uint8_t lo[128])
{
	for (int m = 0; m < 128; m++) {
		hi[m] = (uint8_t)(fp8_lut[m] >> 8);
		lo[m] = (uint8_t)fp8_lut[m];
	}
}
VBMI static void fp8_widen_vbmi(const uint8_t *codes, size_t n, uint16_t *out)
{
	_Alignas(64) uint8_t hi[128], lo[128];
	fp8_lut_bytes(hi, lo);
	__m512i h0 = _mm512_load_si512(hi), h1 = _mm512_load_si512(hi + 64);
	__m512i l0 = _mm512_load_si512(lo), l1 = _mm512_load_si512(lo + 64);
	__m512i sign = _mm512_set1_epi8((char)0x80);
	for (size_t i = 0; i < n; i += 64) {
		__m512i c = _mm512_loadu_si512(codes + i);
		__m512i h = _mm512_permutex2var_epi8(h0, c, h1);
		__m512i l = _mm512_permutex2var_epi8(l0, c, l1);
		h = _mm512_ternarylogic_epi32(h, c, sign, 0xf8); /* h | (c & 0x80) */
		_mm512_storeu_si512(out + i, _mm512_unpacklo_epi8(l, h));
		_mm512_storeu_si512(out + i + 32, _mm512_unpackhi_epi8(l, h));
	}
}

static int have_vbmi(void)
{
	return fp8_vbmi && !force_ref;
}

static void fp8_widen(const uint8_t *codes, size_t n, uint16_t *out)
{
	ZP_ASSERT(n % 64 == 0);
	if (have_vbmi())
		fp8_widen_vbmi(codes, n, out);
	else
		fp8_widen_ref(codes, n, out);
}

/* ---- FP8, bf16 compute: the scale folded into the widened weights ---------
   Each weight is widened to bf16(fp8 x scale): the f32 product (what the
   dequantised twin file holds) rounded once to bf16, which is exactly what a
   bf16 checkpoint of the dequantised model holds. So a k chunk widened that
   way runs the plain bf16 kernels (AMX over the whole chunk, no per-block tile
   flush, no scale pass) and gives the bits a bf16 matrix packed from the
   dequantised weights gives, on every path (test_gemm_fp8 checks it). The
   tolerance is the bf16 checkpoint's: one bf16 rounding of each weight
   (relative 2^-9), the same as --dtype bf16 on a bf16 release of the model. */

#define FP8_KC 4096 /* k widened at once: 4096 x 32 x 2 B = 256 KiB, in L2 */

/* The twin: n elements (a k pair's 64 a step, fp8_slot order) of one k block,
   s: its 32 column scales. */
static void fp8_widen_scaled_ref(const uint8_t *codes, size_t n, const float *s, uint16_t *out)
{
	ZP_ASSERT(n % 64 == 0);
	for (size_t g = 0; g < n; g += 64)
		for (int x = 0; x < 64; x++)
			out[g + (size_t)x] = zp_f32_to_bf16(
				zp_bf16_to_f32(fp8_lut[codes[g + (size_t)fp8_slot(x)]]) * s[x / 2]);
}

/* f32 bits -> the bf16 bits in the high half, rounded to nearest even as
   zp_f32_to_bf16 does (the products are finite: no NaN case) */
VBMI static inline __m512i rne_bf16(__m512i u)
{
	__m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
	return _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
}

/* 16 k pairs of bf16 (v) times their columns' scales, each rounded */
VBMI static inline __m512i fold16(__m512i v, __m512 s)
{
	__m512i hi = _mm512_set1_epi32((int)0xffff0000u);
	__m512i ev = rne_bf16(_mm512_castps_si512(
		_mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), s)));
	__m512i od = rne_bf16(_mm512_castps_si512(
		_mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(v, hi)), s)));
	return _mm512_ternarylogic_epi32(_mm512_srli_epi32(ev, 16), od, hi, 0xf8); /* ev | od & hi */
}

/* bf16(magnitude m x s) for m = 0..127 as high and low bytes: the lookup
   tables of one column group with one scale */
VBMI static void fp8_scaled_table(float s, uint8_t *hi, uint8_t *lo)
{
	__m512 sv = _mm512_set1_ps(s);
	for (int m = 0; m < 128; m += 16) {
		__m512i u = rne_bf16(_mm512_castps_si512(_mm512_mul_ps(_mm512_loadu_ps(fp8_mag + m), sv)));
		_mm_storeu_si128((__m128i *)(hi + m), _mm512_cvtepi32_epi8(_mm512_srli_epi32(u, 24)));
		_mm_storeu_si128((__m128i *)(lo + m), _mm512_cvtepi32_epi8(_mm512_srli_epi32(u, 16)));
	}
}

/* Columns 0-15 with one scale and 16-31 with one (every real matrix: a panel
   half lies in one 128-row group; pack gives padding columns their half's
   scale): two lookup tables of scaled values, one pass as fp8_widen_vbmi,
   the half chosen per byte (slot bit 3: elements 32..63). RNE is symmetric,
   so bf16(|v| s) with v's sign is bf16(v s): the bits of fold16. */
VBMI static void fp8_widen_table_vbmi(const uint8_t *codes, size_t n, const float *s,
				      uint16_t *out)
{
	_Alignas(64) uint8_t hi[2][128], lo[2][128];
	fp8_scaled_table(s[0], hi[0], lo[0]);
	fp8_scaled_table(s[16], hi[1], lo[1]);
	__m512i ha0 = _mm512_load_si512(hi[0]), ha1 = _mm512_load_si512(hi[0] + 64);
	__m512i la0 = _mm512_load_si512(lo[0]), la1 = _mm512_load_si512(lo[0] + 64);
	__m512i hb0 = _mm512_load_si512(hi[1]), hb1 = _mm512_load_si512(hi[1] + 64);
	__m512i lb0 = _mm512_load_si512(lo[1]), lb1 = _mm512_load_si512(lo[1] + 64);
	__m512i sign = _mm512_set1_epi8((char)0x80);
	__mmask64 second = 0xff00ff00ff00ff00ull;
	for (size_t i = 0; i < n; i += 64) {
		__m512i c = _mm512_loadu_si512(codes + i);
		__m512i h = _mm512_mask_blend_epi8(second, _mm512_permutex2var_epi8(ha0, c, ha1),
						   _mm512_permutex2var_epi8(hb0, c, hb1));
		__m512i l = _mm512_mask_blend_epi8(second, _mm512_permutex2var_epi8(la0, c, la1),
						   _mm512_permutex2var_epi8(lb0, c, lb1));
		h = _mm512_ternarylogic_epi32(h, c, sign, 0xf8); /* h | (c & 0x80) */
		_mm512_storeu_si512(out + i, _mm512_unpacklo_epi8(l, h));
		_mm512_storeu_si512(out + i + 32, _mm512_unpackhi_epi8(l, h));
	}
}

/* fp8_widen_vbmi, each element then times its column's scale and rounded */
VBMI static void fp8_widen_scaled_vbmi(const uint8_t *codes, size_t n, const float *s,
				       uint16_t *out)
{
	_Alignas(64) uint8_t hi[128], lo[128];
	fp8_lut_bytes(hi, lo);
	__m512i h0 = _mm512_load_si512(hi), h1 = _mm512_load_si512(hi + 64);
	__m512i l0 = _mm512_load_si512(lo), l1 = _mm512_load_si512(lo + 64);
	__m512i sign = _mm512_set1_epi8((char)0x80);
	__m512 s0 = _mm512_loadu_ps(s), s1 = _mm512_loadu_ps(s + 16);
	for (size_t i = 0; i < n; i += 64) {
		__m512i c = _mm512_loadu_si512(codes + i);
		__m512i h = _mm512_permutex2var_epi8(h0, c, h1);
		__m512i l = _mm512_permutex2var_epi8(l0, c, l1);
		h = _mm512_ternarylogic_epi32(h, c, sign, 0xf8); /* h | (c & 0x80) */
		_mm512_storeu_si512(out + i, fold16(_mm512_unpacklo_epi8(l, h), s0));
		_mm512_storeu_si512(out + i + 32, fold16(_mm512_unpackhi_epi8(l, h), s1));
	}
}

static bool halves_uniform(const float *s)
{
	for (int j = 0; j < ZP_GEMM_NR; j++)
		if (s[j] != s[j / 16 * 16])
			return false;
	return true;
}

/* k [k0, k1) (k0 a multiple of the block) of a panel's codes, widened with
   their block scales (sc: the panel's [block][32]) into out [k pair][32][2]. */
static void fp8_widen_scaled(const uint8_t *codes, const float *sc, int k0, int k1, uint16_t *out)
{
	ZP_ASSERT(k0 % ZP_FP8_BLOCK == 0 && k1 % 2 == 0);
	for (int b0 = k0; b0 < k1; b0 += ZP_FP8_BLOCK) {
		size_t n = (size_t)(ZP_MIN(b0 + ZP_FP8_BLOCK, k1) - b0) * ZP_GEMM_NR;
		const uint8_t *c = codes + (size_t)b0 * ZP_GEMM_NR;
		const float *s = sc + (size_t)(b0 / ZP_FP8_BLOCK) * ZP_GEMM_NR;
		uint16_t *o = out + (size_t)(b0 - k0) * ZP_GEMM_NR;
		if (have_vbmi() && halves_uniform(s))
			fp8_widen_table_vbmi(c, n, s, o);
		else if (have_vbmi())
			fp8_widen_scaled_vbmi(c, n, s, o);
		else
			fp8_widen_scaled_ref(c, n, s, o);
	}
}

/* Rows r0..r1 of panel p, bf16 compute: chunks of FP8_KC k widened once for
   all the task's rows, each run by the plain bf16 path, the tile carrying the
   f32 partial from chunk to chunk. */
static void fp8_bf16_task(const zp_gemm_op *op, const uint8_t *codes, const float *sc, int p,
			  int r0, int r1, float *tile)
{
	_Alignas(64) uint16_t wb[FP8_KC * ZP_GEMM_NR];
	int kp = op->w->kp;
	bool amx = kp % 32 == 0 && have_amx();
	ukr_fn ukr = have_bf16() ? ukr_bf16 : ukr_ref;

	for (int c0 = 0; c0 < kp; c0 += FP8_KC) {
		int klen = ZP_MIN(FP8_KC, kp - c0);
		zp_gemm_op o = *op;
		o.a = (const uint16_t *)op->a + c0;
		fp8_widen_scaled(codes, sc, c0, c0 + klen, wb);
		if (amx) {
			amx_rows(&o, wb, r0, r1, klen, tile, ZP_GEMM_NR, c0 == 0);
			continue;
		}
		for (int k0 = 0; k0 < klen; k0 += KB_BF16)
			for (int m0 = r0; m0 < r1; m0 += MR)
				ukr(&o, wb, m0, ZP_MIN(MR, r1 - m0), k0, ZP_MIN(k0 + KB_BF16, klen),
				    tile + (m0 - r0) * ZP_GEMM_NR, c0 == 0 && k0 == 0);
	}
	for (int m0 = r0; m0 < r1; m0 += MR)
		epilogue(op, p, m0, ZP_MIN(MR, r1 - m0), tile + (m0 - r0) * ZP_GEMM_NR);
}

/* ---- FP8, f32 compute: widen a 128-wide k block, compute it from zero, add
   it times the block scale (the dequantised model to float32 rounding) ---- */

/* bf16 pairs [kk][32][2] -> f32 [2 kk + {0,1}][32] (exact) */
static void pairs_to_f32(const uint16_t *b, int klen, float *f)
{
	for (int kk = 0; kk < klen / 2; kk++)
		for (int j = 0; j < ZP_GEMM_NR; j++) {
			f[(size_t)(2 * kk) * ZP_GEMM_NR + j] = zp_bf16_to_f32(b[kk * 64 + 2 * j]);
			f[(size_t)(2 * kk + 1) * ZP_GEMM_NR + j] = zp_bf16_to_f32(b[kk * 64 + 2 * j + 1]);
		}
}

/* part[mr][32] = A[mr][k0, k0 + klen) . wf (one widened block) */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
blk_f32(const float *a, size_t lda, const float *wb, int mr, int klen, float *part)
{
	int k0 = 0, k1 = klen, first = 1;
	float *tile = part;
	DISPATCH_MR(ukr_f32_mr, mr, a, lda, wb);
}

/* not inlined: gcc 12 then sees ukr_ref read wf as bf16 and calls it uninitialised */
__attribute__((noinline)) static void fp8_block(const zp_gemm_op *op, const float *wf, int m0, int mr, int k0, int klen,
		      float *part)
{
	const float *a = (const float *)op->a + (size_t)m0 * op->lda + (size_t)k0;
	if (have_avx512()) {
		blk_f32(a, op->lda, wf, mr, klen, part);
	} else {
		zp_gemm_op o = *op;
		o.a = (const float *)op->a + (size_t)k0;
		ukr_ref(&o, wf, m0, mr, 0, klen, part, 1);
	}
}

/* tile[mr][32] += part[mr][32] * s[32]: one fma an element, whatever the path
   (the AVX512 loop and the plain one give the same bits) */
ZP_AVX512 static void scale_acc_avx512(float *tile, const float *part, int mr, const float *s)
{
	__m512 s0 = _mm512_loadu_ps(s), s1 = _mm512_loadu_ps(s + 16);
	for (int i = 0; i < mr; i++) {
		float *t = tile + i * ZP_GEMM_NR;
		const float *p = part + i * ZP_GEMM_NR;
		_mm512_storeu_ps(t, _mm512_fmadd_ps(_mm512_loadu_ps(p), s0, _mm512_loadu_ps(t)));
		_mm512_storeu_ps(t + 16,
				 _mm512_fmadd_ps(_mm512_loadu_ps(p + 16), s1, _mm512_loadu_ps(t + 16)));
	}
}

static void scale_acc(float *tile, const float *part, int mr, const float *s)
{
	if (zp_cpu_avx512()) { /* not switched by zp_gemm_force_ref: the same bits */
		scale_acc_avx512(tile, part, mr, s);
		return;
	}
	for (int i = 0; i < mr; i++)
		for (int j = 0; j < ZP_GEMM_NR; j++)
			tile[i * ZP_GEMM_NR + j] =
				fmaf(part[i * ZP_GEMM_NR + j], s[j], tile[i * ZP_GEMM_NR + j]);
}

/* Every k block of rows r0..r1 into tile (row r0 first): widen the block's
   codes, compute it from zero per MR rows, add it scaled. */
static void fp8_f32_task(const zp_gemm_op *op, const uint8_t *codes, const float *sc, int p,
			 int r0, int r1, float *tile)
{
	const zp_wmat *w = op->w;
	_Alignas(64) float part[MR * ZP_GEMM_NR];
	_Alignas(64) uint16_t wb[ZP_FP8_BLOCK * ZP_GEMM_NR];
	_Alignas(64) float wf[ZP_FP8_BLOCK * ZP_GEMM_NR];

	memset(tile, 0, (size_t)(r1 - r0) * ZP_GEMM_NR * sizeof *tile);
	for (int b = 0; b * ZP_FP8_BLOCK < w->kp; b++) {
		int k0 = b * ZP_FP8_BLOCK, klen = ZP_MIN(ZP_FP8_BLOCK, w->kp - k0);
		fp8_widen(codes + (size_t)k0 * ZP_GEMM_NR, (size_t)klen * ZP_GEMM_NR, wb);
		pairs_to_f32(wb, klen, wf);
		for (int m0 = r0; m0 < r1; m0 += MR) {
			int mr = ZP_MIN(MR, r1 - m0);
			fp8_block(op, wf, m0, mr, k0, klen, part);
			scale_acc(tile + (size_t)(m0 - r0) * ZP_GEMM_NR, part, mr,
				  sc + (size_t)b * ZP_GEMM_NR);
		}
	}
	for (int m0 = r0; m0 < r1; m0 += MR)
		epilogue(op, p, m0, ZP_MIN(MR, r1 - m0), tile + (m0 - r0) * ZP_GEMM_NR);
}

/* Rows r0..r1 (<= ROWS_TASK_FP8) of panel p of an FP8 matrix (gemm.h). */
static void fp8_task(const zp_gemm_op *op, int p, int r0, int r1)
{
	const zp_wmat *w = op->w;
	const uint8_t *codes = (const uint8_t *)w->data + (size_t)p * w->kp * ZP_GEMM_NR;
	const float *sc = (const float *)((const char *)w->data + w->scale_off) +
			  (size_t)p * kblocks(w->k) * ZP_GEMM_NR;
	_Alignas(64) float tile[ROWS_TASK_FP8 * ZP_GEMM_NR];

	ZP_ASSERT(r1 > r0 && r1 - r0 <= ROWS_TASK_FP8);
	if (w->type == ZP_W_BF16)
		fp8_bf16_task(op, codes, sc, p, r0, r1, tile);
	else
		fp8_f32_task(op, codes, sc, p, r0, r1, tile);
}

/* ---- tasks ------------------------------------------------------------------ */

static void run_task(const zp_gemm_op *op, int p, int r0, int r1)
{
	const zp_wmat *w = op->w;
	size_t pbytes = (size_t)w->kp * ZP_GEMM_NR * (w->type == ZP_W_F32 ? 4 : 2);
	const void *wp = (const char *)w->data + (size_t)p * pbytes;
	int kb = w->type == ZP_W_F32 ? KB_F32 : KB_BF16;
	ukr_fn ukr = w->type == ZP_W_F32 ? (have_avx512() ? ukr_f32 : ukr_ref)
					 : (have_bf16() ? ukr_bf16 : ukr_ref);
	_Alignas(64) float tile[ROWS_TASK * ZP_GEMM_NR];

	if (w->store == ZP_WS_FP8) {
		fp8_task(op, p, r0, r1);
		return;
	}
	ZP_ASSERT(r1 - r0 <= ROWS_TASK);
	/* AMX where K fills whole tiles: chosen by shape only, never by M, so a row's
	   result does not depend on its batch. */
	if (w->type == ZP_W_BF16 && w->kp % 32 == 0 && have_amx()) {
		amx_task(op, wp, p, r0, r1, tile);
		return;
	}
	for (int k0 = 0; k0 < w->kp; k0 += kb) {
		int k1 = ZP_MIN(k0 + kb, w->kp);
		for (int m0 = r0; m0 < r1; m0 += MR) {
			int mr = ZP_MIN(MR, r1 - m0);
			ukr(op, wp, m0, mr, k0, k1, tile + (m0 - r0) * ZP_GEMM_NR, k0 == 0);
		}
	}
	for (int m0 = r0; m0 < r1; m0 += MR)
		epilogue(op, p, m0, ZP_MIN(MR, r1 - m0), tile + (m0 - r0) * ZP_GEMM_NR);
}

struct run_ctx {
	const zp_gemm_op *ops;
	int nops;
	int *first_task; /* [nops + 1] prefix sums */
};

static int rows_task(const zp_gemm_op *op)
{
	return op->w->store == ZP_WS_FP8 ? ROWS_TASK_FP8 : ROWS_TASK;
}

static int op_tasks(const zp_gemm_op *op)
{
	return op->m <= 0 ? 0 : panel_count(op->w) * ((op->m + rows_task(op) - 1) / rows_task(op));
}

static void task(void *vctx, int t, int thread)
{
	struct run_ctx *c = vctx;
	int lo = 0, hi = c->nops - 1;
	(void)thread;
	while (lo < hi) { /* last op whose first task <= t */
		int mid = (lo + hi + 1) / 2;
		if (c->first_task[mid] <= t)
			lo = mid;
		else
			hi = mid - 1;
	}
	const zp_gemm_op *op = &c->ops[lo];
	int local = t - c->first_task[lo];
	int rt = rows_task(op), chunks = (op->m + rt - 1) / rt;
	int p = local / chunks, r0 = (local % chunks) * rt;
	run_task(op, p, r0, ZP_MIN(r0 + rt, op->m));
}

void zp_gemm_run(zp_pool *pool, const zp_gemm_op *ops, int nops)
{
	int first[ZP_GEMM_OPS_MAX + 1];
	long total = 0;

	ZP_ASSERT(nops >= 0 && nops <= ZP_GEMM_OPS_MAX);
	pthread_once(&fp8_once, fp8_lut_init);

	for (int i = 0; i < nops; i++) {
		ZP_ASSERT(ops[i].w && ops[i].w->data);
		ZP_ASSERT(ops[i].lda >= (size_t)ops[i].w->kp || ops[i].m == 0);
		first[i] = (int)total;
		total += op_tasks(&ops[i]);
		ZP_ASSERT(total < TASKS_MAX);
	}
	first[nops] = (int)total;
	struct run_ctx c = { ops, nops, first };
	zp_pool_run(pool, (int)total, task, &c);
}

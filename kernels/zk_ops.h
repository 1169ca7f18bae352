/* zk_ops.h -- the math of every v0 kernel (kernels/<op>.cu) as ZP_HD code, and
   each kernel's argument block. A kernel is a grid of blocks of ZK_WARP lanes
   (dispatch: ZK_DISPATCH_LANES); on the device lane = threadIdx.x, and the
   sim (src/cuda/devrt_sim.c) runs the same functions for every (block, lane),
   phase by phase where a kernel syncs its lanes between phases. Where the CPU
   backend (src/cpu/ops.c, backend_cpu.c) has a fixed order this code follows
   it operation for operation, so cpu vs sim is bitwise there:
     rmsnorm, q/k-norm + RoPE, route, dispatch, gather, combine, residual,
     add_bias, to_bf16, SwiGLU, pooling, embedding, the GEMM twin (the CPU's
     plain-C micro-kernel order: one fmaf chain over k, bf16 pairs odd first);
   and has its own fixed order elsewhere (batch invariant, not the CPU's bits):
     attention (keys in position order, a warp-wide dot per key, online
     softmax), log-sum-exp (32 lane-strided running sums merged by the
     butterfly). Device vs sim: bitwise where no transcendental is involved
     (nvcc -fmad=false, IEEE div/sqrt); expf/logf differ by <= 2 ulp. */
#ifndef ZP_ZK_OPS_H
#define ZP_ZK_OPS_H

#include <stdbool.h>

#include "zk.h"
#include "zk_fp8.h"

#include <float.h>
#include <math.h>

#define ZK_DMAX 256		/* attention head dim */
#define ZK_DPL (ZK_DMAX / ZK_WARP)	/* head dims per lane */
#define ZK_DISPATCH_LANES 256
#define ZK_ROWS_PER_BLOCK 32	/* route: one row per lane */

/* ---- launch descriptors (one per kernel) ---- */

enum zk_kind {
	ZK_EMBED, ZK_RMSNORM, ZK_ROPE, ZK_ATTN, ZK_ROUTE, ZK_DISPATCH, ZK_GATHER,
	ZK_COMBINE, ZK_RESIDUAL, ZK_BIAS, ZK_TO_BF16, ZK_SWIGLU, ZK_LSE, ZK_POOL,
	ZK_ACT_QUANT, ZK_FP8_WIDEN,	/* zk_fp8.h */
	ZK_NKINDS
};

typedef struct { const float *table; int H; const int *ids; float *x; size_t ldx; } zk_embed;
typedef struct {
	const float *x; size_t ldx; const int *rows; const float *w; float eps; int cols;
	float *out; size_t ldo; uint16_t *out16; size_t ldo16;
} zk_rmsnorm;
typedef struct {
	float *qkv; size_t ld; int heads, kv_heads, d; const float *qn, *kn; float eps;
	const int *pos; const float *cs, *sn;
} zk_rope;
typedef struct { const float *k, *v; size_t ld; int len; } zk_kv; /* = zp_kv_src */
typedef struct {
	const float *qkv; size_t ldq; float *out; size_t ldo; int heads, kv_heads, d, nseq;
	const int *seq_start; const zk_kv *prefix; float scale;
} zk_attn;
typedef struct { float *logits; size_t ld; int n, E, K; bool norm; int *sel; float *selw, *gap; } zk_route;
typedef struct {
	int nk, E; const int *sel; int *offs, *slot_row;
	int phase;	/* ZK_DISPATCH_COUNT, _SCAN, _PLACE: one launch each */
	int *hist;	/* [zk_dispatch_blocks(nk)][E] scratch: counts, then each block's starts */
} zk_dispatch;
typedef struct { int K; const int *slot_row; const uint16_t *src; uint16_t *dst; size_t row_u16; } zk_gather;
typedef struct {
	int K, cols; const int *slot_row; const float *selw; const float *y; size_t ldy;
	float *out; size_t ldo;
} zk_combine;
typedef struct { int cols; float *x; size_t ldx; const float *y; size_t ldy; const float *bias; } zk_vec;
typedef struct { int cols; const float *src; size_t lds; uint16_t *dst; size_t ldd; } zk_tobf16;
typedef struct { int ncols, half; const float *t; size_t ldt; float *c; size_t ldc; } zk_swiglu;
/* one log-prob row: outputs at outf[out_off]: plp (when has_plp), ncand
   candidate log-probs, top_k log-probs; top ids at outi[ids_off] */
typedef struct {
	int next, has_plp, ncand, cand_off, top_k, out_off, ids_off;
	int has_rank, rank_off;	/* rank (1 + logits above next's) at outi[rank_off] */
} zk_lp_meta;
typedef struct {
	const float *logits; size_t ld; int V; const zk_lp_meta *meta; const int *cands;
	float *outf; int *outi;
} zk_lse;
typedef struct {
	int n, cols; const float *x; size_t ldx; const float *w; float eps; int mean, normalize;
	double *acc; float *out;
} zk_pool;

typedef struct {
	enum zk_kind kind;
	int blocks;	/* grid size; every block has ZK_WARP lanes (dispatch:
			   ZK_DISPATCH_LANES) */
	union {
		zk_embed embed; zk_rmsnorm rmsnorm; zk_rope rope; zk_attn attn; zk_route route;
		zk_dispatch dispatch; zk_gather gather; zk_combine combine; zk_vec vec;
		zk_tobf16 tobf16; zk_swiglu swiglu; zk_lse lse; zk_pool pool;
		zk_actq actq; zk_fp8w fp8w;
	} u;
} zk_launch;

/* ---- rmsnorm: transformers' Qwen3MoeRMSNorm, ops.c's order ---- */

/* lane l < 8: the sum of squares (double) of x[i], i = l mod 8, ascending */
ZP_HD double zk_rms_part(const float *x, int n, int l)
{
	double p = 0;
	for (int i = l; i < n; i += 8)
		p += (double)x[i] * x[i];
	return p;
}

ZP_HD float zk_rms_scale(const double part[8], int n, float eps)
{
	double ss = 0;
	for (int l = 0; l < 8; l++)
		ss += part[l];
	return 1.0f / sqrtf((float)(ss / n) + eps);
}

ZP_HD void zk_rmsnorm_apply(const zk_rmsnorm *a, int row, float r, int lane)
{
	const float *x = a->x + (size_t)(a->rows ? a->rows[row] : row) * a->ldx;
	float *o = a->out + (size_t)row * a->ldo;
	for (int i = lane; i < a->cols; i += ZK_WARP) {
		o[i] = a->w[i] * (x[i] * r);
		if (a->out16)
			a->out16[(size_t)row * a->ldo16 + i] = zk_f32_to_bf16(o[i]);
	}
}

ZP_HD const float *zk_rmsnorm_x(const zk_rmsnorm *a, int row)
{
	return a->x + (size_t)(a->rows ? a->rows[row] : row) * a->ldx;
}

/* ---- q/k norm + RoPE: block = row * (heads + kv_heads) + head ---- */

ZP_HD float *zk_rope_vec(const zk_rope *a, int block, const float **w)
{
	int nh = a->heads + a->kv_heads, t = block / nh, h = block % nh;
	*w = h < a->heads ? a->qn : a->kn;
	return a->qkv + (size_t)t * a->ld + (size_t)h * a->d;
}

/* after every lane read its scale: lane's pairs (i, i + d/2) rotated in place */
ZP_HD void zk_rope_apply(const zk_rope *a, int block, float r, int lane)
{
	const float *w;
	float *v = zk_rope_vec(a, block, &w);
	int h2 = a->d / 2, t = block / (a->heads + a->kv_heads);
	const float *cs = a->cs + (size_t)a->pos[t] * h2, *sn = a->sn + (size_t)a->pos[t] * h2;
	for (int i = lane; i < h2; i += ZK_WARP) {
		float x0 = w[i] * (v[i] * r), x1 = w[i + h2] * (v[i + h2] * r);
		v[i] = x0 * cs[i] - x1 * sn[i];
		v[i + h2] = x1 * cs[i] + x0 * sn[i];
	}
}

/* ---- attention v0: block = row * heads + head, one warp; lane owns the
   head dims lane, lane + 32, ... ---- */

typedef struct {
	const float *q;
	int nkeys;	/* prefix + own rows up to itself */
	int plen, own0, g;
	float m, l;
	float acc[ZK_DPL];
} zk_att_row;

ZP_HD void zk_att_begin(const zk_attn *a, int block, zk_att_row *s)
{
	int t = block / a->heads, h = block % a->heads, lo = 0, hi = a->nseq - 1;
	while (lo < hi) { /* the sequence holding row t */
		int mid = (lo + hi + 1) / 2;
		if (a->seq_start[mid] <= t)
			lo = mid;
		else
			hi = mid - 1;
	}
	s->plen = a->prefix ? a->prefix[lo].len : 0;
	s->own0 = a->seq_start[lo];
	s->nkeys = s->plen + t - s->own0 + 1;
	s->g = h / (a->heads / a->kv_heads);
	s->q = a->qkv + (size_t)t * a->ldq + (size_t)h * a->d;
	s->m = -INFINITY;
	s->l = 0;
	for (int i = 0; i < ZK_DPL; i++)
		s->acc[i] = 0;
}

/* key (which 0) or value (which 1) j of the row's kv head: prefix, then own rows */
ZP_HD const float *zk_att_kv(const zk_attn *a, const zk_att_row *s, int j, int which, int block)
{
	int t = block / a->heads;
	const zk_kv *p = a->prefix ? &a->prefix[0] : 0;
	if (j < s->plen) {
		int lo = 0, hi = a->nseq - 1;
		while (lo < hi) {
			int mid = (lo + hi + 1) / 2;
			if (a->seq_start[mid] <= t)
				lo = mid;
			else
				hi = mid - 1;
		}
		p = &a->prefix[lo];
		return (which ? p->v : p->k) + (size_t)j * p->ld + (size_t)s->g * a->d;
	}
	return a->qkv + (size_t)(s->own0 + j - s->plen) * a->ldq +
	       (size_t)(a->heads + (which ? a->kv_heads : 0) + s->g) * a->d;
}

ZP_HD float zk_att_dot_part(const zk_attn *a, const zk_att_row *s, const float *k, int lane)
{
	float p = 0;
	for (int i = lane; i < a->d; i += ZK_WARP)
		p += s->q[i] * k[i];
	return p;
}

/* the key's score (the warp's sum, times the scale) into the lane's state */
ZP_HD void zk_att_update(const zk_attn *a, zk_att_row *s, float dot, const float *v, int lane)
{
	float sc = dot * a->scale, mn = fmaxf(s->m, sc);
	float c = expf(s->m - mn), p = expf(sc - mn);
	s->l = s->l * c + p;
	s->m = mn;
	/* constant trip count: acc stays in registers on the device */
	for (int j = 0; j < ZK_DPL; j++)
		if (lane + j * ZK_WARP < a->d)
			s->acc[j] = s->acc[j] * c + p * v[lane + j * ZK_WARP];
}

ZP_HD void zk_att_end(const zk_attn *a, const zk_att_row *s, int block, int lane)
{
	int t = block / a->heads, h = block % a->heads;
	float *o = a->out + (size_t)t * a->ldo + (size_t)h * a->d;
	for (int j = 0; j < ZK_DPL; j++)
		if (lane + j * ZK_WARP < a->d)
			o[lane + j * ZK_WARP] = s->acc[j] / s->l;
}

/* ---- router: one row per lane; also the cpu backend's (ops.c's zp_ops_route).
   Softmax in f32 over all experts, top-k by probability with ties to the
   lower expert id (as torch.topk on CPU), the route gap (the log-probability
   gap between the last chosen expert and the best one left out), weights
   renormalised when norm, then slots ordered by expert id: the order in which
   transformers accumulates expert outputs (index_add_ expert by expert). ---- */

ZP_HD void zk_route_row(const zk_route *a, int row)
{
	float *lg = a->logits + (size_t)row * a->ld;
	int E = a->E, K = a->K, *sel = a->sel + (size_t)row * K;
	float *w = a->selw + (size_t)row * K, mx = -FLT_MAX, sum = 0, wsum = 0, next = 0;
	for (int e = 0; e < E; e++)
		mx = fmaxf(mx, lg[e]);
	for (int e = 0; e < E; e++) {
		lg[e] = expf(lg[e] - mx);
		sum += lg[e];
	}
	for (int e = 0; e < E; e++)
		lg[e] /= sum;
	for (int k = 0; k < K; k++) { /* ties to the lower expert id */
		int best = -1;
		for (int e = 0; e < E; e++) {
			bool taken = false;
			for (int j = 0; j < k; j++)
				taken |= sel[j] == e;
			if (!taken && (best < 0 || lg[e] > lg[best]))
				best = e;
		}
		sel[k] = best;
		w[k] = lg[best];
		wsum += lg[best];
	}
	for (int e = 0; e < E; e++) {
		bool taken = false;
		for (int j = 0; j < K; j++)
			taken |= sel[j] == e;
		if (!taken)
			next = fmaxf(next, lg[e]);
	}
	a->gap[row] = K < E ? logf(w[K - 1]) - logf(next) : INFINITY;
	if (a->norm)
		for (int k = 0; k < K; k++)
			w[k] /= wsum;
	for (int i = 1; i < K; i++) /* insertion sort by expert id */
		for (int b = i; b > 0 && sel[b - 1] > sel[b]; b--) {
			int ts = sel[b];
			float tw = w[b];
			sel[b] = sel[b - 1];
			w[b] = w[b - 1];
			sel[b - 1] = ts;
			w[b - 1] = tw;
		}
}

/* ---- dispatch: three launches of ZK_DISPATCH_LANES-lane blocks ----
   COUNT (one block per slice of ZK_DISPATCH_SLICE selections): the slice's
   per-expert counts into hist[b][e]. SCAN (one block): offs = the exclusive
   scan over experts of the column sums; hist[b][e] becomes block b's first
   slot of expert e (offs[e] plus earlier slices' counts). PLACE (one block
   per slice): the slice's selections of expert e take hist[b][e] onward, in
   token order. Stable: an expert's rows keep token order across slices. Every
   count is an integer sum: the result is independent of the block count. */
enum { ZK_DISPATCH_COUNT, ZK_DISPATCH_SCAN, ZK_DISPATCH_PLACE };
#define ZK_DISPATCH_SLICE 1024

ZP_HD int zk_dispatch_blocks(int nk)
{
	return nk > 0 ? (nk + ZK_DISPATCH_SLICE - 1) / ZK_DISPATCH_SLICE : 1;
}

ZP_HD void zk_dispatch_count(const zk_dispatch *a, int b, int lane)
{
	int i0 = b * ZK_DISPATCH_SLICE, i1 = i0 + ZK_DISPATCH_SLICE < a->nk ? i0 + ZK_DISPATCH_SLICE : a->nk;
	for (int e = lane; e < a->E; e += ZK_DISPATCH_LANES) {
		int c = 0;
		for (int i = i0; i < i1; i++)
			c += a->sel[i] == e;
		a->hist[(size_t)b * a->E + e] = c;
	}
}

/* lanes over experts, then lane 0 over experts for the running offsets */
ZP_HD void zk_dispatch_sum(const zk_dispatch *a, int lane)
{
	int nb = zk_dispatch_blocks(a->nk);
	for (int e = lane; e < a->E; e += ZK_DISPATCH_LANES) {
		int c = 0;
		for (int b = 0; b < nb; b++)
			c += a->hist[(size_t)b * a->E + e];
		a->offs[e + 1] = c;
	}
}

ZP_HD void zk_dispatch_scan(const zk_dispatch *a)
{
	a->offs[0] = 0;
	for (int e = 0; e < a->E; e++)
		a->offs[e + 1] += a->offs[e];
}

ZP_HD void zk_dispatch_starts(const zk_dispatch *a, int lane)
{
	int nb = zk_dispatch_blocks(a->nk);
	for (int e = lane; e < a->E; e += ZK_DISPATCH_LANES) {
		int at = a->offs[e];
		for (int b = 0; b < nb; b++) {
			int c = a->hist[(size_t)b * a->E + e];
			a->hist[(size_t)b * a->E + e] = at;
			at += c;
		}
	}
}

/* expert e's slots of slice b in token order: stable */
ZP_HD void zk_dispatch_place(const zk_dispatch *a, int b, int lane)
{
	int i0 = b * ZK_DISPATCH_SLICE, i1 = i0 + ZK_DISPATCH_SLICE < a->nk ? i0 + ZK_DISPATCH_SLICE : a->nk;
	for (int e = lane; e < a->E; e += ZK_DISPATCH_LANES) {
		int slot = a->hist[(size_t)b * a->E + e];
		for (int i = i0; i < i1; i++)
			if (a->sel[i] == e)
				a->slot_row[i] = slot++;
	}
}

/* ---- row-parallel elementwise kernels: block = row ---- */

ZP_HD void zk_embed_lane(const zk_embed *a, int row, int lane)
{
	const float *e = a->table + (size_t)a->ids[row] * a->H;
	for (int i = lane; i < a->H; i += ZK_WARP)
		a->x[(size_t)row * a->ldx + i] = e[i];
}

/* 16 bytes a lane when the rows allow (every row of the activations: 64-byte
   aligned buffers, rows of a multiple of 16 bytes), else 2 */
typedef struct __attribute__((aligned(16))) { uint32_t w[4]; } zk_v16;

ZP_HD void zk_gather_lane(const zk_gather *a, int row, int lane)
{
	bool wide = a->row_u16 % 8 == 0 && ((uintptr_t)a->src | (uintptr_t)a->dst) % 16 == 0;
	for (int k = 0; k < a->K; k++) {
		uint16_t *d = a->dst + (size_t)a->slot_row[(size_t)row * a->K + k] * a->row_u16;
		const uint16_t *s = a->src + (size_t)row * a->row_u16;
		if (wide) {
			zk_v16 *dv = (zk_v16 *)d;
			const zk_v16 *sv = (const zk_v16 *)s;
			for (size_t i = (size_t)lane; i < a->row_u16 / 8; i += ZK_WARP)
				dv[i] = sv[i];
			continue;
		}
		for (size_t i = (size_t)lane; i < a->row_u16; i += ZK_WARP)
			d[i] = s[i];
	}
}

ZP_HD void zk_combine_lane(const zk_combine *a, int row, int lane)
{
	float *o = a->out + (size_t)row * a->ldo;
	for (int i = lane; i < a->cols; i += ZK_WARP) {
		float acc = 0;
		for (int k = 0; k < a->K; k++) {
			size_t s = (size_t)row * a->K + k;
			acc += a->y[(size_t)a->slot_row[s] * a->ldy + i] * a->selw[s];
		}
		o[i] = acc;
	}
}

/* residual: x += y (+ bias) */
ZP_HD void zk_residual_lane(const zk_vec *a, int row, int lane)
{
	float *x = a->x + (size_t)row * a->ldx;
	const float *y = a->y + (size_t)row * a->ldy;
	for (int i = lane; i < a->cols; i += ZK_WARP)
		x[i] += a->bias ? y[i] + a->bias[i] : y[i];
}

/* add_bias: x += bias */
ZP_HD void zk_bias_lane(const zk_vec *a, int row, int lane)
{
	float *x = a->x + (size_t)row * a->ldx;
	for (int i = lane; i < a->cols; i += ZK_WARP)
		x[i] += a->bias[i];
}

ZP_HD void zk_tobf16_lane(const zk_tobf16 *a, int row, int lane)
{
	for (int i = lane; i < a->cols; i += ZK_WARP)
		a->dst[(size_t)row * a->ldd + i] = zk_f32_to_bf16(a->src[(size_t)row * a->lds + i]);
}

/* c[j] = silu(gate j) * up j: gate at t[j], up at t[half + j] (gemm.c's formula) */
ZP_HD void zk_swiglu_lane(const zk_swiglu *a, int row, int lane)
{
	const float *t = a->t + (size_t)row * a->ldt;
	for (int j = lane; j < a->ncols; j += ZK_WARP)
		a->c[(size_t)row * a->ldc + j] = t[j] / (1.0f + expf(-t[j])) * t[a->half + j];
}

/* ---- log-prob rows: block = row; lanes walk the vocabulary in tiles of 32 ---- */

typedef struct { float m, s; } zk_lse_acc;

ZP_HD zk_lse_acc zk_lse_part(const zk_lse *a, int row, int lane)
{
	const float *lg = a->logits + (size_t)row * a->ld;
	zk_lse_acc r = { -INFINITY, 0 };
	for (int x = lane; x < a->V; x += ZK_WARP) {
		float v = lg[x];
		if (v > r.m) {
			r.s = r.s * expf(r.m - v) + 1.0f;
			r.m = v;
		} else {
			r.s += expf(v - r.m);
		}
	}
	return r;
}

/* symmetric: merge(a, b) == merge(b, a) bit for bit, so the butterfly leaves
   every lane with the same total */
ZP_HD zk_lse_acc zk_lse_merge(zk_lse_acc a, zk_lse_acc b)
{
	zk_lse_acc r;
	r.m = fmaxf(a.m, b.m);
	float ea = a.m == -INFINITY ? 0.0f : a.s * expf(a.m - r.m);
	float eb = b.m == -INFINITY ? 0.0f : b.s * expf(b.m - r.m);
	r.s = ea + eb;
	return r;
}

static inline zk_lse_acc zk_lse_bfly_host(zk_lse_acc v[ZK_WARP])
{
	for (int off = ZK_WARP / 2; off; off /= 2) {
		zk_lse_acc t[ZK_WARP];
		for (int l = 0; l < ZK_WARP; l++)
			t[l] = zk_lse_merge(v[l], v[l ^ off]);
		for (int l = 0; l < ZK_WARP; l++)
			v[l] = t[l];
	}
	return v[0];
}

/* the row's outputs given lse: candidates lane-strided; lane 0 the plp */
ZP_HD void zk_lse_out(const zk_lse *a, int row, float lse, int lane)
{
	const zk_lp_meta *mt = &a->meta[row];
	const float *lg = a->logits + (size_t)row * a->ld;
	float *o = a->outf + mt->out_off;
	for (int c = lane; c < mt->ncand; c += ZK_WARP)
		o[1 + c] = lg[a->cands[mt->cand_off + c]] - lse;
	if (lane == 0 && mt->has_plp)
		o[0] = lg[mt->next] - lse;
}

/* the rank: 1 + the tokens above next; each lane counts its strided share, the
   block sums the integers (the same count in any order), lane 0 writes it */
ZP_HD int zk_lse_rank_part(const zk_lse *a, int row, int lane)
{
	const zk_lp_meta *mt = &a->meta[row];
	const float *lg = a->logits + (size_t)row * a->ld;
	int above = 0;
	for (int v = lane; v < a->V && mt->has_rank; v += ZK_WARP)
		above += lg[v] > lg[mt->next];
	return above;
}

ZP_HD void zk_lse_rank_out(const zk_lse *a, int row, int above)
{
	if (a->meta[row].has_rank)
		a->outi[a->meta[row].rank_off] = above + 1;
}

/* ---- top-k: the k first ids in the order (logit descending, id ascending).
   Up to ZK_TOPK_SPLIT, each lane keeps the top-k of its strided share (ops.c's
   insertion: ids come in ascending order, so a tie keeps the lower id first)
   in shared memory and lane 0 merges the 32 sorted lists, the lower id first
   among equal heads: the same ids as one thread's insertion over the row
   (logits without NaN). Above ZK_TOPK_SPLIT lane 0 runs that insertion
   itself. ---- */
#define ZK_TOPK_SPLIT 32

typedef struct {
	int n, ids[ZK_TOPK_SPLIT];
} zk_topk_lane;

/* insert v into ids[0..*n) (capacity k): ops.c's insertion */
ZP_HD void zk_topk_insert(const float *lg, int *ids, int *n, int k, int v)
{
	if (*n == k && !(lg[v] > lg[ids[*n - 1]]))
		return;
	int j = *n < k ? (*n)++ : k - 1;
	while (j > 0 && lg[v] > lg[ids[j - 1]]) {
		ids[j] = ids[j - 1];
		j--;
	}
	ids[j] = v;
}

ZP_HD void zk_lse_topk_lane(const zk_lse *a, int row, int lane, zk_topk_lane *mine)
{
	const zk_lp_meta *mt = &a->meta[row];
	const float *lg = a->logits + (size_t)row * a->ld;
	int k = mt->top_k;
	mine->n = 0;
	if (!k || (k > ZK_TOPK_SPLIT && lane))
		return;
	if (k > ZK_TOPK_SPLIT) { /* lane 0 alone, into the output ids */
		int n = 0;
		for (int v = 0; v < a->V; v++)
			zk_topk_insert(lg, a->outi + mt->ids_off, &n, k, v);
		return;
	}
	for (int v = lane; v < a->V; v += ZK_WARP)
		zk_topk_insert(lg, mine->ids, &mine->n, k, v);
}

/* lane 0: the merge (split rows) and the top-k log-probs */
ZP_HD void zk_lse_topk_out(const zk_lse *a, int row, float lse, const zk_topk_lane *t)
{
	const zk_lp_meta *mt = &a->meta[row];
	const float *lg = a->logits + (size_t)row * a->ld;
	int k = mt->top_k, *ids = a->outi + mt->ids_off, at[ZK_WARP];
	if (!k)
		return;
	for (int l = 0; l < ZK_WARP; l++)
		at[l] = 0;
	for (int i = 0; i < k && k <= ZK_TOPK_SPLIT; i++) {
		int best = -1, bv = 0;
		for (int l = 0; l < ZK_WARP; l++) {
			if (at[l] == t[l].n)
				continue;
			int v = t[l].ids[at[l]];
			if (best < 0 || lg[v] > lg[bv] || (!(lg[v] < lg[bv]) && v < bv))
				best = l, bv = v;
		}
		if (best < 0) /* fewer than k entries (k > V is refused upstream) */
			break;
		ids[i] = bv;
		at[best]++;
	}
	for (int i = 0; i < k; i++)
		a->outf[mt->out_off + 1 + mt->ncand + i] = lg[ids[i]] - lse;
}

/* ---- pooling: one block; rows in order (backend_cpu.c's cpu_pool) ---- */

/* lane-strided columns of row p (normed by r) into acc (mean) or out (last) */
ZP_HD void zk_pool_row(const zk_pool *a, int p, float r, int lane)
{
	const float *x = a->x + (size_t)p * a->ldx;
	for (int i = lane; i < a->cols; i += ZK_WARP) {
		float v = a->w[i] * (x[i] * r);
		if (a->mean)
			a->acc[i] = (p ? a->acc[i] : 0.0) + v;
		else
			a->out[i] = v;
	}
}

ZP_HD void zk_pool_mean(const zk_pool *a, int lane)
{
	for (int i = lane; i < a->cols && a->mean; i += ZK_WARP)
		a->out[i] = (float)(a->acc[i] / a->n);
}

/* lane 0: the L2 scale, summed in double in column order */
ZP_HD float zk_pool_l2(const zk_pool *a)
{
	double ss = 0;
	for (int i = 0; i < a->cols; i++)
		ss += (double)a->out[i] * a->out[i];
	return 1.0f / fmaxf((float)sqrt(ss), 1e-12f);
}

ZP_HD void zk_pool_scale(const zk_pool *a, float inv, int lane)
{
	for (int i = lane; i < a->cols; i += ZK_WARP)
		a->out[i] *= inv;
}

/* ---- the GEMM twin (sim; a device reference): c[row][j] over the device
   weight layout w [N][kp] row-major; gemm.c's plain-C order ---- */

ZP_HD float zk_gemm_dot(const void *a, bool bf16, const void *w, int kp)
{
	float acc = 0.0f;
	if (!bf16) {
		const float *x = (const float *)a, *y = (const float *)w;
		for (int k = 0; k < kp; k++)
			acc = fmaf(x[k], y[k], acc);
		return acc;
	}
	const uint16_t *x = (const uint16_t *)a, *y = (const uint16_t *)w;
	for (int k = 0; k < kp; k += 2) {
		acc = fmaf(zk_bf16_to_f32(x[k + 1]), zk_bf16_to_f32(y[k + 1]), acc);
		acc = fmaf(zk_bf16_to_f32(x[k]), zk_bf16_to_f32(y[k]), acc);
	}
	return acc;
}

#endif

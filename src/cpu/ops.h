/* ops.h -- the CPU backend's row kernels: one row (or one vector) at a time,
   no threads, no allocation; backend_cpu.c runs them over its pool. Each row's
   sums run in one fixed order (batch invariance, backend.h). The AVX512 paths
   and their plain-C fallbacks give the same bits where noted. */
#ifndef ZP_OPS_H
#define ZP_OPS_H

#include <stdbool.h>
#include <stdint.h>

/* out[i] = w[i] * (x[i] * rsqrt(mean(x^2) + eps)): sum of squares in double,
   8 lanes summed in a fixed order (out may be x). */
void zp_ops_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* bf16 round to nearest even; the AVX512 path and the plain one agree bit for bit */
void zp_ops_to_bf16(uint16_t *dst, const float *src, int n);
/* One head vector v[d] in place: rmsnorm with w, then rotate_half RoPE with
   cs, sn [d / 2]. d <= 2048. */
void zp_ops_norm_rope(float *v, const float *w, int d, float eps, const float *cs,
		      const float *sn);
/* One router row (see backend.h route); lg[E] becomes the probabilities. */
void zp_ops_route(float *lg, int E, int K, bool norm_topk, int *sel, float *w, float *gap);
/* log sum_x exp(lg[x]) in f32, 16 lanes in a fixed order */
float zp_ops_logsumexp(const float *lg, int V);
/* the k largest of lg[V] (ties to the lower id) and lg - lse */
void zp_ops_top_k(const float *lg, int V, float lse, int k, int32_t *ids, float *lp);

#endif

/* bench_siblings.c -- a /v1/score-like job (one query of Q tokens, N items of
   I tokens each, 2 label candidates at the end of every sequence) through one
   forward, three ways side by side, alternated round by round so machine
   noise falls on all: `none` (no prefix reuse: the query computed N times),
   `siblings` (no cache: the query once per forward, the items attend to it)
   and `cache` (siblings plus a warm prefix cache: the query's blocks come
   from the cache). Prints each way's best and median seconds, the speed-ups
   over `none`, and whether every way's outputs are the same bits.
     build/bench_siblings MODEL_DIR [Q=1024] [N=20] [I=16] [ROUNDS=5] [THREADS=2] [fp32|bf16]
   One run; not part of make test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "util.h"

enum { NONE, SIBLINGS, CACHE, WAYS };
static const char *way_name[WAYS] = { "none", "siblings", "cache" };

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s MODEL_DIR [Q] [N] [I] [ROUNDS] [THREADS] [fp32|bf16]\n",
			argv[0]);
		return 2;
	}
	int Q = argc > 2 ? atoi(argv[2]) : 1024, N = argc > 3 ? atoi(argv[3]) : 20;
	int I = argc > 4 ? atoi(argv[4]) : 16, R = argc > 5 ? atoi(argv[5]) : 5;
	int th = argc > 6 ? atoi(argv[6]) : 2;
	enum zp_wtype wt = argc > 7 && !strcmp(argv[7], "bf16") ? ZP_W_BF16 : ZP_W_F32;
	zp_model m;
	zp_err e;
	zp_log_min = ZP_LOG_WARN;
	if (Q < 1 || N < 1 || N > ZP_FWD_SEQS_MAX || I < 1 || R < 1 || th < 1)
		return fprintf(stderr, "bad sizes\n"), 2;
	if (zp_model_load(&m, argv[1], wt, zp_device_layout(ZP_DEV_CPU), th, NULL, &e))
		return fprintf(stderr, "%s\n", e.msg), 1;
	int L = Q + I, T = N * L;
	int32_t *ids = zp_xmalloc((size_t)L * sizeof *ids), cands[2] = { 3, 9 };
	zp_req *req[WAYS] = { 0 };
	zp_req *p[WAYS][ZP_FWD_SEQS_MAX];
	srand(1);
	for (int w = 0; w < WAYS; w++)
		req[w] = zp_xcalloc((size_t)N, sizeof *req[w]);
	for (int i = 0; i < Q; i++)
		ids[i] = rand() % m.cfg.vocab;
	for (int s = 0; s < N; s++) {
		for (int i = Q; i < L; i++)
			ids[i] = rand() % m.cfg.vocab;
		for (int w = 0; w < WAYS; w++) {
			zp_req_error err;
			zp_req_init(&req[w][s], NULL);
			req[w][s].plp_start = -1;
			ZP_ASSERT(!zp_req_set_tokens(&req[w][s], ids, L, &err) &&
				  !zp_req_set_cands(&req[w][s], cands, 2, &err));
			p[w][s] = &req[w][s];
		}
	}
	zp_fwd *f[WAYS];
	for (int w = 0; w < WAYS; w++) {
		f[w] = zp_fwd_new_cpu(&m, th, T);
		if (w != NONE) /* the cache: room for the query and every item */
			zp_fwd_set_prefix(f[w], w == CACHE ? (size_t)(T / ZP_KV_BLOCK + 1) *
				zp_kv_block_bytes(m.cfg.layers, m.cfg.kv_heads * m.cfg.head_dim) : 0, true);
		ZP_ASSERT(zp_fwd_run(f[w], p[w], N, NULL) == 0); /* warm-up (and the cache) */
	}
	double *t[WAYS];
	for (int w = 0; w < WAYS; w++)
		t[w] = zp_xcalloc((size_t)R, sizeof(double));
	long computed[WAYS];
	for (int r = 0; r < R; r++)
		for (int w = 0; w < WAYS; w++) {
			double t0 = zp_now_s();
			ZP_ASSERT(zp_fwd_run(f[w], p[w], N, NULL) == 0);
			t[w][r] = zp_now_s() - t0;
			computed[w] = zp_fwd_last_stats(f[w]).computed_tokens;
		}
	bool same = true;
	for (int w = 1; w < WAYS; w++)
		for (int s = 0; s < N; s++)
			same &= !memcmp(req[w][s].cand_lp, req[NONE][s].cand_lp, 2 * sizeof(float));
	double best[WAYS], med[WAYS];
	for (int w = 0; w < WAYS; w++) {
		qsort(t[w], (size_t)R, sizeof(double), cmp_d);
		best[w] = t[w][0];
		med[w] = R % 2 ? t[w][R / 2] : (t[w][R / 2 - 1] + t[w][R / 2]) / 2;
		printf("way=%s computed_tokens=%ld best_s=%.4f median_s=%.4f\n", way_name[w],
		       computed[w], best[w], med[w]);
	}
	printf("model=%s dtype=%s query=%d items=%d item_tokens=%d threads=%d rounds=%d\n", argv[1],
	       wt == ZP_W_F32 ? "fp32" : "bf16", Q, N, I, th, R);
	printf("speedup_siblings=%.2f (median %.2f) speedup_cache=%.2f (median %.2f) "
	       "outputs_bitwise_equal=%s\n", best[NONE] / best[SIBLINGS], med[NONE] / med[SIBLINGS],
	       best[NONE] / best[CACHE], med[NONE] / med[CACHE], same ? "yes" : "NO");
	for (int w = 0; w < WAYS; w++) {
		for (int s = 0; s < N; s++)
			zp_req_free(&req[w][s]);
		free(req[w]);
		free(t[w]);
		zp_fwd_free(f[w]);
	}
	free(ids);
	zp_model_free(&m);
	return same ? 0 : 1;
}

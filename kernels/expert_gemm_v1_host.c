/* expert_gemm_v1_host.c -- the host twin of the v1 grouped expert GEMM: the
   device kernel's tile list, B-tile row map and epilogue (expert_gemm_v1.h) run
   tile by tile on plain threads, for the sim device and for tests on machines
   without a GPU. Each call starts and joins its own threads; the caller's
   thread owns every buffer during the call. */
#include <pthread.h>
#include <stdlib.h>

#include "expert_gemm_v1.h"

typedef struct {
	const uint16_t *w, *a;
	const int *offs, *tp;
	size_t lda, ldc;
	float *c;
	int ne, N, K, epi, ntn, nthreads, id;
} ev1_job;

/* One tile: acc[r][n] over k ascending, then the epilogue of rows [m0, mend). */
static void ev1_tile(const ev1_job *j, int t, float *acc, float *arow)
{
	int ti = t / j->ntn, nt = t % j->ntn;
	int e = zp_ev1_tile_expert(j->tp, j->ne, ti);
	int m0 = j->offs[e] + (ti - j->tp[e]) * ZP_EV1_BM;
	int mend = j->offs[e + 1];
	int rows = mend - m0 < ZP_EV1_BM ? mend - m0 : ZP_EV1_BM;
	const uint16_t *we = j->w + (size_t)e * j->N * j->K;
	for (int m = 0; m < rows; m++) {
		const uint16_t *ar = j->a + (size_t)(m0 + m) * j->lda;
		for (int k = 0; k < j->K; k++)
			arow[k] = zp_v1_bf16_f32(ar[k]);
		for (int r = 0; r < ZP_EV1_BN; r++) {
			int wr = zp_ev1_wrow(j->epi, nt, r, j->N);
			float s = 0.0f;
			if (wr >= 0) {
				const uint16_t *wk = we + (size_t)wr * j->K;
				for (int k = 0; k < j->K; k++)
					s += arow[k] * zp_v1_bf16_f32(wk[k]);
			}
			acc[m * ZP_EV1_BN + r] = s;
		}
	}
	for (int m = 0; m < rows; m++) {
		float *cr = j->c + (size_t)(m0 + m) * j->ldc;
		const float *ac = acc + m * ZP_EV1_BN;
		if (j->epi != ZP_KV1_EPI_SWIGLU) {
			for (int r = 0; r < ZP_EV1_BN; r++)
				if (zp_ev1_wrow(j->epi, nt, r, j->N) >= 0)
					cr[nt * ZP_EV1_BN + r] = ac[r];
			continue;
		}
		for (int wc = 0; wc < ZP_EV1_BN / 32; wc++)
			for (int cc = 0; cc < 16; cc++) {
				int col = zp_ev1_swiglu_col(nt, wc, cc);
				if (col < j->N / 2)
					cr[col] = zp_ev1_silu_mul(ac[wc * 32 + cc], ac[wc * 32 + 16 + cc]);
			}
	}
}

static void *ev1_thread(void *arg)
{
	const ev1_job *j = arg;
	float *acc = malloc(sizeof(float) * ZP_EV1_BM * ZP_EV1_BN);
	float *arow = malloc(sizeof(float) * (size_t)j->K);
	if (!acc || !arow)
		abort();	/* a few hundred KB: out of memory is fatal, as alloc */
	int tiles = j->tp[j->ne] * j->ntn;
	for (int t = j->id; t < tiles; t += j->nthreads)
		ev1_tile(j, t, acc, arow);
	free(acc);
	free(arow);
	return NULL;
}

int zp_kv1_expert_gemm_host(int nthreads, const uint16_t *w, int e0, int e1, const int *offs,
			    const uint16_t *a, size_t lda, float *c, size_t ldc,
			    enum zp_kv1_epi epi, int N, int K)
{
	int ne = e1 - e0;
	if (ne <= 0 || ne > ZP_EV1_EXPERTS_MAX || N % 16 || K % 8 || nthreads < 1)
		abort();	/* the contract of v1.h: a caller bug */
	int *tp = malloc(sizeof(int) * (size_t)(ne + 1));
	ev1_job *jobs = malloc(sizeof(ev1_job) * (size_t)nthreads);
	pthread_t *th = malloc(sizeof(pthread_t) * (size_t)nthreads);
	if (!tp || !jobs || !th)
		abort();
	zp_ev1_tile_prefix(offs, ne, tp);
	int rc = 0, started = 0;
	for (int i = 0; i < nthreads; i++) {
		jobs[i] = (ev1_job){ .w = w, .a = a, .offs = offs, .tp = tp, .lda = lda, .ldc = ldc,
				     .c = c, .ne = ne, .N = N, .K = K, .epi = (int)epi,
				     .ntn = zp_ev1_ntiles((int)epi, N), .nthreads = nthreads, .id = i };
		if (i == 0)
			continue;
		if (pthread_create(&th[i], NULL, ev1_thread, &jobs[i]) != 0) {
			rc = -1;
			break;
		}
		started = i;
	}
	if (rc == 0)
		ev1_thread(&jobs[0]);
	for (int i = 1; i <= started; i++)
		pthread_join(th[i], NULL);
	free(tp);
	free(jobs);
	free(th);
	return rc;
}

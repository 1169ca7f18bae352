/* expert_gemm_v1_host.c -- the host twin of the v1 grouped expert GEMM: the
   device kernel (expert_gemm_v1.cu) played block by block, warp by warp,
   lane by lane on plain threads, for the sim device and for tests on machines
   without a GPU. Each block runs the kernel's own per-lane address functions
   (expert_gemm_v1.h) and its instructions through their models
   (v1_warp.h: cp.async with its groups, ldmatrix .x4, mma.sync m16n8k16).
   Each call starts and joins its own threads; the caller's thread owns every
   buffer during the call. Owns zp_v1_mutate (v1_common.h), the test's switch. */
#include <pthread.h>
#include <stdlib.h>

#include "expert_gemm_v1.h"
#include "v1_warp.h"

int zp_v1_mutate;

typedef struct {
	const uint16_t *w, *a;
	const int *offs, *tp;
	size_t lda, ldc;
	float *c;
	int ne, N, K, epi, ntn, nthreads, id;
} ev1_job;

/* Shared memory: sa[2][BM * LDS] then sb[2][BN * LDS], as the kernel's. */
#define EV1_SB (2 * ZP_EV1_STAGE_A)
#define EV1_SMEM (2 * ZP_EV1_STAGE_A + 2 * ZP_EV1_STAGE_B)

/* A thread's copy sources (the kernel's asrc, aok, bsrc, bok). */
typedef struct {
	const uint16_t *asrc[ZP_EV1_CP], *bsrc[ZP_EV1_CP];
	int aok[ZP_EV1_CP], bok[ZP_EV1_CP];
} ev1_lane_src;

/* One block's shared memory, cp.async queues and registers. */
typedef struct {
	uint16_t smem[EV1_SMEM];
	zp_v1_cp_thread cp[ZP_EV1_THREADS];
	ev1_lane_src ls[ZP_EV1_THREADS];
	float acc[ZP_EV1_THREADS / 32][4][4][ZP_V1_LANES][4];	/* [warp][mi][ni][lane][q] */
	uint32_t af[4][ZP_V1_LANES][4], bf[4][ZP_V1_LANES][2];	/* one warp's fragments */
} ev1_block;

/* The kernel's load(kt, s) for thread tid: its chunks' cp.async, one group. */
static void ev1_load(const ev1_job *j, ev1_block *b, const ev1_lane_src *ls, int tid, int kt,
		     int s)
{
	int k0 = kt * ZP_EV1_BK;
	for (int i = 0; i < ZP_EV1_CP; i++) {
		int kin = k0 + zp_ev1_cp_k(tid, i) < j->K;
		uint32_t d = (uint32_t)zp_ev1_cp_smem(tid, i);
		zp_v1_cp_async16(&b->cp[tid], d + (uint32_t)(s * ZP_EV1_STAGE_A),
				 ls->asrc[i] + (kin ? k0 : 0), ls->aok[i] && kin ? 16 : 0);
		zp_v1_cp_async16(&b->cp[tid], EV1_SB + d + (uint32_t)(s * ZP_EV1_STAGE_B),
				 ls->bsrc[i] + (kin ? k0 : 0), ls->bok[i] && kin ? 16 : 0);
	}
	zp_v1_cp_commit(&b->cp[tid]);
}

/* Warp warp's k step ks of stage s: its ldmatrix and mma, lane by lane. */
static void ev1_warp_step(ev1_block *b, int warp, int s, int ks)
{
	int wm = warp % 2, wn = warp / 2;
	uint32_t addr[ZP_V1_LANES], r[ZP_V1_LANES][4];
	for (int mi = 0; mi < 4; mi++) {
		for (int l = 0; l < ZP_V1_LANES; l++)
			addr[l] = (uint32_t)(zp_ev1_a_lane(wm, l) + s * ZP_EV1_STAGE_A +
					     zp_ev1_a_step(mi, ks));
		zp_v1_ldmatrix_x4(b->smem, 2 * ZP_EV1_STAGE_A, addr, 0, b->af[mi]);
	}
	for (int pr = 0; pr < 2; pr++) {
		for (int l = 0; l < ZP_V1_LANES; l++)
			addr[l] = (uint32_t)(zp_ev1_b_lane(wn, l) + s * ZP_EV1_STAGE_B +
					     zp_ev1_b_step(pr, ks));
		zp_v1_ldmatrix_x4(b->smem + EV1_SB, 2 * ZP_EV1_STAGE_B, addr, 0, r);
		for (int l = 0; l < ZP_V1_LANES; l++) {
			b->bf[2 * pr][l][0] = r[l][0];
			b->bf[2 * pr][l][1] = r[l][1];
			b->bf[2 * pr + 1][l][0] = r[l][2];
			b->bf[2 * pr + 1][l][1] = r[l][3];
		}
	}
	for (int mi = 0; mi < 4; mi++)
		for (int ni = 0; ni < 4; ni++)
			zp_v1_mma_bf16(b->acc[warp][mi][ni], b->af[mi], b->bf[ni]);
}

/* The kernel's epilogue for lane l of warp warp. */
static void ev1_epilogue(const ev1_job *j, ev1_block *b, int warp, int l, int nt, int m0,
			 int mend)
{
	int wm = warp % 2, wn = warp / 2;
	for (int mi = 0; mi < 4; mi++)
		for (int h = 0; h < 2; h++) {
			int row = m0 + zp_ev1_c_row(wm, mi, l, h);
			if (row >= mend)
				continue;
			float *cr = j->c + (size_t)row * j->ldc;
			for (int ni = 0; ni < (j->epi == ZP_KV1_EPI_SWIGLU ? 2 : 4); ni++) {
				const float *g = b->acc[warp][mi][ni][l];
				if (j->epi == ZP_KV1_EPI_SWIGLU) {
					const float *u = b->acc[warp][mi][ni + 2][l];
					int col = zp_ev1_swiglu_col(nt, wn, zp_ev1_c_col(ni, l));
					if (col < j->N / 2) {
						cr[col] = zp_ev1_silu_mul(g[2 * h], u[2 * h]);
						cr[col + 1] = zp_ev1_silu_mul(g[2 * h + 1], u[2 * h + 1]);
					}
				} else {
					int col = nt * ZP_EV1_BN + wn * 32 + zp_ev1_c_col(ni, l);
					if (col < j->N) {
						cr[col] = g[2 * h];
						cr[col + 1] = g[2 * h + 1];
					}
				}
			}
		}
}

/* Block (blockIdx.x = nt, blockIdx.y = ti) of tile t, phase by phase between
   the kernel's __syncthreads: every thread's copies and waits, then every
   warp's k steps. */
static void ev1_tile(const ev1_job *j, ev1_block *b, int t)
{
	int ti = t / j->ntn, nt = t % j->ntn;
	int e = zp_ev1_tile_expert(j->tp, j->ne, ti);
	int m0 = j->offs[e] + (ti - j->tp[e]) * ZP_EV1_BM;
	int mend = j->offs[e + 1];
	const uint16_t *we = j->w + (size_t)e * j->N * j->K;
	ev1_lane_src *ls = b->ls;
	for (int tid = 0; tid < ZP_EV1_THREADS; tid++) {
		for (int i = 0; i < ZP_EV1_CP; i++) {
			int r = zp_ev1_cp_row(tid, i), ck = zp_ev1_cp_k(tid, i);
			int ar = zp_ev1_a_row(m0, mend, r);
			ls[tid].aok[i] = ar >= 0;
			ls[tid].asrc[i] = j->a + (size_t)(ar >= 0 ? ar : m0) * j->lda + ck;
			int wr = zp_ev1_wrow(j->epi, nt, r, j->N);
			ls[tid].bok[i] = wr >= 0;
			ls[tid].bsrc[i] = we + (size_t)(wr >= 0 ? wr : 0) * j->K + ck;
		}
		b->cp[tid].n = b->cp[tid].open = 0;
	}
	zp_v1_smem_poison(b->smem, EV1_SMEM);
	memset(b->acc, 0, sizeof(b->acc));
	int nk = (j->K + ZP_EV1_BK - 1) / ZP_EV1_BK;
	for (int tid = 0; tid < ZP_EV1_THREADS; tid++)
		ev1_load(j, b, &ls[tid], tid, 0, 0);
	for (int kt = 0; kt < nk; kt++) {
		int s = kt & 1;
		for (int tid = 0; tid < ZP_EV1_THREADS; tid++) {
			if (kt + 1 < nk)
				ev1_load(j, b, &ls[tid], tid, kt + 1, s ^ 1);
			zp_v1_cp_wait(&b->cp[tid], kt + 1 < nk ? ZP_EV1_WAIT_AHEAD : 0, b->smem,
				      EV1_SMEM);
		}
		/* __syncthreads */
		for (int ks = 0; ks < ZP_EV1_BK; ks += 16)
			for (int warp = 0; warp < ZP_EV1_THREADS / 32; warp++)
				ev1_warp_step(b, warp, s, ks);
		/* __syncthreads */
	}
	for (int warp = 0; warp < ZP_EV1_THREADS / 32; warp++)
		for (int l = 0; l < ZP_V1_LANES; l++)
			ev1_epilogue(j, b, warp, l, nt, m0, mend);
}

static void *ev1_thread(void *arg)
{
	const ev1_job *j = arg;
	ev1_block *b = malloc(sizeof(*b));
	if (!b)
		abort();	/* a few hundred KB: out of memory is fatal, as alloc */
	int tiles = j->tp[j->ne] * j->ntn;
	for (int t = j->id; t < tiles; t += j->nthreads)
		ev1_tile(j, b, t);
	free(b);
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

/* attention_v1_host.c -- the host twin of the v1 attention: the device
   kernel (attention_v1.cu) played block by block, warp by warp, lane by lane
   on plain threads, for the sim device and for tests on machines without a
   GPU. Each block runs the kernel's own per-lane address functions
   (attention_v1.h), its shuffles as reads of the partner lane, and its
   ldmatrix (.trans) and mma.sync through their models (v1_warp.h). Each call
   starts and joins its own threads. */
#include <pthread.h>
#include <stdlib.h>

#include "attention_v1.h"
#include "v1_warp.h"

#define W 4	/* warps of a block */
#define L ZP_V1_LANES
#define DMAX 128

typedef struct {
	int heads, kv_heads, d, nseq, qtiles;
	const int *seq_start;
	const float *qkv;
	size_t ld_qkv, ld_out;
	float *out;
	const zp_kv1_src *prefix;
	int nthreads, id;
} av1_job;

/* One block's shared memory and every lane's registers ([warp][tile][lane][q]
   so that a warp's fragment is the [lane][q] array the models take). */
typedef struct {
	uint16_t ks[ZP_AV1_BKV * ZP_AV1_LDS(DMAX)], vs[ZP_AV1_BKV * ZP_AV1_LDS(DMAX)];
	uint32_t qf[W][DMAX / 16][L][4];
	float o[W][DMAX / 8][L][4];
	float sc[W][ZP_AV1_BKV / 8][L][4];
	float m[W][L][2], l[W][L][2];
} av1_block;

/* The kernel's av1_load_tile, thread by thread. */
static void av1_load_tile(const av1_job *jb, av1_block *b, int r0, int len,
			  const zp_kv1_src *pre, int kvh, int j)
{
	int d = jb->d;
	for (int tid = 0; tid < ZP_AV1_THREADS; tid++)
		for (int idx = tid; idx < ZP_AV1_BKV * d / 4; idx += ZP_AV1_THREADS) {
			int c = zp_av1_ld_key(idx, d), x = zp_av1_ld_col(idx, d);
			int kp = j * ZP_AV1_BKV + c;
			for (int v = 0; v < 2; v++) {
				const float *src = zp_av1_kv_row(jb->qkv, jb->ld_qkv, jb->heads,
								 jb->kv_heads, d, r0, len, pre, kvh,
								 kp, v);
				uint16_t *dst = (v ? b->vs : b->ks) + zp_av1_soff(c, x, d);
				for (int e = 0; e < 4; e += 2) {
					uint32_t pk = src ? zp_av1_pack(src[x + e], src[x + e + 1]) : 0;
					dst[e] = (uint16_t)pk;
					dst[e + 1] = (uint16_t)(pk >> 16);
				}
			}
		}
}

/* Warp w's S = Q K^T of the tile in ks. */
static void av1_scores(const av1_job *jb, av1_block *b, int w)
{
	int d = jb->d;
	uint32_t addr[L], r[L][4], b01[L][2], b23[L][2];
	memset(b->sc[w], 0, sizeof(b->sc[w]));
	for (int kc = 0; kc < d / 16; kc++)
		for (int pr = 0; pr < ZP_AV1_BKV / 16; pr++) {
			for (int l = 0; l < L; l++)
				addr[l] = (uint32_t)(zp_av1_k_lane(l, d) + zp_av1_k_step(pr, kc, d));
			zp_v1_ldmatrix_x4(b->ks, (size_t)ZP_AV1_BKV * ZP_AV1_LDS(d), addr, 0, r);
			for (int l = 0; l < L; l++) {
				b01[l][0] = r[l][0], b01[l][1] = r[l][1];
				b23[l][0] = r[l][2], b23[l][1] = r[l][3];
			}
			zp_v1_mma_bf16(b->sc[w][2 * pr], b->qf[w][kc], b01);
			zp_v1_mma_bf16(b->sc[w][2 * pr + 1], b->qf[w][kc], b23);
		}
}

/* Warp w's online softmax of key tile j, lane by lane as the kernel; its
   __shfl_xor_sync reads the partner lane's value of the same step. */
static void av1_softmax(const av1_job *jb, av1_block *b, int w, int j, int plen, int i0)
{
	float mx[L][2], corr[L][2], t[L][2];
	float sl2 = zp_av1_scale_log2(jb->d);
	for (int l = 0; l < L; l++) {
		mx[l][0] = mx[l][1] = -INFINITY;
		for (int nt = 0; nt < ZP_AV1_BKV / 8; nt++)
			for (int q = 0; q < 4; q++) {
				float *v = &b->sc[w][nt][l][q];
				int kp = j * ZP_AV1_BKV + zp_av1_c_col(nt, l) + (q & 1);
				int qpos = plen + i0 + zp_av1_c_row(w, l, q >> 1);
				*v = kp <= qpos ? *v * sl2 : -INFINITY;
				mx[l][q >> 1] = fmaxf(mx[l][q >> 1], *v);
			}
	}
	for (int x = 1; x <= 2; x <<= 1) {
		for (int l = 0; l < L; l++)
			for (int r = 0; r < 2; r++)
				t[l][r] = fmaxf(mx[l][r], mx[l ^ x][r]);
		memcpy(mx, t, sizeof(mx));
	}
	for (int l = 0; l < L; l++) {
		float rs[2] = { 0.0f, 0.0f };
		for (int r = 0; r < 2; r++) {
			float mn = zp_av1_max_ref(b->m[w][l][r], mx[l][r]);
			corr[l][r] = exp2f(b->m[w][l][r] - mn);
			b->m[w][l][r] = mn;
		}
		for (int nt = 0; nt < ZP_AV1_BKV / 8; nt++) {
			float *v = b->sc[w][nt][l];
			for (int q = 0; q < 4; q++)
				v[q] = zp_av1_round_bf16(exp2f(v[q] - b->m[w][l][q >> 1]));
			rs[0] += v[0] + v[1];
			rs[1] += v[2] + v[3];
		}
		for (int r = 0; r < 2; r++)
			b->l[w][l][r] = b->l[w][l][r] * corr[l][r] + rs[r];
		for (int dt = 0; dt < jb->d / 8; dt++)
			for (int q = 0; q < 4; q++)
				b->o[w][dt][l][q] *= corr[l][q >> 1];
	}
}

/* Warp w's O += P V of the tile in vs. */
static void av1_pv(const av1_job *jb, av1_block *b, int w)
{
	int d = jb->d;
	uint32_t addr[L], r[L][4], b01[L][2], b23[L][2], pa[L][4];
	for (int kc = 0; kc < ZP_AV1_BKV / 16; kc++) {
		for (int l = 0; l < L; l++)
			zp_av1_p_frag(b->sc[w][2 * kc][l], b->sc[w][2 * kc + 1][l], pa[l]);
		for (int dq = 0; dq < d / 16; dq++) {
			for (int l = 0; l < L; l++)
				addr[l] = (uint32_t)(zp_av1_v_lane(l, d) + zp_av1_v_step(kc, dq, d));
			zp_v1_ldmatrix_x4(b->vs, (size_t)ZP_AV1_BKV * ZP_AV1_LDS(d), addr, 1, r);
			for (int l = 0; l < L; l++) {
				b01[l][0] = r[l][0], b01[l][1] = r[l][1];
				b23[l][0] = r[l][2], b23[l][1] = r[l][3];
			}
			zp_v1_mma_bf16(b->o[w][2 * dq], pa, b01);
			zp_v1_mma_bf16(b->o[w][2 * dq + 1], pa, b23);
		}
	}
}

/* Block (qt, s, h): Q fragments, then key tile after key tile (each tile
   loaded by every thread, then every warp's S, softmax and P V: the phases
   between the kernel's __syncthreads), then the row sums and the output. */
static void av1_block_run(const av1_job *jb, av1_block *b, int s, int h, int qt)
{
	int d = jb->d, r0 = jb->seq_start[s], len = jb->seq_start[s + 1] - r0;
	int i0 = qt * ZP_AV1_BQ;
	if (i0 >= len)
		return;
	const zp_kv1_src *pre = jb->prefix ? &jb->prefix[s] : NULL;
	int plen = pre ? pre->len : 0;
	int kvh = h / (jb->heads / jb->kv_heads);
	int iend = len < i0 + ZP_AV1_BQ ? len : i0 + ZP_AV1_BQ;
	int tiles = zp_av1_key_tiles(plen, iend);
	zp_v1_smem_poison(b->ks, sizeof(b->ks) / 2);
	zp_v1_smem_poison(b->vs, sizeof(b->vs) / 2);
	for (int w = 0; w < W; w++)
		for (int l = 0; l < L; l++) {
			for (int kc = 0; kc < d / 16; kc++)
				for (int q = 0; q < 4; q++) {
					int row = i0 + zp_av1_q_row(w, l, q), col = zp_av1_q_col(kc, l, q);
					const float *v = jb->qkv + (size_t)(r0 + row) * jb->ld_qkv +
							 (size_t)h * d + col;
					b->qf[w][kc][l][q] = row < len ? zp_av1_pack(v[0], v[1]) : 0;
				}
			for (int dt = 0; dt < d / 8; dt++)
				for (int q = 0; q < 4; q++)
					b->o[w][dt][l][q] = 0.0f;
			b->m[w][l][0] = b->m[w][l][1] = -INFINITY;
			b->l[w][l][0] = b->l[w][l][1] = 0.0f;
		}
	for (int j = 0; j < tiles; j++) {
		av1_load_tile(jb, b, r0, len, pre, kvh, j);
		for (int w = 0; w < W; w++) {
			av1_scores(jb, b, w);
			av1_softmax(jb, b, w, j, plen, i0);
			av1_pv(jb, b, w);
		}
	}
	for (int w = 0; w < W; w++) {
		float lb[L][2], lt[L][2];
		for (int l = 0; l < L; l++)
			for (int r = 0; r < 2; r++)
				lb[l][r] = b->l[w][l][r] + b->l[w][l ^ 1][r];
		for (int l = 0; l < L; l++)
			for (int r = 0; r < 2; r++)
				lt[l][r] = lb[l][r] + lb[l ^ 2][r];	/* (l0 + l1) + (l2 + l3) */
		for (int l = 0; l < L; l++)
			for (int r = 0; r < 2; r++) {
				int row = i0 + zp_av1_c_row(w, l, r);
				if (row >= len)
					continue;
				float *orow = jb->out + (size_t)(r0 + row) * jb->ld_out + (size_t)h * d;
				for (int dt = 0; dt < d / 8; dt++) {
					orow[zp_av1_c_col(dt, l)] = b->o[w][dt][l][2 * r] / lt[l][r];
					orow[zp_av1_c_col(dt, l) + 1] =
						b->o[w][dt][l][2 * r + 1] / lt[l][r];
				}
			}
	}
}

static void *av1_thread(void *arg)
{
	const av1_job *jb = arg;
	av1_block *b = malloc(sizeof(*b));
	if (!b)
		abort();	/* ~200 KB: out of memory is fatal, as alloc */
	long blocks = (long)jb->nseq * jb->heads * jb->qtiles;
	for (long i = jb->id; i < blocks; i += jb->nthreads) {
		int qt = (int)(i % jb->qtiles);
		int h = (int)(i / jb->qtiles % jb->heads);
		int s = (int)(i / jb->qtiles / jb->heads);
		av1_block_run(jb, b, s, h, qt);
	}
	free(b);
	return NULL;
}

int zp_kv1_attention_host(int nthreads, int heads, int kv_heads, int d, int nseq,
			  const int *seq_start, const float *qkv, size_t ld_qkv, float *out,
			  size_t ld_out, const zp_kv1_src *prefix)
{
	if (nthreads < 1 || kv_heads < 1 || heads % kv_heads || (d != 64 && d != 128) || nseq < 1)
		abort();	/* the contract of v1.h: a caller bug */
	int maxlen = 0;
	for (int s = 0; s < nseq; s++)
		if (seq_start[s + 1] - seq_start[s] > maxlen)
			maxlen = seq_start[s + 1] - seq_start[s];
	av1_job *jobs = malloc(sizeof(av1_job) * (size_t)nthreads);
	pthread_t *th = malloc(sizeof(pthread_t) * (size_t)nthreads);
	if (!jobs || !th)
		abort();
	int rc = 0, started = 0;
	for (int i = 0; i < nthreads; i++) {
		jobs[i] = (av1_job){ .heads = heads, .kv_heads = kv_heads, .d = d, .nseq = nseq,
				     .qtiles = (maxlen + ZP_AV1_BQ - 1) / ZP_AV1_BQ,
				     .seq_start = seq_start, .qkv = qkv, .ld_qkv = ld_qkv,
				     .ld_out = ld_out, .out = out, .prefix = prefix,
				     .nthreads = nthreads, .id = i };
		if (i == 0)
			continue;
		if (pthread_create(&th[i], NULL, av1_thread, &jobs[i]) != 0) {
			rc = -1;
			break;
		}
		started = i;
	}
	if (rc == 0)
		av1_thread(&jobs[0]);
	for (int i = 1; i <= started; i++)
		pthread_join(th[i], NULL);
	free(jobs);
	free(th);
	return rc;
}

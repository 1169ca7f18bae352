/* attention_v1_host.c -- the host twin of the v1 attention: the device
   kernel's blocks (attention_v1.h: 64 query rows of one sequence and head, key
   tiles of 64 from position 0, bf16 operands, online softmax with the same
   lane partials) run row by row on plain threads, for the sim device and for
   tests on machines without a GPU. Each call starts and joins its own threads. */
#include <pthread.h>
#include <stdlib.h>

#include "attention_v1.h"

typedef struct {
	int heads, kv_heads, d, nseq, qtiles;
	const int *seq_start;
	const float *qkv;
	size_t ld_qkv, ld_out;
	float *out;
	const zp_kv1_src *prefix;
	int nthreads, id;
} av1_job;

typedef struct {
	float *q, *o;	/* [BQ][d]: the block's rows, bf16 values in f32; P.V sums */
	float *kt, *vt;	/* [BKV][d]: the current key tile */
	float m[ZP_AV1_BQ], l[ZP_AV1_BQ][4];	/* running max, lane partial sums */
} av1_scratch;

/* Key tile j for block row r (position qpos): online-softmax update of its
   m, l[4] and o. */
static void av1_tile(const av1_job *jb, av1_scratch *w, int j, int r, int qpos)
{
	int d = jb->d;
	const float *q = w->q + (size_t)r * d;
	float *o = w->o + (size_t)r * d;
	float s[ZP_AV1_BKV], mx = -INFINITY;
	float sl2 = zp_av1_scale_log2(d);
	for (int c = 0; c < ZP_AV1_BKV; c++) {
		const float *k = w->kt + (size_t)c * d;
		float acc = 0.0f;
		for (int x = 0; x < d; x++)
			acc += q[x] * k[x];
		s[c] = j * ZP_AV1_BKV + c <= qpos ? acc * sl2 : -INFINITY;
		mx = fmaxf(mx, s[c]);
	}
	float mn = zp_av1_max_ref(w->m[r], mx);
	float corr = exp2f(w->m[r] - mn);
	w->m[r] = mn;
	float rs[4] = { 0, 0, 0, 0 };	/* lane q holds keys nt*8 + 2q, +1 */
	for (int c = 0; c < ZP_AV1_BKV; c++)
		s[c] = zp_av1_round_bf16(exp2f(s[c] - mn));
	for (int nt = 0; nt < ZP_AV1_BKV / 8; nt++)
		for (int lq = 0; lq < 4; lq++)
			rs[lq] += s[nt * 8 + 2 * lq] + s[nt * 8 + 2 * lq + 1];
	for (int lq = 0; lq < 4; lq++)
		w->l[r][lq] = w->l[r][lq] * corr + rs[lq];
	for (int x = 0; x < d; x++) {
		float acc = 0.0f;
		for (int c = 0; c < ZP_AV1_BKV; c++)
			acc += s[c] * w->vt[(size_t)c * d + x];
		o[x] = o[x] * corr + acc;
	}
}

/* Key tile j of sequence s, kv head kvh, as bf16 values in f32. */
static void av1_load(const av1_job *jb, av1_scratch *w, int s, int kvh, int j)
{
	int d = jb->d, r0 = jb->seq_start[s], len = jb->seq_start[s + 1] - r0;
	const zp_kv1_src *pre = jb->prefix ? &jb->prefix[s] : NULL;
	for (int c = 0; c < ZP_AV1_BKV; c++)
		for (int v = 0; v < 2; v++) {
			const float *src = zp_av1_kv_row(jb->qkv, jb->ld_qkv, jb->heads, jb->kv_heads, d,
							 r0, len, pre, kvh, j * ZP_AV1_BKV + c, v);
			float *dst = (v ? w->vt : w->kt) + (size_t)c * d;
			for (int x = 0; x < d; x++)
				dst[x] = src ? zp_av1_round_bf16(src[x]) : 0.0f;
		}
}

/* Block (s, h, qt): tile after tile in the device's order, each tile applied
   to every row of the block. */
static void av1_block(const av1_job *jb, av1_scratch *w, int s, int h, int qt)
{
	int d = jb->d, r0 = jb->seq_start[s], len = jb->seq_start[s + 1] - r0;
	int i0 = qt * ZP_AV1_BQ;
	if (i0 >= len)
		return;
	int iend = len < i0 + ZP_AV1_BQ ? len : i0 + ZP_AV1_BQ;
	int plen = jb->prefix ? jb->prefix[s].len : 0;
	int kvh = h / (jb->heads / jb->kv_heads);
	int tiles = zp_av1_key_tiles(plen, iend);
	for (int r = 0; r < iend - i0; r++) {
		const float *q = jb->qkv + (size_t)(r0 + i0 + r) * jb->ld_qkv + (size_t)h * d;
		for (int x = 0; x < d; x++) {
			w->q[(size_t)r * d + x] = zp_av1_round_bf16(q[x]);
			w->o[(size_t)r * d + x] = 0.0f;
		}
		w->m[r] = -INFINITY;
		for (int lq = 0; lq < 4; lq++)
			w->l[r][lq] = 0.0f;
	}
	for (int j = 0; j < tiles; j++) {
		av1_load(jb, w, s, kvh, j);
		for (int r = 0; r < iend - i0; r++)
			av1_tile(jb, w, j, r, plen + i0 + r);
	}
	for (int r = 0; r < iend - i0; r++) {
		float lt = (w->l[r][0] + w->l[r][1]) + (w->l[r][2] + w->l[r][3]);
		float *o = jb->out + (size_t)(r0 + i0 + r) * jb->ld_out + (size_t)h * d;
		for (int x = 0; x < d; x++)
			o[x] = w->o[(size_t)r * d + x] / lt;
	}
}

static void *av1_thread(void *arg)
{
	const av1_job *jb = arg;
	size_t d = (size_t)jb->d;
	float *buf = malloc(sizeof(float) * d * (2 * ZP_AV1_BQ + 2 * ZP_AV1_BKV));
	av1_scratch *w = malloc(sizeof(*w));
	if (!buf || !w)
		abort();	/* ~130 KB: out of memory is fatal, as alloc */
	w->q = buf;
	w->o = w->q + d * ZP_AV1_BQ;
	w->kt = w->o + d * ZP_AV1_BQ;
	w->vt = w->kt + d * ZP_AV1_BKV;
	long blocks = (long)jb->nseq * jb->heads * jb->qtiles;
	for (long b = jb->id; b < blocks; b += jb->nthreads) {
		int qt = (int)(b % jb->qtiles);
		int h = (int)(b / jb->qtiles % jb->heads);
		int s = (int)(b / jb->qtiles / jb->heads);
		av1_block(jb, w, s, h, qt);
	}
	free(buf);
	free(w);
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

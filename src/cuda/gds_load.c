/* gds_load.c -- see gds_load.h. A queued tensor is cut in chunks of at most
   a bounce buffer; a worker reads its chunk's 4096-aligned file range into its
   own device bounce buffer (O_DIRECT's rule: a safetensors tensor starts
   anywhere) and copies the tensor's bytes to their place on its own stream;
   it syncs that stream before it reuses the buffer. Workers: the pool's
   threads, each bound to the device. The first failure stops the rest. */
#include "gds_load.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#define BOUNCE_BYTES_MAX ((size_t)64 << 20)
#define WORKERS_MAX 16

typedef struct {
	char *dst;	/* device */
	int file;
	uint64_t off;	/* in the file */
	size_t bytes;
} piece;

typedef struct {
	void *dst;
	const void *host;
	size_t bytes;
} gmat;

typedef struct {
	int p;		/* the piece */
	size_t at, bytes;	/* the part of it */
} chunk;

struct zp_gds {
	zp_drt *r;
	const zp_model *m;
	zp_dfile **files;	/* [m->st.nfiles] */
	int workers;
	piece *pc;
	int npc, cappc;
	gmat *mats;
	int nmats, capmats;
	size_t bytes, piece_max;
	/* a run */
	chunk *ch;
	char *bounce[WORKERS_MAX], *bounce_raw[WORKERS_MAX];
	size_t bounce_bytes;
	zp_dstream *st[WORKERS_MAX];
	_Atomic int failed;
	char why[256];
};

/* the chunk's aligned range fits a bounce buffer: two pages of slack */
static size_t chunk_max(const zp_gds *g)
{
	return g->bounce_bytes - 2 * ZP_DFILE_ALIGN;
}

zp_gds *zp_gds_new(zp_drt *r, const zp_model *m, int workers, char *why, size_t len)
{
	const char *env = getenv("ZP_GDS");
	if (env && !strcmp(env, "off")) {
		snprintf(why, len, "ZP_GDS=off");
		return NULL;
	}
	if (m->random) {
		snprintf(why, len, "random weights: no checkpoint file");
		return NULL;
	}
	if (m->wtype != ZP_W_BF16 && !m->fp8) {
		snprintf(why, len, "an f32 model: the device holds converted values, not the "
			 "file's bytes");
		return NULL;
	}
	zp_gds *g = zp_xcalloc(1, sizeof *g);
	g->r = r;
	g->m = m;
	g->workers = ZP_MAX(1, ZP_MIN(workers, WORKERS_MAX));
	g->files = zp_xcalloc((size_t)ZP_MAX(m->st.nfiles, 1), sizeof *g->files);
	for (int i = 0; i < m->st.nfiles; i++)
		if (!(g->files[i] = r->ops->file_open(r, m->st.files[i].path, why, len))) {
			zp_gds_free(g);
			return NULL;
		}
	return g;
}

static void push_piece(zp_gds *g, piece p)
{
	if (g->npc == g->cappc) {
		g->cappc = g->cappc ? 2 * g->cappc : 256;
		g->pc = realloc(g->pc, (size_t)g->cappc * sizeof *g->pc);
		ZP_ASSERT(g->pc);
	}
	g->pc[g->npc++] = p;
	g->piece_max = ZP_MAX(g->piece_max, p.bytes);
}

/* bytes of one stored element of w (bf16, or an FP8 code) */
static size_t elem_bytes(const zp_wmat *w)
{
	return w->store == ZP_WS_FP8 ? 1 : 2;
}

/* t's bytes are rows of w as they are: [rows, w->k] of bf16 (a bf16 model)
   or of e4m3 codes (an FP8 one), rows unpadded (kp == k) */
static bool qualifies(const zp_wmat *w, const zp_st_tensor *t, int row)
{
	bool fp8 = w->store == ZP_WS_FP8;
	return t && w->kp == w->k && t->dtype == (fp8 ? ZP_DT_F8_E4M3 : ZP_DT_BF16) &&
	       (fp8 || w->type == ZP_W_BF16) && t->ndim == 2 && t->shape[1] == w->k && row >= 0 &&
	       t->shape[0] >= 1 && row + t->shape[0] <= w->n &&
	       t->nbytes == (uint64_t)t->shape[0] * w->k * elem_bytes(w);
}

bool zp_gds_add(zp_gds *g, const zp_wmat *w, const void *host, const char *const *names,
		const int *rows, int nsrc)
{
	const zp_st_tensor *t[4];
	ZP_ASSERT(nsrc >= 1 && nsrc <= 4);
	for (int i = 0; i < nsrc; i++)
		if (!qualifies(w, t[i] = zp_st_find(&g->m->st, names[i]), rows[i]))
			return false;
	size_t rb = (size_t)w->kp * elem_bytes(w);
	for (int i = 0; i < nsrc; i++) {
		const zp_st_file *f = &g->m->st.files[t[i]->file];
		uint64_t off = (uint64_t)((const char *)t[i]->data - (const char *)f->map);
		push_piece(g, (piece){ (char *)w->data + (size_t)rows[i] * rb, t[i]->file, off,
				       (size_t)t[i]->nbytes });
		g->bytes += t[i]->nbytes;
	}
	if (g->nmats == g->capmats) {
		g->capmats = g->capmats ? 2 * g->capmats : 256;
		g->mats = realloc(g->mats, (size_t)g->capmats * sizeof *g->mats);
		ZP_ASSERT(g->mats);
	}
	/* FP8: the codes only (the caller stages the scales) */
	g->mats[g->nmats++] = (gmat){ w->data, host,
				      w->store == ZP_WS_FP8 ? w->scale_off : (size_t)w->n * rb };
	return true;
}

size_t zp_gds_bytes(const zp_gds *g)
{
	return g ? g->bytes : 0;
}

static void fail(zp_gds *g, const char *why)
{
	int none = 0;
	if (atomic_compare_exchange_strong(&g->failed, &none, 1))
		snprintf(g->why, sizeof g->why, "%s", why);
}

/* one chunk: its aligned file range into this worker's bounce, then its
   bytes to their place on the worker's stream */
static void read_task(void *v, int t, int thread)
{
	zp_gds *g = v;
	zp_drt *r = g->r;
	const chunk *c = &g->ch[t];
	const piece *p = &g->pc[c->p];
	char why[256];
	if (atomic_load(&g->failed))
		return;
	r->ops->bind(r);
	uint64_t off = p->off + c->at, a0 = off / ZP_DFILE_ALIGN * ZP_DFILE_ALIGN;
	size_t span = ZP_ALIGN_UP((size_t)(off - a0) + c->bytes, ZP_DFILE_ALIGN);
	ZP_ASSERT(span <= g->bounce_bytes);
	r->ops->stream_sync(r, g->st[thread]); /* its last copy out of the bounce is done */
	int64_t got = r->ops->file_read(r, g->files[p->file], g->bounce[thread], a0, span, why,
					sizeof why);
	if (got >= 0 && (uint64_t)got < off - a0 + c->bytes)
		snprintf(why, sizeof why, "short read: %lld of %zu bytes at %llu (the file ends)",
			 (long long)got, span, (unsigned long long)a0);
	if (got < 0 || (uint64_t)got < off - a0 + c->bytes) {
		fail(g, why);
		return;
	}
	r->ops->copy(r, g->st[thread], p->dst + c->at, g->bounce[thread] + (off - a0), c->bytes);
}

static void make_chunks(zp_gds *g, int *n)
{
	size_t cm = chunk_max(g);
	int cap = 0;
	for (int i = 0; i < g->npc; i++)
		cap += (int)((g->pc[i].bytes + cm - 1) / cm);
	g->ch = zp_xcalloc((size_t)ZP_MAX(cap, 1), sizeof *g->ch);
	*n = 0;
	for (int i = 0; i < g->npc; i++)
		for (size_t at = 0; at < g->pc[i].bytes; at += cm)
			g->ch[(*n)++] = (chunk){ i, at, ZP_MIN(cm, g->pc[i].bytes - at) };
}

static void workers_open(zp_gds *g)
{
	zp_drt *r = g->r;
	g->bounce_bytes = ZP_ALIGN_UP(ZP_MIN(BOUNCE_BYTES_MAX, g->piece_max + 2 * ZP_DFILE_ALIGN),
				      ZP_DFILE_ALIGN);
	g->bounce_bytes = ZP_MAX(g->bounce_bytes, 4 * (size_t)ZP_DFILE_ALIGN);
	for (int w = 0; w < g->workers; w++) {
		g->bounce_raw[w] = r->ops->alloc(r, g->bounce_bytes + ZP_DFILE_ALIGN);
		g->bounce[w] = (char *)ZP_ALIGN_UP((uintptr_t)g->bounce_raw[w], ZP_DFILE_ALIGN);
		if (g->bounce_raw[w])
			r->ops->file_buf(r, g->bounce[w], g->bounce_bytes, true);
		g->st[w] = r->ops->stream_new(r);
	}
}

static void workers_close(zp_gds *g)
{
	zp_drt *r = g->r;
	for (int w = 0; w < g->workers; w++) {
		r->ops->stream_sync(r, g->st[w]);
		r->ops->stream_free(r, g->st[w]);
		if (g->bounce_raw[w]) {
			r->ops->file_buf(r, g->bounce[w], g->bounce_bytes, false);
			r->ops->free(r, g->bounce_raw[w]);
		}
		g->bounce_raw[w] = g->bounce[w] = NULL;
	}
}

int zp_gds_run(zp_gds *g, zp_gds_stage_fn stage, void *ctx, char *why, size_t len)
{
	int n = 0;
	double t0 = zp_now_s();
	if (!g->npc)
		return 0;
	workers_open(g);
	for (int w = 0; w < g->workers; w++)
		if (!g->bounce_raw[w])
			fail(g, "no device memory for the GDS bounce buffers");
	make_chunks(g, &n);
	zp_pool *pool = zp_pool_new(g->workers);
	if (!atomic_load(&g->failed))
		zp_pool_run(pool, n, read_task, g);
	zp_pool_free(pool);
	workers_close(g);
	free(g->ch);
	g->ch = NULL;
	double dt = zp_now_s() - t0;
	if (atomic_load(&g->failed)) {
		snprintf(why, len, "%s", g->why);
		zp_log(ZP_LOG_WARN, "msg=\"GDS read failed: the matrices it was to read go staged\" "
		       "why=\"%s\" matrices=%d", g->why, g->nmats);
		for (int i = 0; i < g->nmats; i++)
			stage(ctx, g->mats[i].dst, g->mats[i].host, g->mats[i].bytes);
		return -1;
	}
	zp_log(ZP_LOG_INFO, "msg=\"weights uploaded\" what=model path=gds gb=%.3f gbps=%.2f s=%.2f "
	       "tensors=%d in_flight=%d bounce_mb=%.1f", (double)g->bytes / 1e9,
	       dt > 0 ? (double)g->bytes / 1e9 / dt : 0.0, dt, g->npc, g->workers,
	       (double)g->bounce_bytes / 1048576.0);
	return 0;
}

void zp_gds_free(zp_gds *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->m->st.nfiles; i++)
		if (g->files[i])
			g->r->ops->file_close(g->r, g->files[i]);
	free(g->files);
	free(g->pc);
	free(g->mats);
	free(g);
}

/* dpep.c -- see dpep.h. Between the two barriers of a layer a member only
   reads other members' published rows and writes the yg rows of its own
   experts, which no one else touches. The exchange is an all-to-all of
   peer copies on each member's backend (on a device: its stream reads the
   peers' memory directly); a member's work is complete (sync) before each
   barrier, so what the barrier publishes is in place, on any device. */
#include "dpep.h"

#include <pthread.h>
#include <stdatomic.h>

#include "place.h" /* zp_place_part: the one expert partition */

struct member {
	zp_backend *b;
	zp_dpep_rows rows;	/* published for the layer in progress */
	int hp, mfp, H, F;
	size_t es;		/* bytes per input element: 2 (bf16) or 4 */
	void *ra;		/* [R, hp] received inputs */
	float *ract;		/* [R, mfp] */
	uint16_t *ract16;	/* [R, mfp] (bf16) */
	float *ry;		/* [R, H] */
	int *roffs;		/* [E + 1] first received row of each owned expert */
	long round;		/* forwards started (the group's rounds) */
};

struct zp_dpep {
	int n;
	bool alive[ZP_DPEP_MAX];	/* members that take part (zp_dpep_set_members) */
	pthread_barrier_t bar;		/* counts the alive members */
	struct member m[ZP_DPEP_MAX];
	int lo[ZP_DPEP_MAX], hi[ZP_DPEP_MAX];
	int experts;
	_Atomic long failed_round;	/* the last round a member marked failed (0: none) */
};

zp_dpep *zp_dpep_new(int n, int experts)
{
	ZP_ASSERT(n >= 1 && n <= ZP_DPEP_MAX && n <= experts);
	zp_dpep *g = zp_xcalloc(1, sizeof *g);
	g->n = n;
	g->experts = experts;
	for (int x = 0; x < n; x++) {
		g->alive[x] = true;
		zp_place_part(n, experts, x, &g->lo[x], &g->hi[x]);
	}
	ZP_ASSERT(pthread_barrier_init(&g->bar, NULL, (unsigned)n) == 0);
	return g;
}

void zp_dpep_set_members(zp_dpep *g, const bool *alive)
{
	int n = 0, k = 0;
	long round = 0;
	for (int x = 0; x < g->n; x++) {
		n += alive[x];
		round = ZP_MAX(round, g->m[x].round);
	}
	ZP_ASSERT(n >= 1);
	for (int x = 0; x < g->n; x++) {
		g->alive[x] = alive[x];
		g->lo[x] = g->hi[x] = 0;
		if (alive[x])
			zp_place_part(n, g->experts, k++, &g->lo[x], &g->hi[x]);
		g->m[x].round = round; /* every member's next forward is the same round again */
	}
	int rc = pthread_barrier_destroy(&g->bar); /* no member waits on it: all idle */
	ZP_ASSERT(rc == 0);
	ZP_ASSERT(pthread_barrier_init(&g->bar, NULL, (unsigned)n) == 0);
}

void zp_dpep_free(zp_dpep *g)
{
	if (!g)
		return;
	for (int x = 0; x < g->n; x++)
		ZP_ASSERT(!g->m[x].b); /* every member left */
	int rc = pthread_barrier_destroy(&g->bar);
	ZP_ASSERT(rc == 0); /* no member waits on it any more */
	free(g);
}

void zp_dpep_range(const zp_dpep *g, int member, int *lo, int *hi)
{
	*lo = g->lo[member];
	*hi = g->hi[member];
}

void zp_dpep_join(zp_dpep *g, int member, zp_backend *b, const zp_config *c, bool bf16,
		  int batch_tokens_max)
{
	ZP_ASSERT(member >= 0 && member < g->n && !g->m[member].b && c->moe);
	struct member *m = &g->m[member];
	size_t R = (size_t)g->n * batch_tokens_max * c->topk; /* every member's rows at most */
	m->b = b;
	m->hp = ZP_ALIGN_UP(c->hidden, 2);
	m->mfp = ZP_ALIGN_UP(c->moe_ffn, 16);
	m->H = c->hidden;
	m->F = c->moe_ffn;
	m->es = bf16 ? 2 : 4;
	m->ra = b->ops->alloc(b, R * m->hp * m->es);
	m->ract = b->ops->alloc(b, R * m->mfp * sizeof(float));
	m->ract16 = bf16 ? b->ops->alloc(b, R * m->mfp * 2) : NULL;
	m->ry = b->ops->alloc(b, R * m->H * sizeof(float));
	m->roffs = zp_xcalloc((size_t)c->experts + 1, sizeof *m->roffs);
}

void zp_dpep_leave(zp_dpep *g, int member)
{
	struct member *m = &g->m[member];
	zp_backend *b = m->b;
	b->ops->mfree(b, m->ra);
	b->ops->mfree(b, m->ract);
	if (m->ract16)
		b->ops->mfree(b, m->ract16);
	b->ops->mfree(b, m->ry);
	free(m->roffs);
	*m = (struct member){ 0 };
}

static double wait_all(zp_dpep *g)
{
	double t0 = zp_now_s();
	int rc = pthread_barrier_wait(&g->bar);
	ZP_ASSERT(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
	return zp_now_s() - t0;
}

/* Every member's rows of this member's experts in, expert by expert and
   member by member within an expert; the outputs back in the same order. */
double zp_dpep_layer(zp_dpep *g, int member, const zp_dpep_rows *rows, const zp_layer *L)
{
	struct member *m = &g->m[member];
	zp_backend *b = m->b;
	ZP_ASSERT(g->alive[member]); /* the engine sends a left member nothing */
	int e0 = g->lo[member], e1 = g->hi[member], R = 0;
	size_t arow = (size_t)m->hp * m->es, yrow = (size_t)m->H * sizeof(float);
	m->rows = *rows;
	if (b->ops->sync(b, NULL)) /* its rows are in place, or the round fails */
		atomic_store(&g->failed_round, m->round);
	double waited = wait_all(g);
	for (int e = e0; e < e1; e++) {
		m->roffs[e - e0] = R;
		for (int x = 0; x < g->n; x++) {
			const zp_dpep_rows *s = &g->m[x].rows;
			if (!g->alive[x])
				continue;
			int n = s->offs[e + 1] - s->offs[e];
			b->ops->copy(b, (char *)m->ra + (size_t)R * arow,
				     (const char *)s->xg + (size_t)s->offs[e] * arow, (size_t)n * arow);
			R += n;
		}
	}
	m->roffs[e1 - e0] = R;
	zp_view ra = { m->ra, (size_t)m->hp }, act = { m->ract, (size_t)m->mfp };
	zp_view act16 = { m->ract16, (size_t)m->mfp }, ry = { m->ry, (size_t)m->H };
	b->ops->expert_gemm(b, L->exp_gate_up, e0, e1, m->roffs, ra, act, ZP_EPI_SWIGLU, m->F);
	if (m->ract16)
		b->ops->to_bf16(b, R, m->F, act, act16);
	b->ops->expert_gemm(b, L->exp_down, e0, e1, m->roffs, m->ract16 ? act16 : act, ry,
			    ZP_EPI_STORE, 0);
	R = 0;
	for (int e = e0; e < e1; e++)
		for (int x = 0; x < g->n; x++) {
			const zp_dpep_rows *s = &g->m[x].rows;
			if (!g->alive[x])
				continue;
			int n = s->offs[e + 1] - s->offs[e];
			b->ops->copy(b, (char *)s->yg + (size_t)s->offs[e] * yrow,
				     (const char *)m->ry + (size_t)R * yrow, (size_t)n * yrow);
			R += n;
		}
	if (b->ops->sync(b, NULL)) /* every peer's outputs are in place, or not real */
		atomic_store(&g->failed_round, m->round);
	return waited + wait_all(g);
}

void zp_dpep_begin(zp_dpep *g, int member)
{
	g->m[member].round++;
}

bool zp_dpep_round_failed(zp_dpep *g, int member)
{
	return atomic_load(&g->failed_round) == g->m[member].round;
}

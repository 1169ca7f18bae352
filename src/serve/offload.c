/* offload.c -- see offload.h. One mutex guards the slots' states; a slot's
   buffers belong to whoever its state names, so they are read and written
   outside the lock. */
#define _GNU_SOURCE
#include "offload.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* FREE -> QUEUED (submit) -> BUILDING (worker) -> DONE -> HANDED (poll) -> FREE (release) */
enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_BUILDING, SLOT_DONE, SLOT_HANDED };

typedef struct {
	enum slot_state state;
	uint64_t seq;			/* submission order: oldest first */
	uint64_t owner;
	enum zp_route ep;
	char *in;			/* [body_max]: the body, copied */
	size_t len;
	zp_api_job *job;
	zp_api_job scratch;		/* the job of a route that needs no model */
	zp_buf body;			/* fixed: the reply */
	zp_api_reply reply;
	int status;
} slot;

struct zp_offload {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	bool quit;
	uint64_t seq;
	slot s[ZP_OFFLOAD_SLOTS];
	int inflight;			/* reactor's count: submitted, not released */
	zp_api api;			/* the worker's */
	size_t body_max;
	zp_bell *done;
	const char *hold;		/* ZP_FAULT_OFFLOAD_HOLD */
};

/* The oldest slot in state st, or -1. Called with mu held. */
static int oldest(const zp_offload *o, enum slot_state st)
{
	int best = -1;
	for (int i = 0; i < ZP_OFFLOAD_SLOTS; i++)
		if (o->s[i].state == st && (best < 0 || o->s[i].seq < o->s[best].seq))
			best = i;
	return best;
}

static void hold(const zp_offload *o)
{
	struct timespec t = { 0, 10 * 1000000 };
	for (int i = 0; o->hold && i < 6000 && access(o->hold, F_OK) == 0; i++)
		nanosleep(&t, NULL);
}

static void *worker(void *arg)
{
	zp_offload *o = arg;
	pthread_mutex_lock(&o->mu);
	for (;;) {
		int i = -1;
		while (!o->quit && (i = oldest(o, SLOT_QUEUED)) < 0)
			pthread_cond_wait(&o->cv, &o->mu);
		if (o->quit)
			break;
		slot *sl = &o->s[i];
		sl->state = SLOT_BUILDING;
		pthread_mutex_unlock(&o->mu);
		hold(o);
		sl->status = zp_api_build(&o->api, sl->ep, NULL, sl->in, sl->len, sl->job, &sl->reply);
		pthread_mutex_lock(&o->mu);
		ZP_ASSERT(sl->state == SLOT_BUILDING);
		sl->state = SLOT_DONE;
		zp_bell_ring(o->done);
	}
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

zp_offload *zp_offload_new(const zp_tok *tok, const zp_req_limits *lim, size_t body_max,
			   const char *model_name, const zp_rerank_cfg *rr, const zp_chat *chat,
			   size_t resp_bytes,
			   zp_bell *done)
{
	zp_offload *o = zp_xcalloc(1, sizeof *o);
	zp_api_init(&o->api, tok, lim, body_max, model_name, rr, chat);
	o->body_max = body_max;
	o->done = done;
	o->hold = getenv("ZP_FAULT_OFFLOAD_HOLD");
	for (int i = 0; i < ZP_OFFLOAD_SLOTS; i++) {
		o->s[i].in = zp_xmalloc(body_max); /* pages touched when used */
		zp_buf_init_fixed(&o->s[i].body, NULL, resp_bytes + 1);
		o->s[i].reply.body = &o->s[i].body;
	}
	int rc = pthread_mutex_init(&o->mu, NULL) | pthread_cond_init(&o->cv, NULL) |
		 pthread_create(&o->th, NULL, worker, o);
	ZP_ASSERT(rc == 0); /* default attributes: only out of resources at start */
	return o;
}

void zp_offload_free(zp_offload *o)
{
	if (!o)
		return;
	pthread_mutex_lock(&o->mu);
	o->quit = true;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	int rc = pthread_join(o->th, NULL);
	ZP_ASSERT(rc == 0);
	for (int i = 0; i < ZP_OFFLOAD_SLOTS; i++) {
		free(o->s[i].in);
		zp_buf_free(&o->s[i].body);
	}
	zp_api_free(&o->api);
	pthread_mutex_destroy(&o->mu);
	pthread_cond_destroy(&o->cv);
	free(o);
}

int zp_offload_submit(zp_offload *o, uint64_t owner, enum zp_route ep, const char *body,
		      size_t len, zp_api_job *job)
{
	ZP_ASSERT(len <= o->body_max);
	pthread_mutex_lock(&o->mu);
	int i = oldest(o, SLOT_FREE);
	pthread_mutex_unlock(&o->mu);
	if (i < 0)
		return -1;
	slot *sl = &o->s[i]; /* free: the reactor's until queued */
	memcpy(sl->in, body, len);
	sl->len = len;
	sl->ep = ep;
	sl->owner = owner;
	memset(&sl->scratch, 0, sizeof sl->scratch);
	sl->job = job ? job : &sl->scratch;
	pthread_mutex_lock(&o->mu);
	sl->seq = o->seq++;
	sl->state = SLOT_QUEUED;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	o->inflight++;
	return 0;
}

bool zp_offload_poll(zp_offload *o, zp_offload_done *d)
{
	pthread_mutex_lock(&o->mu);
	int i = oldest(o, SLOT_DONE);
	if (i >= 0)
		o->s[i].state = SLOT_HANDED;
	pthread_mutex_unlock(&o->mu);
	if (i < 0)
		return false;
	slot *sl = &o->s[i];
	*d = (zp_offload_done){ .slot = i, .owner = sl->owner, .status = sl->status,
				.job = sl->job == &sl->scratch ? NULL : sl->job, .reply = &sl->reply };
	return true;
}

void zp_offload_release(zp_offload *o, int slot_i)
{
	ZP_ASSERT(slot_i >= 0 && slot_i < ZP_OFFLOAD_SLOTS && o->inflight > 0);
	pthread_mutex_lock(&o->mu);
	ZP_ASSERT(o->s[slot_i].state == SLOT_HANDED);
	o->s[slot_i].state = SLOT_FREE;
	pthread_mutex_unlock(&o->mu);
	o->inflight--;
}

int zp_offload_inflight(const zp_offload *o)
{
	return o ? o->inflight : 0;
}

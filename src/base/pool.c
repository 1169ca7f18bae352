/* pool.c -- see pool.h. Tasks are claimed with one atomic counter; a run is
   published by bumping a generation number under the mutex. */
#include "pool.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>

#include "util.h"

#define SPIN_ROUNDS 20000

struct zp_pool {
	int threads;
	pthread_t *tids;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	_Atomic unsigned gen;
	_Atomic int next, done;
	int ntasks;
	zp_task_fn fn;
	void *ctx;
	_Atomic int quit;
	_Atomic int active; /* workers inside the current run */
};

struct worker_arg {
	zp_pool *p;
	int id;
};

static void take_tasks(zp_pool *p, int id)
{
	int t;
	while ((t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->ntasks) {
		p->fn(p->ctx, t, id);
		atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
	}
}

static void *worker(void *varg)
{
	struct worker_arg *a = varg;
	zp_pool *p = a->p;
	int id = a->id;
	unsigned seen = 0;

	free(a);
	for (;;) {
		unsigned g;
		int spins = 0;
		while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
		       spins++ < SPIN_ROUNDS)
			_mm_pause();
		if (g == seen) {
			pthread_mutex_lock(&p->mu);
			while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->quit))
				pthread_cond_wait(&p->cv, &p->mu);
			pthread_mutex_unlock(&p->mu);
		}
		if (atomic_load(&p->quit))
			return NULL;
		seen = g;
		take_tasks(p, id);
		atomic_fetch_sub_explicit(&p->active, 1, memory_order_release);
	}
}

zp_pool *zp_pool_new(int threads)
{
	zp_pool *p = zp_xcalloc(1, sizeof *p);
	ZP_ASSERT(threads >= 1 && threads <= 1024);
	p->threads = threads;
	p->tids = zp_xcalloc((size_t)threads, sizeof *p->tids);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	for (int i = 1; i < threads; i++) {
		struct worker_arg *a = zp_xmalloc(sizeof *a);
		a->p = p;
		a->id = i;
		ZP_ASSERT(pthread_create(&p->tids[i], NULL, worker, a) == 0);
	}
	return p;
}

void zp_pool_free(zp_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	atomic_store(&p->quit, 1);
	atomic_fetch_add(&p->gen, 1);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->threads; i++)
		pthread_join(p->tids[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->tids);
	free(p);
}

void zp_pool_run(zp_pool *p, int ntasks, zp_task_fn fn, void *ctx)
{
	if (ntasks <= 0)
		return;
	if (p->threads == 1 || ntasks == 1) {
		for (int t = 0; t < ntasks; t++)
			fn(ctx, t, 0);
		return;
	}
	/* The previous run's workers must have left take_tasks before we reuse
	   the fields they read. */
	while (atomic_load_explicit(&p->active, memory_order_acquire))
		_mm_pause();
	p->fn = fn;
	p->ctx = ctx;
	p->ntasks = ntasks;
	atomic_store_explicit(&p->done, 0, memory_order_relaxed);
	atomic_store_explicit(&p->next, 0, memory_order_relaxed);
	atomic_store_explicit(&p->active, p->threads - 1, memory_order_relaxed);
	pthread_mutex_lock(&p->mu);
	atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	take_tasks(p, 0);
	while (atomic_load_explicit(&p->done, memory_order_acquire) < ntasks)
		_mm_pause();
}

/* hevent.c -- see hevent.h. */
#include "hevent.h"

#include <pthread.h>
#include <stdlib.h>

#include "util.h"

struct zp_hevent {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t n;
};

zp_hevent *zp_hevent_new(void)
{
	zp_hevent *ev = zp_xcalloc(1, sizeof *ev);
	pthread_mutex_init(&ev->mu, NULL);
	pthread_cond_init(&ev->cv, NULL);
	return ev;
}

void zp_hevent_free(zp_hevent *ev)
{
	if (!ev)
		return;
	pthread_mutex_destroy(&ev->mu);
	pthread_cond_destroy(&ev->cv);
	free(ev);
}

/* the mutex orders the recorder's earlier writes before the waiter's reads */
uint64_t zp_hevent_record(zp_hevent *ev)
{
	pthread_mutex_lock(&ev->mu);
	uint64_t n = ++ev->n;
	pthread_cond_broadcast(&ev->cv);
	pthread_mutex_unlock(&ev->mu);
	return n;
}

void zp_hevent_wait(zp_hevent *ev, uint64_t n)
{
	pthread_mutex_lock(&ev->mu);
	while (ev->n < n)
		pthread_cond_wait(&ev->cv, &ev->mu);
	pthread_mutex_unlock(&ev->mu);
}

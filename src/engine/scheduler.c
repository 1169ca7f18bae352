/* scheduler.c -- see scheduler.h. Jobs queue in arrival order; a batch takes whole
   sequences from the front until the next would pass the token budget, so a
   job's sequences may span several batches (and executors). */
#include "scheduler.h"

#include <string.h>

#include "util.h"

void zp_sched_init(zp_sched *s, int requests_max, long tokens_max, int batch_tokens_max,
		   double batch_wait_s)
{
	memset(s, 0, sizeof *s);
	s->requests_max = requests_max;
	s->tokens_max = tokens_max;
	s->batch_tokens_max = batch_tokens_max;
	s->batch_wait_s = batch_wait_s;
}

static void unlink_job(zp_sched *s, zp_job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		s->head = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		s->tail = j->prev;
	j->prev = j->next = NULL;
}

int zp_sched_admit(zp_sched *s, zp_job *j, double now)
{
	ZP_ASSERT(j->nseq > 0 && j->dispatched == 0 && j->done == 0);
	for (int i = 0; i < j->nseq; i++)
		ZP_ASSERT(j->seq[i].ntok > 0);
	if (s->requests >= s->requests_max || s->tokens + j->tokens > s->tokens_max)
		return -1;
	s->requests++;
	s->tokens += j->tokens;
	s->queued_tokens += j->tokens;
	s->queued_seqs += j->nseq;
	j->t_arrive = now;
	j->prev = s->tail;
	j->next = NULL;
	if (s->tail)
		s->tail->next = j;
	else
		s->head = j;
	s->tail = j;
	return 0;
}

int zp_sched_next_batch(zp_sched *s, double now, bool force, zp_batch *b, double *wake_at)
{
	*wake_at = 0;
	b->n = b->tokens = 0;
	if (!s->head)
		return 0;
	double due = s->head->t_arrive + s->batch_wait_s;
	if (!force && now < due && s->queued_tokens < s->batch_tokens_max &&
	    s->queued_seqs < ZP_FWD_SEQS_MAX) {
		*wake_at = due;
		return 0;
	}
	for (zp_job *j = s->head, *next; j; j = next) {
		next = j->next;
		while (j->dispatched < j->nseq && b->n < ZP_FWD_SEQS_MAX) {
			zp_req *r = &j->seq[j->dispatched];
			if (b->n && b->tokens + r->ntok > s->batch_tokens_max)
				goto full; /* a sequence over the budget goes alone */
			b->req[b->n] = r;
			b->job[b->n++] = j;
			b->tokens += r->ntok;
			s->queued_tokens -= r->ntok;
			s->queued_seqs--;
			if (j->dispatched++ == 0)
				j->t_dispatch = now;
		}
		if (j->dispatched < j->nseq)
			break;
		unlink_job(s, j);
	}
full:
	ZP_ASSERT(b->n > 0 && s->queued_tokens >= 0 && s->queued_seqs >= 0);
	return b->n;
}

bool zp_sched_seq_done(zp_sched *s, zp_job *j)
{
	ZP_ASSERT(j->done < j->dispatched);
	j->done++;
	return j->done == j->dispatched && (j->done == j->nseq || j->cancelled);
}

bool zp_sched_cancel(zp_sched *s, zp_job *j)
{
	ZP_ASSERT(!j->cancelled);
	j->cancelled = true;
	if (j->dispatched < j->nseq) { /* still queued: drop what is left */
		for (int i = j->dispatched; i < j->nseq; i++)
			s->queued_tokens -= j->seq[i].ntok;
		s->queued_seqs -= j->nseq - j->dispatched;
		unlink_job(s, j);
	}
	return j->done == j->dispatched;
}

void zp_sched_finish(zp_sched *s, zp_job *j)
{
	s->requests--;
	s->tokens -= j->tokens;
	ZP_ASSERT(s->requests >= 0 && s->tokens >= 0);
}

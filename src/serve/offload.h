/* offload.h -- the build worker: a request body large enough that parsing and
   tokenizing it would hold the reactor back (ZP_OFFLOAD_BODY_MIN bytes and
   up: a megabyte of text takes the tokenizer tens of milliseconds) is copied
   into one of ZP_OFFLOAD_SLOTS slots and built (zp_api_build) on the
   worker's thread, with api state of its own (tokenizer state, parse region,
   scratch); the reactor gets the result back through the done bell, then
   answers it or admits its job, while /health and every small request are
   answered meanwhile.
   Threads: the reactor submits, polls and releases; the worker builds. A
   slot is the reactor's while free or handed back, the worker's from submit
   until it is done. Everything is allocated by zp_offload_new.
   Tests: the environment variable ZP_FAULT_OFFLOAD_HOLD=PATH holds each build
   while PATH exists (at most 60 s), so a test sees a build in flight. */
#ifndef ZP_OFFLOAD_H
#define ZP_OFFLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "api.h"
#include "doorbell.h"

#define ZP_OFFLOAD_BODY_MIN (64u << 10)	/* bodies built off the reactor */
#define ZP_OFFLOAD_SLOTS 4		/* large bodies in flight at once; past: 503 */

typedef struct zp_offload zp_offload;

/* A finished build, handed back to the reactor until zp_offload_release. */
typedef struct {
	int slot;
	uint64_t owner;			/* the submitter's cookie */
	int status;			/* zp_api_build's: 0 job built, > 0 reply */
	zp_api_job *job;		/* as submitted (NULL: a reply-only route) */
	const zp_api_reply *reply;	/* status > 0: the whole answer */
} zp_offload_done;

/* The worker and its slots, with api state made as zp_api_init makes it
   (the same arguments); done is rung when a build finishes. */
zp_offload *zp_offload_new(const zp_tok *tok, const zp_req_limits *lim, size_t body_max,
			   const char *model_name, const zp_rerank_cfg *rr, const zp_chat *chat,
			   size_t resp_bytes,
			   zp_bell *done);
/* Joins the worker (a build in progress finishes first). */
void zp_offload_free(zp_offload *o);

/* Copy body and queue its build for route ep into job (a zeroed job from the
   server's slots, with its region; NULL for a route that needs no model).
   0: queued; -1: every slot is in use (nothing taken). */
int zp_offload_submit(zp_offload *o, uint64_t owner, enum zp_route ep, const char *body,
		      size_t len, zp_api_job *job);
/* The oldest finished build into *d: true; false when none is. */
bool zp_offload_poll(zp_offload *o, zp_offload_done *d);
/* The slot of a build taken by poll is free again (its reply is gone). */
void zp_offload_release(zp_offload *o, int slot);
/* Slots submitted and not yet released. */
int zp_offload_inflight(const zp_offload *o);

#endif

/* dpep.h -- synchronous DP+EP (the dpep baseline AsyncEP is measured
   against): a group of n forwards, one per executor, that run every MoE layer
   together. Member x owns experts [lo_x, hi_x); at each MoE layer every member
   publishes its routed rows, waits for all (a barrier), computes its experts
   over every member's rows (copied in, as an AllToAll would), writes the
   results back into their owners' buffers, and waits again. A member with no
   tokens still takes part, so a group's forwards must all be started
   together. Each member's thread calls its own zp_dpep_layer; the group is
   built and freed by the owner thread. Works through the members' backend ops:
   the exchange is peer copies on each member's backend (on a device its
   stream reads the peers' memory), each member's work complete before each
   barrier. */
#ifndef ZP_DPEP_H
#define ZP_DPEP_H

#include "backend.h"
#include "model.h"

typedef struct zp_dpep zp_dpep;
#define ZP_DPEP_MAX 64

zp_dpep *zp_dpep_new(int n, int experts);
void zp_dpep_free(zp_dpep *g);
void zp_dpep_range(const zp_dpep *g, int member, int *lo, int *hi);

/* The members that take part from the next round on: alive[member] (at
   least one); the experts are partitioned over them (place.h's partition in
   member order), a member not alive holds none and must run no forward of
   the group. The owner thread, while no member runs a forward (a member
   not alive may still leave or join). */
void zp_dpep_set_members(zp_dpep *g, const bool *alive);

/* Join g as member (before any forward of the group runs), computing on b in
   bf16 or f32, batches of at most batch_tokens_max: allocates the rows it may
   receive. zp_dpep_leave frees them (before b is freed). */
void zp_dpep_join(zp_dpep *g, int member, zp_backend *b, const zp_config *c, bool bf16,
		  int batch_tokens_max);
void zp_dpep_leave(zp_dpep *g, int member);

/* One member's routed rows of a MoE layer, expert by expert. */
typedef struct {
	const void *xg;		/* [T K, hp] inputs (bf16 or f32 as the weights) */
	const int *offs;	/* [E + 1] expert e's rows start at offs[e] (read by
				   every member: host memory) */
	float *yg;		/* [T K, H] outputs, written by the experts' owners */
} zp_dpep_rows;

/* MoE layer L for the group: publish rows, then the exchange; returns the
   seconds spent waiting at the two barriers. A member whose backend reports
   a fault before a barrier marks the group's round failed: its experts'
   outputs for the others are not real. */
double zp_dpep_layer(zp_dpep *g, int member, const zp_dpep_rows *rows, const zp_layer *L);

/* The member starts a forward (a round of the group: every member's n-th
   forward is the same round). */
void zp_dpep_begin(zp_dpep *g, int member);
/* This round was marked failed by some member (read after the round's last
   barrier): the member's results are not real either. */
bool zp_dpep_round_failed(zp_dpep *g, int member);

#endif

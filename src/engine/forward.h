/* forward.h -- the forward pass of Qwen3(-MoE), exactly transformers'
   modeling_qwen3_moe.py (DESIGN.md section 1), over several sequences packed into
   one batch (no token attends across sequences), and the outputs a prefill is
   asked for, computed without a [tokens x vocab] matrix. The schedule is
   written once over backend.h's ops; zp_fwd_new runs it on the cpu backend.
   One zp_fwd per owner thread (an executor); it owns its backend instance (and
   so its thread pool) and its workspace, sized at start from batch_tokens_max.
   The model is shared read-only. */
#ifndef ZP_FORWARD_H
#define ZP_FORWARD_H

#include <stdatomic.h>

#include "backend.h"
#include "dpep.h"
#include "model.h"
#include "request.h"

typedef struct zp_fwd zp_fwd;

#define ZP_FWD_SEQS_MAX 1024 /* sequences in one forward */

zp_fwd *zp_fwd_new(const zp_model *m, int threads, int batch_tokens_max);
void zp_fwd_free(zp_fwd *f);

/* Where MoE layers' experts come from when not the model's own blocks (AsyncEP:
   an executor's resident shard and gathered buffers, asyncep.h). Called on the
   thread running the forward, with the forward's backend. */
typedef struct {
	void *ctx;
	/* layer l begins (before its attention): a chance to start gathers */
	void (*layer_begin)(void *ctx, int l);
	/* MoE layer l's experts as views of b's memory, [E] gate_up and [E]
	   down; may wait (on a b event) for their gather. 0, or -1 with e set
	   (the gather failed: the forward fails) */
	int (*acquire)(void *ctx, int l, zp_backend *b, const zp_wmat **gate_up,
		       const zp_wmat **down, zp_err *e);
	/* MoE layer l no longer reads them */
	void (*release)(void *ctx, int l);
	/* the forward ended, well or not: nothing of it may stay in flight */
	void (*end)(void *ctx);
} zp_expert_src;

/* Use src for every later forward (NULL: the model's own experts). */
void zp_fwd_set_experts(zp_fwd *f, const zp_expert_src *src);

/* Count f's finished layers in *beat (relaxed; another thread may read it),
   or nothing when NULL. */
void zp_fwd_set_beat(zp_fwd *f, _Atomic uint64_t *beat);

/* Join f to dpep group g (dpep.h) as member (before any forward of the group
   runs); f leaves it when freed. */
void zp_fwd_set_dpep(zp_fwd *f, zp_dpep *g, int member);

/* One forward over reqs (total tokens <= batch_tokens_max); fills their results.
   0, or -1 with e set when the expert source failed (results undefined). */
int zp_fwd_run(zp_fwd *f, zp_req **reqs, int nreq, zp_err *e);

/* Seconds spent in the last run, by phase (attention incl. projections, MLP/MoE,
   outputs). */
typedef struct {
	double attn_s, mlp_s, out_s;
	double sync_s;		/* dpep: waiting at the per-layer barriers */
	double flops;		/* linear-layer + attention FLOPs of the last run */
	float min_route_gap;	/* smallest router logit gap between the k-th chosen
				   expert and the best one left out (inf: dense) */
} zp_fwd_stats;
zp_fwd_stats zp_fwd_last_stats(const zp_fwd *f);

#endif

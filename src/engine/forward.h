/* forward.h -- the CPU forward pass of Qwen3(-MoE), exactly transformers'
   modeling_qwen3_moe.py (DESIGN.md section 1), over several sequences packed into
   one batch (no token attends across sequences), and the outputs a prefill is
   asked for, computed without a [tokens x vocab] matrix. One zp_fwd per owner
   thread (an executor); it owns its workspace (sized at start from max_tokens)
   and its thread pool. The model is shared read-only. */
#ifndef ZP_FORWARD_H
#define ZP_FORWARD_H

#include "model.h"
#include "request.h"

typedef struct zp_fwd zp_fwd;

#define ZP_FWD_SEQS_MAX 1024 /* sequences in one forward */

zp_fwd *zp_fwd_new(const zp_model *m, int threads, int max_tokens);
void zp_fwd_free(zp_fwd *f);

/* Where MoE layers' experts come from when not the model's own blocks (AsyncEP:
   an executor's resident shard and gathered buffers, asyncep.h). Called on the
   thread running the forward. */
typedef struct {
	void *ctx;
	/* layer l begins (before its attention): a chance to start gathers */
	void (*layer_begin)(void *ctx, int l);
	/* MoE layer l's experts, [E] gate_up and [E] down; may wait for a gather.
	   0, or -1 with e set (the gather failed: the forward fails) */
	int (*acquire)(void *ctx, int l, const zp_wmat **gate_up, const zp_wmat **down, zp_err *e);
	/* MoE layer l no longer reads them */
	void (*release)(void *ctx, int l);
	/* the forward ended, well or not: nothing of it may stay in flight */
	void (*end)(void *ctx);
} zp_expert_src;

/* Use src for every later forward (NULL: the model's own experts). */
void zp_fwd_set_experts(zp_fwd *f, const zp_expert_src *src);

/* Synchronous DP+EP (the dpep baseline): a group of n forwards, one per
   executor, that run every MoE layer together. Member x owns experts
   [lo_x, hi_x); at each MoE layer every member publishes its routed rows,
   waits for all (a barrier), computes its experts over every member's rows
   (copied in, as an AllToAll would), writes the results back into their
   owners' buffers, and waits again. A member with no tokens still takes part,
   so a group's forwards must all be started together. */
typedef struct zp_dpep zp_dpep;
#define ZP_DPEP_MAX 64
zp_dpep *zp_dpep_new(int n, int experts);
void zp_dpep_free(zp_dpep *g);
void zp_dpep_range(const zp_dpep *g, int member, int *lo, int *hi);
/* Join f to g as member (before any forward of the group runs). */
void zp_fwd_set_dpep(zp_fwd *f, zp_dpep *g, int member);

/* One forward over reqs (total tokens <= max_tokens); fills their results.
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

/* forward_impl.h -- the forward's state, shared by its two files only:
   forward.c (the schedule) and prefix_plan.c (prefix reuse). Nothing else
   includes it. One owner thread (forward.h). */
#ifndef ZP_FORWARD_IMPL_H
#define ZP_FORWARD_IMPL_H

#include "forward.h"

struct zp_fwd {
	const zp_model *m;
	const zp_config *c;
	zp_backend *be;
	const struct zp_backend_ops *op;
	bool bf16;			/* bf16 weights: GEMM inputs are the bf16 copies */
	int batch_tokens_max;
	int hp, qkv, qdp, fp, mfp;	/* padded widths (even) */
	/* batch layout (host) */
	int ntok, nseq;
	int *seq_start;			/* [batch_tokens_max + 1] */
	int *tok_pos;			/* [batch_tokens_max]: position in its sequence */
	int32_t *tok_id;		/* [batch_tokens_max] */
	/* activations (backend); the bf16 copies only in bf16 mode */
	float *x;			/* [T, H] residual stream */
	float *xn;			/* [T, hp] normed (f32 gemm input) */
	uint16_t *xn16;			/* [T, hp] bf16 copy */
	float *qkvb;			/* [T, qkv] */
	float *att;			/* [T, qdp] */
	uint16_t *att16;		/* [T, qdp] */
	float *tmp;			/* [T, H] block output */
	float *act;			/* [T, fp] dense MLP */
	uint16_t *act16;		/* [T, fp] */
	float *rope_cos, *rope_sin;	/* [batch_tokens_max, d/2]: by position in a sequence */
	zp_attn_work *attn;
	/* MoE (backend, but offs_h and gap_h: host copies) */
	float *logits;			/* [T, E] */
	int *sel;			/* [T, k] expert ids, sorted ascending */
	float *selw;			/* [T, k] */
	int *slot_row;			/* [T, k] row of the slot in the gathered block */
	float *route_gap;		/* [layers, T]: MoE layer l's gaps at l * T (this
					   run's T); read back once, after the layers */
	float *gap_h;			/* host [layers, T] */
	int *offs, *offs_h;		/* [E + 1] */
	float *xg;			/* [T k, hp] */
	uint16_t *xg16;			/* [T k, hp] */
	float *actg;			/* [T k, mfp] */
	uint16_t *actg16;		/* [T k, mfp] */
	float *yg;			/* [T k, H] */
	/* outputs */
	int lm_rows;			/* rows per lm_head block: the weights stream once
					   per block, the logits scratch stays bounded */
	int *lm_pos;			/* host [lm_rows]: absolute token index */
	int *lm_req;			/* host [lm_rows] */
	zp_lp_row *lm_out_rows;		/* host [lm_rows] */
	float *lm_in;			/* [lm_rows, hp] */
	uint16_t *lm_in16;		/* [lm_rows, hp] */
	float *lm_out;			/* [lm_rows, V]; pooling's work between blocks */
	zp_fwd_stats stats;
	const zp_expert_src *src;	/* NULL: the model's experts */
	zp_dpep *grp;
	int member;
	double *prof;			/* host [ZP_FOP_N]: per-op seconds, or NULL */
	_Atomic uint64_t *beat;		/* bumped after each layer (a watchdog's proof of
					   progress), or NULL */
	/* prefix reuse (zp_fwd_set_prefix; pre NULL: none). Sequence s computes
	   its positions [pre[s], ntok) only: blocks [0, hit[s]) come from the
	   cache, [hit[s], pre[s] / 16) from sharer[s]'s rows in this batch. */
	zp_kv *kv;			/* NULL: no cache */
	size_t kv_bytes;		/* the pool's size as sized (zp_kv_size) */
	char kv_why[200];		/* how it was chosen */
	bool siblings;
	int kvd;			/* kv_heads * head_dim */
	bool any_pre;			/* this run: some sequence has a prefix */
	int *pre;			/* host [SEQS_MAX]: leading tokens not computed */
	int *hit;			/* host [SEQS_MAX] */
	zp_kv_ref *hit_last;		/* host [SEQS_MAX]: the last cached block (pinned) */
	int *sharer;			/* host [SEQS_MAX]: a sequence before it, or -1 */
	int *ins0;			/* host [SEQS_MAX + 1]: sequence s's blocks in ins */
	zp_kv_ref *ins;			/* host [ins_cap]: full blocks computed, pinned in
					   the cache (slot -1: not inserted) */
	bool *ins_fresh;		/* host [ins_cap]: written by this run */
	int *ins_row;			/* host [ins_cap]: the block's first row in the batch */
	int ins_cap, nins;
	zp_kv_src *pfx;			/* host [SEQS_MAX] */
	int *att_start;			/* host [SEQS_MAX + 1]: one attention call's starts */
	float *stage;			/* [batch_tokens_max, 2 kvd]: prefixes for attention */
	int lost_n;			/* blocks this run could not insert */
	zp_blk_key lost[ZP_KV_EVICT_REPORT];
	int rep_n;			/* evicted or lost, this run */
	zp_blk_key rep[ZP_KV_EVICT_REPORT];
};

/* backend memory for f's workspace (start-time) */
void *zp_fwd_balloc(zp_fwd *f, size_t bytes);

/* prefix_plan.c: sequence s's leading tokens not computed (0 without
   reuse); the plan of a run (f->pre set); layer l's keys and values of the
   blocks the run inserts; attention with prefixes staged; the run's pins
   released (ok: its fresh blocks become valid). */
int zp_fwd_pre_of(const zp_fwd *f, int s);
void zp_fwd_plan(zp_fwd *f, zp_req **reqs, int nreq);
void zp_fwd_kv_write(zp_fwd *f, int l);
int zp_fwd_attention_prefixed(zp_fwd *f, const zp_attn_args *a, int l, zp_err *e);
void zp_fwd_kv_release(zp_fwd *f, bool ok);

#endif

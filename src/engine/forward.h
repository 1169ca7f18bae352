/* forward.h -- the forward pass of Qwen3(-MoE), exactly transformers'
   modeling_qwen3_moe.py (DESIGN.md section 1), over several sequences packed into
   one batch (no token attends across sequences), and the outputs a prefill is
   asked for, computed without a [tokens x vocab] matrix. The schedule is
   written once over backend.h's ops; zp_fwd_new runs it on a device from the
   registry (device.h), zp_fwd_new_on on a backend the caller made.
   One zp_fwd per owner thread (an executor); it owns its backend instance (and
   so its thread pool) and its workspace, sized at start from batch_tokens_max.
   The model is shared read-only. */
#ifndef ZP_FORWARD_H
#define ZP_FORWARD_H

#include <stdatomic.h>

#include "backend.h"
#include "device.h"
#include "dpep.h"
#include "kvcache.h"
#include "model.h"
#include "prefix.h"
#include "request.h"

typedef struct zp_fwd zp_fwd;

#define ZP_FWD_SEQS_MAX 1024 /* sequences in one forward */

/* Where a forward runs and what it is sized for. */
typedef struct {
	enum zp_device device;
	int ordinal;			/* cuda: the GPU */
	int threads;			/* the backend's worker threads */
	int batch_tokens_max;
	bool experts_elsewhere;		/* an expert source (zp_fwd_set_experts) gives
					   every MoE layer's experts: the backend need not
					   hold the model's */
} zp_fwd_opts;

/* A forward of m on a new backend of o->device (made on the calling thread,
   which then owns it): the backend takes the model's weights as it keeps
   them (backend.h's model op). NULL with e set: the device is not here, or
   its memory does not hold the model, or it failed taking the weights. */
zp_fwd *zp_fwd_new(const zp_model *m, const zp_fwd_opts *o, zp_err *e);
/* zp_fwd_new on the cpu device (which cannot fail to start): tests, tools. */
zp_fwd *zp_fwd_new_cpu(const zp_model *m, int threads, int batch_tokens_max);
/* A forward on backend be (owned by the forward from here on; freed with
   it); m is the model as be sees it (be's model op). */
zp_fwd *zp_fwd_new_on(const zp_model *m, zp_backend *be, int batch_tokens_max);
void zp_fwd_free(zp_fwd *f);

/* Where MoE layers' experts come from when not the model's own blocks (AsyncEP:
   an executor's resident shard and gathered buffers, asyncep.h). Called on the
   thread running the forward, with the forward's backend. */
typedef struct {
	void *ctx;
	/* The forward's backend (its owner thread, once, before any forward):
	   the source takes its memory there. 0, or -1 with e set. */
	int (*attach)(void *ctx, zp_backend *b, zp_err *e);
	/* The forward is being freed (the backend still lives): give its memory
	   back. */
	void (*detach)(void *ctx);
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
	/* forwards of every executor run in lockstep (a collective transport):
	   a forward without tokens still walks its layers */
	bool lockstep;
} zp_expert_src;

/* Use src for every later forward (NULL: the model's own experts): attaches
   it to f's backend. 0, or -1 with e set (nothing attached). */
int zp_fwd_set_experts(zp_fwd *f, const zp_expert_src *src, zp_err *e);

/* Count f's finished layers in *beat (relaxed; another thread may read it),
   or nothing when NULL. */
void zp_fwd_set_beat(zp_fwd *f, _Atomic uint64_t *beat);

/* Per-op profiling (zprefill bench --profile): the classes a forward's time
   splits into. */
enum zp_fwd_op {
	ZP_FOP_EMBED,		/* token embedding */
	ZP_FOP_NORM,		/* the RMSNorms before attention and MLP */
	ZP_FOP_QKV,		/* the q/k/v projection (and its bias) */
	ZP_FOP_ROPE,		/* q/k-norm + RoPE, and the cache's K/V writes */
	ZP_FOP_ATTN,		/* attention over new tokens and cached prefixes */
	ZP_FOP_O,		/* the output projection */
	ZP_FOP_DENSE,		/* a dense layer's MLP */
	ZP_FOP_ROUTER,		/* router GEMM and top-k */
	ZP_FOP_DISPATCH,	/* dispatch, the row counts' download, the row gather */
	ZP_FOP_ACQUIRE,		/* waiting for a layer's experts (an AsyncEP gather) */
	ZP_FOP_EXPERTS,		/* the grouped expert GEMMs (dpep: with its exchange) */
	ZP_FOP_COMBINE,		/* combine, and the residual adds and bf16 copies */
	ZP_FOP_OUT,		/* lm_head rows, log-probs, pooling */
	ZP_FOP_N
};
const char *zp_fwd_op_name(int op);
/* Add each later forward's seconds per op class into op_s[ZP_FOP_N] (NULL:
   off). On, the backend is synced before and after each timed op (each time
   is that op's alone; the forward is slower by the syncs); off, a forward
   pays one untaken branch per op. */
void zp_fwd_set_profile(zp_fwd *f, double *op_s);

/* Join f to dpep group g (dpep.h) as member (before any forward of the group
   runs); f leaves it when freed. */
void zp_fwd_set_dpep(zp_fwd *f, zp_dpep *g, int member);

/* Prefix reuse for every later forward (before the first one): a prefix KV
   cache of kv_cache_bytes (kvcache.h; 0: none) and, when siblings, sequences
   of one forward that share leading blocks compute them once (the later ones
   attend to the first's rows). A sequence reuses leading blocks only before
   every position whose hidden state it needs (the last token; prompt
   log-probs from plp_start - 1; every position for mean pooling), so its
   outputs are those of a forward without reuse, bit for bit. Every full
   block a forward computes is inserted into the cache. */
void zp_fwd_set_prefix(zp_fwd *f, size_t kv_cache_bytes, bool siblings);
/* The same with kv_cache_bytes ZP_KV_AUTO allowed (kvcache.h's zp_kv_size:
   sized from the memory left now, for one of share executors on that
   memory) and an explicit size checked against the device's free memory:
   0, or -1 with e set (the pool does not fit: a start error). */
int zp_fwd_set_prefix_sized(zp_fwd *f, size_t kv_cache_bytes, int share, bool siblings,
			    zp_err *e);
/* The same, but a ZP_KV_AUTO pool on a device (not host memory) waits for
   zp_fwd_size_kv, once every executor on the device has its weights and
   workspaces: 1 then (the tables exist, no pool yet), 0 when sized now, -1
   with e set as zp_fwd_set_prefix_sized. */
int zp_fwd_set_prefix_later(zp_fwd *f, size_t kv_cache_bytes, int share, bool siblings,
			    zp_err *e);
/* The pool zp_fwd_set_prefix_later left for later, for executor id of
   share (kvcache.h's zp_kv_size_device), on f's thread. */
void zp_fwd_size_kv(zp_fwd *f, int id, int share);
/* The pool's bytes as sized (0: none) and, in *why, how they were chosen. */
size_t zp_fwd_kv_bytes(const zp_fwd *f, const char **why);
/* Leading blocks of r that may come from elsewhere (the cache or a sibling):
   those before the first position whose hidden state r's outputs read. The
   scheduler counts a batch's computed tokens by it. Pure; any thread. */
int zp_fwd_reuse_blocks_max(const zp_req *r);
/* The cache (NULL: none), for tests: its hooks and counts. */
zp_kv *zp_fwd_kv(zp_fwd *f);

/* One forward over reqs; the tokens it computes (its prompt tokens, less
   those reused) at most batch_tokens_max, each sequence at most
   batch_tokens_max tokens long; fills their results. 0, or -1 with e set
   (results undefined) when the expert source failed (its error; f is as
   good as before) or the device faulted ("device fault: <call>: <why>";
   f's backend is then unusable: zp_fwd_status says so, and the owner frees
   f and builds a new one). */
int zp_fwd_run(zp_fwd *f, zp_req **reqs, int nreq, zp_err *e);

/* The backend's status (backend.h, non-blocking): 0, or -1 with e set when
   it has a device fault and every later run would fail. */
int zp_fwd_status(zp_fwd *f, zp_err *e);

/* The last run's prefix reuse, for the scheduler: hit_tokens[s] (nreq of
   them) = tokens of sequence s taken from the cache or a sibling; the keys of
   blocks evicted from the cache, or that could not be inserted (every block
   pinned), into evicted[cap]. Returns the number of keys written (<= cap);
   *overflow when there were more. Without a cache nothing is inserted and
   nothing reported. */
int zp_fwd_kv_report(zp_fwd *f, int *hit_tokens, zp_blk_key *evicted, int cap, bool *overflow);

/* Seconds spent in the last run, by phase (attention incl. projections, MLP/MoE,
   outputs). */
typedef struct {
	double attn_s, mlp_s, out_s;
	double sync_s;		/* dpep: waiting at the per-layer barriers */
	double flops;		/* linear-layer + attention FLOPs of the last run */
	float min_route_gap;	/* smallest router logit gap between the k-th chosen
				   expert and the best one left out (inf: dense) */
	/* prefix reuse (zp_fwd_set_prefix) */
	long prompt_tokens;	/* the sequences' tokens */
	long computed_tokens;	/* of them, run through the model */
	long cache_hit_tokens;	/* taken from the cache */
	long sibling_tokens;	/* taken from a sibling's rows */
	int kv_blocks;		/* blocks resident after the run */
	int kv_evictions;	/* blocks the run evicted */
} zp_fwd_stats;
zp_fwd_stats zp_fwd_last_stats(const zp_fwd *f);

#endif

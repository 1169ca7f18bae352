/* scheduler.h -- the request queue and batch formation, for the server and the
   offline `zprefill prefill` alike: admission bounded in requests and in
   tokens, and batches cut by the token budget (or the sequence cap of one
   forward) after a short bounded wait, under one of four policies
   (DESIGN.md section 4):
     fifo          one queue in arrival order; whichever executor is idle
                   takes the next batch from its front (the old scheduler).
     prefix_flops  fifo's moments and budget, a better order: an idle
                   executor cuts when fifo would (the queue holds a
                   forward's budget or sequences, or its oldest has waited
                   batch_wait_s), from the same queue (nothing is bound to
                   an executor before its batch is cut), taking jobs in
                   classes, each in arrival order: those passed over
                   aging_s ago (left while a younger job went); those whose
                   longest prefix match (committed or pending blocks of the
                   shadow below) is on this executor; those that match
                   nowhere (then the jobs past the scan); each with the
                   scanned jobs sharing its first block (siblings: one
                   forward computes the prefix once); last, those another
                   executor up holds more of, only to fill the forward to
                   the knee (the size where measured tokens/s levels off;
                   unmeasured: the budget). With no match anywhere and no
                   sharing that is arrival order: fifo's batches at fifo's
                   moments, so it cannot lose to fifo there (test_sched's
                   fifo_twin). No executor idles while a batch is due; a
                   job left for the executor holding its prefix waits for
                   that one's forward, which takes it first, and aging_s
                   more if passed over there. The scan covers the first
                   ZP_SCHED_SCAN queued jobs, hashing at most the head's
                   blocks, ZP_SCHED_PICK_BLOCKS more and one first block
                   per job.
     least_tokens  FIFO routing, at once, to the executor with the fewest
                   routed-and-unfinished tokens.
     vllm          FIFO routing, at once, to the least waiting x 4 + running
                   sequences (vLLM's data-parallel load balancer).
   The shadow (routing policies, when executors have a prefix cache): per
   executor, the blocks (prefix.h keys) it committed, from its completion
   records, and those pending, routed and not yet back. It is a hint: a full
   table forgets (never a wrong answer, only a worse route).
   T = gather_s x flops_per_s x gamma: the least work per layer that hides
   one layer's gather (not the most a forward carries): from the calibration,
   kept current by the medians of a window of what forwards measure
   (zp_sched_batch_done; an outlier moves neither), within [the linear FLOPs
   of min_tokens tokens, those of a full forward]; a move of 25% or more is
   logged. Where no gather is measured T is its floor. T is measured and
   reported, and moves no cut: cutting early at T made prefix_flops's
   forwards smaller than fifo's (fewer siblings, lower GEMM efficiency).
   Every policy cuts a batch by the tokens its forward computes: a sequence
   whose leading blocks an earlier sequence of the batch computes (a
   sibling, forward.h) counts only the rest; cache hits, which the forward
   may not find (an eviction), do not lower the count.
   Owned by the engine (engine.h), which alone calls it, on its owner thread
   (the reactor, or the prefill driver); the server reads its gauges. A batch
   is handed to one executor by the engine and comes back whole. */
#ifndef ZP_SCHED_H
#define ZP_SCHED_H

#include <stdbool.h>

#include "cost.h"
#include "forward.h"
#include "job.h"
#include "prefix.h"
#include "ring.h"

/* A batch: one forward's sequences. Lives in its executor's slab (executor.h);
   the owner fills it, the executor writes the results and the fields marked. */
typedef struct {
	zp_req *req[ZP_FWD_SEQS_MAX];	/* the sequences, in queue order */
	zp_job *job[ZP_FWD_SEQS_MAX];	/* the job each belongs to */
	int n, tokens;
	/* engine */
	zp_rec rec;			/* its slot and generation in its executor's slab */
	int exec;			/* the executor it belongs to */
	bool filler;			/* dpep: an empty forward that serves experts only */
	/* written by the executor */
	double fwd_s;
	int failed;			/* the forward failed */
	char err[ZP_ERR_LEN];		/* why */
	zp_fwd_stats stats;		/* the forward's phases */

	/* ---- prefix reuse: written by the executor (forward.h's zp_fwd_kv_report).
	   After the batch every full leading block of each of its sequences was
	   inserted into its executor's prefix cache, then perhaps evicted: the
	   evicted keys are listed (none when it has no cache). ---- */
	int kv_hit_tokens[ZP_FWD_SEQS_MAX];	/* per sequence: tokens served from the
						   cache or a sibling, not computed */
	int kv_evicted_n;			/* keys in kv_evicted */
	bool kv_evicted_overflow;		/* more were evicted than kv_evicted holds:
						   forget the shadow of this executor */
	zp_blk_key kv_evicted[ZP_KV_EVICT_REPORT];
} zp_batch;

enum zp_sched_policy { ZP_SCHED_PREFIX_FLOPS, ZP_SCHED_FIFO, ZP_SCHED_LEAST_TOKENS, ZP_SCHED_VLLM };
#define ZP_SCHED_POLICY_DEFAULT ZP_SCHED_PREFIX_FLOPS
/* "prefix_flops", "fifo", "least_tokens" or "vllm" -> *p: 0, or -1. */
int zp_sched_policy_parse(const char *s, enum zp_sched_policy *p);
const char *zp_sched_policy_name(enum zp_sched_policy p);

#define ZP_SCHED_LOCAL_MAX (2 * ZP_FWD_SEQS_MAX) /* routed, uncut sequences per executor:
						    full is saturated */
#define ZP_SCHED_SCAN 256		/* queued jobs one prefix_flops cut orders */
#define ZP_SCHED_PICK_BLOCKS 16384	/* blocks one cut hashes beyond the head job's */
#define ZP_SCHED_WINDOW 32		/* measurements of each of T's inputs kept */
#define ZP_SCHED_KNEE_BUCKETS 16	/* forward sizes 16 << k computed tokens */
#define ZP_SCHED_KNEE_WINDOW 8		/* tokens/s measurements kept per size */
#define ZP_SCHED_KNEE_LEVEL 0.9		/* the knee: the smallest size within this of the best */
#define ZP_SCHED_SHADOW_MAX (1 << 20)	/* shadow table slots per executor, at most */

typedef struct {
	zp_job *job;
	int seq;			/* job->seq[seq] */
	int ctok;			/* tokens it computes there (after the matched blocks) */
	double cost;			/* its Delta on this executor when routed */
} zp_sched_ent;

typedef struct {
	zp_blk_key key;
	int pending;			/* routed sequences holding the block, not yet back */
	bool committed, used;
} zp_sched_blk;

typedef struct {
	zp_sched_ent *q;		/* [ZP_SCHED_LOCAL_MAX] ring: routed, not yet cut (least_tokens, vllm) */
	int q_head, q_n;
	long q_tokens;
	long q_ctok;			/* their tokens after the matches when routed */
	double q_cost;
	bool out;			/* a batch cut for it has not come back */
	double out_cost;
	long out_tokens;
	int out_seqs;
	zp_sched_blk *tab;		/* the shadow: open addressing, [mask + 1]; NULL: none */
	unsigned mask;
	long used, committed;
} zp_sched_exec;

typedef struct {
	enum zp_sched_policy policy;
	int executors;
	const zp_config *model;		/* for the cost model */
	/* calibration (asyncep.h's zp_place_calib); gather_s 0: none, T is
	   infinite until forwards measure both */
	double gather_s, flops_per_s, gamma;
	double aging_s;
	int min_tokens;			/* T's floor, in tokens (linear FLOPs per layer) */
	long shadow_blocks;		/* per executor: blocks its prefix cache holds (0: no
					   cache, no shadow) */
	long shadow_pending;		/* pending blocks the shadow makes room for */
} zp_sched_cfg;

typedef struct {
	int requests_max;		/* jobs admitted and not yet answered */
	long tokens_max;		/* their tokens */
	int batch_tokens_max;		/* tokens in one forward (ini: max_batch_tokens) */
	double batch_wait_s;		/* longest a queued sequence waits for company */
	zp_job *head, *tail;		/* jobs with sequences not yet dispatched (routed) */
	int requests;			/* admitted, not finished */
	long tokens;
	long queued_tokens;		/* not yet dispatched */
	int queued_seqs;
	/* the policy (zp_sched_setup; fifo until then) */
	enum zp_sched_policy policy;
	int nexec;
	zp_cost cost;
	double gather_s, flops_per_s, gamma, threshold; /* threshold: T, FLOPs per layer */
	double threshold_min;		/* T's floor */
	double aging_s;
	long shadow_blocks;
	long aged;			/* sequences cut first by the aging rule */
	/* executors lost (zp_sched_set_down) and the sequences to run again
	   (zp_sched_requeue): a ring cut before anything else */
	uint64_t down;			/* bit x: executor x takes nothing routed */
	zp_sched_ent *retry;		/* [retry_cap] */
	int retry_head, retry_n, retry_cap;
	zp_sched_exec *ex;		/* [nexec] */
	/* T's inputs: rings of the last ZP_SCHED_WINDOW measurements */
	double win_gather[ZP_SCHED_WINDOW], win_rate[ZP_SCHED_WINDOW];
	int win_gather_n, win_rate_n;	/* measurements so far (the ring: the last) */
	double threshold_max;		/* T's cap: a full forward's linear FLOPs */
	double threshold_logged;	/* T when it was last logged */
	long threshold_moves;		/* moves of 25% or more (each logged) */
	/* the knee: tokens/s of forwards by size (16 << k computed tokens) */
	double knee_rate[ZP_SCHED_KNEE_BUCKETS][ZP_SCHED_KNEE_WINDOW];
	int knee_n[ZP_SCHED_KNEE_BUCKETS];
	int knee_tokens;		/* where tokens/s levels off (reported) */
	long pick_hashed_max;		/* the most blocks one prefix_flops cut hashed */
} zp_sched;

void zp_sched_init(zp_sched *s, int requests_max, long tokens_max, int batch_tokens_max,
		   double batch_wait_s);
/* The policy and what it needs (after init, before the first admit);
   allocates every table it will use. */
void zp_sched_setup(zp_sched *s, const zp_sched_cfg *c);
/* Frees what setup allocated. */
void zp_sched_free(zp_sched *s);

/* Admit a built job. A sequence over batch_tokens_max is cut into a batch of
   its own (the forward must be sized for it: prefill's long prompts). 0, or
   -1 when the queue is full (the caller answers 503 and frees the job). */
int zp_sched_admit(zp_sched *s, zp_job *j, double now);

/* Cut the next batch for executor b->exec into b when one is due at now: the
   budget (tokens computed, or ZP_FWD_SEQS_MAX sequences) is reached, or the
   oldest waiting sequence has waited batch_wait_s, or force. least_tokens
   and vllm route queued sequences to the executors' rings first.
   Returns b->n (0: none due; *wake_at then says when one will be, or 0 when
   none will be before something comes back or arrives). */
int zp_sched_next_batch(zp_sched *s, double now, bool force, zp_batch *b, double *wake_at);

/* What a forward measured, for T's windows (0: no measurement). */
typedef struct {
	double gather_s;		/* one layer's gather, when the forward was gather-bound */
	double wait_s;			/* the forward's exposed gather wait (inside mlp_s) */
} zp_sched_obs;
/* b came back (before its sequences' zp_sched_seq_done): its executor's load
   drops, its blocks move from pending to committed, minus what it evicted;
   T's inputs take in what it measured. */
void zp_sched_batch_done(zp_sched *s, const zp_batch *b, const zp_sched_obs *o);

/* L_i of executor x (FLOPs per layer: routed and not back); 0 under fifo. */
double zp_sched_load(const zp_sched *s, int x);
/* Leading blocks of r the shadow holds on executor x (committed or pending). */
int zp_sched_match(const zp_sched *s, int x, const zp_req *r);

/* A sequence of j came back (or was dropped). true when j is now complete:
   the caller answers (or, if cancelled, frees) it and calls zp_sched_finish. */
bool zp_sched_seq_done(zp_sched *s, zp_job *j);

/* j's client has gone: its undispatched sequences are dropped. true when
   nothing of it is out (free it now); otherwise the last batch frees it. */
bool zp_sched_cancel(zp_sched *s, zp_job *j);

/* Sequence seq of j (dispatched) was lost with its executor, not finished:
   it is queued again, ahead of everything, for whichever executor cuts the
   next batch (after zp_sched_batch_done of the batch that held it). */
void zp_sched_requeue(zp_sched *s, zp_job *j, int seq);
/* Executor x is lost (down) or back: a down executor is routed nothing, and
   the sequences routed to it and not yet cut are queued again for the
   others (zp_sched_requeue's queue). The caller cuts it no batch while
   down. */
void zp_sched_set_down(zp_sched *s, int x, bool down);

/* A job with a sequence still queued (admitted, routed or to run again:
   not out), or NULL: the engine fails them when no executor can run them. */
zp_job *zp_sched_first_queued(const zp_sched *s);

/* j left the system (answered or freed): release its admission. */
void zp_sched_finish(zp_sched *s, zp_job *j);

#endif

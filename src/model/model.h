/* model.h -- a loaded Qwen3(-MoE) model: config, checkpoint (mmapped while it loads), and the
   weights packed through the layout of the device that runs them (weights.h;
   model/ knows no backend). Dense weights live in one arena; each MoE layer's
   experts live in one contiguous block, expert by expert in index order
   (gate_up then down per expert), so a shard of experts is one byte range
   (what AsyncEP gathers, DESIGN.md section 3). Loaded by one thread; read-only
   afterwards and shared by every executor thread. */
#ifndef ZP_MODEL_H
#define ZP_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "config.h"
#include "weights.h"
#include "safetensors.h"

typedef struct {
	float *attn_norm;	/* [H] */
	float *q_norm, *k_norm;	/* [d] */
	zp_wmat wqkv;		/* [(Nq + 2 Nkv) d, H]: q rows, then k, then v */
	float *bqkv;		/* [(Nq + 2 Nkv) d] or NULL (attention_bias) */
	zp_wmat wo;		/* [H, Nq d] */
	float *bo;		/* [H] or NULL */
	float *ffn_norm;	/* [H] */
	bool sparse;		/* MoE block, else dense MLP */
	/* dense MLP */
	zp_wmat w_gate_up;	/* [2F, H] gate then up rows, SWIGLU kind: the layout
				   arranges them for ZP_EPI_SWIGLU */
	zp_wmat w_down;		/* [H, F] */
	/* MoE */
	zp_wmat router;		/* [E, H], always f32: expert choice must not flip */
	zp_wmat *exp_gate_up;	/* [E] of [2F', H], SWIGLU kind */
	zp_wmat *exp_down;	/* [E] of [H, F'] */
	void *experts;		/* the contiguous block, experts_bytes long */
	size_t experts_bytes;
	size_t expert_bytes;	/* one expert's share of it */
} zp_layer;

typedef struct {
	zp_config cfg;
	enum zp_wtype wtype;	/* compute type of the big matrices */
	const zp_wlayout *layout;	/* every matrix was packed through it */
	zp_st st;			/* the checkpoint: closed once loaded */
	const zp_st_tensor *embed;	/* [V, H], the model's own copy (checkpoint
					   dtype), read row by row */
	float *final_norm;		/* [H] */
	zp_wmat lm_head;		/* [V, H] */
	zp_layer *layers;
	void *arena;			/* dense weights in compute layout */
	size_t arena_bytes;
	size_t expert_bytes_total;
	bool random;			/* --random-weights: every weight made from seed
					   (random_fill.h); embed is a made tensor (no data) */
	uint64_t seed;
} zp_model;

/* Load progress, read by another thread (the server's /health) while a load
   runs; setting cancel makes the load stop after the current layer and fail. */
typedef struct {
	_Atomic int layers_done, layers;
	_Atomic bool cancel;
} zp_load_progress;

/* Load dir (config.json + safetensors). wtype: ZP_W_F32 (exact) or ZP_W_BF16;
   every matrix packed through lay (the device's: zp_device_layout); threads pack each layer's experts in parallel; progress may be NULL. 0, or
   -1 with e naming what is wrong (nothing left allocated): a missing or
   misshapen tensor, or one holding a NaN or Inf (every value is scanned as
   it is packed). */
int zp_model_load(zp_model *m, const char *dir, enum zp_wtype wtype, const zp_wlayout *lay,
		  int threads, zp_load_progress *progress, zp_err *e);
/* The index of t's first NaN or Inf (f32, bf16, f16, f64), or -1: the scan
   zp_model_load runs over every tensor, at memory speed. */
int64_t zp_model_nonfinite_at(const zp_st_tensor *t);
/* The same from dir's config.json alone (no checkpoint read): every weight
   made from seed by random_fill.h, norm weights 1. For benchmarks at real
   shapes; the host memory is what a checkpoint of that shape would take. */
int zp_model_load_random(zp_model *m, const char *dir, enum zp_wtype wtype,
			 const zp_wlayout *lay, int threads, uint64_t seed,
			 zp_load_progress *progress, zp_err *e);
void zp_model_free(zp_model *m);

/* Free every MoE layer's expert block (AsyncEP keeps its own shards); the
   layers' exp_gate_up/exp_down then point nowhere (data NULL) and
   expert_bytes_total becomes 0. */
void zp_model_drop_experts(zp_model *m);

/* Bytes of one expert (gate_up then down) in layout lay: a MoE layer's block
   is experts x this. Needs only the config (sizing, placement). */
size_t zp_model_expert_bytes(const zp_config *c, enum zp_wtype wtype, const zp_wlayout *lay);

/* Row `tok` of the embedding, as f32 into out[H]. */
void zp_model_embed(const zp_model *m, int tok, float *out);

#endif

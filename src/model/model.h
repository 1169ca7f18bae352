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
	bool fp8;		/* linears stored FP8 (weights.h ZP_WS_FP8): an fp8
				   checkpoint's, or quantised at load; each zp_wmat
				   says its own store (lm_head, routers never FP8) */
	enum zp_wstore expert_store;	/* every expert's (one block size) */
	enum zp_fp8_compute fp8_compute; /* how a backend computes the FP8 linears
					    (--fp8-compute; AUTO: its default) */
	const zp_wlayout *layout;	/* every matrix was packed through it */
	zp_st st;			/* the checkpoint: mapped, not read once loaded
					   (its tensor table serves gds_load.c) */
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
   it is packed; FP8: NaN codes, and NaN or Inf in W_scale_inv). */
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

/* Both of the above, and FP8 storage. An fp8 checkpoint (config.json's
   quantization_config) loads its F8_E4M3 linears as FP8 whatever fp8 says;
   fp8 quantises a plain checkpoint's attention and MLP/expert linears at
   load (weights.h zp_fp8_quantize; vLLM's --quantization fp8), as random
   weights of an fp8 config are. wtype stays the compute type. A layout
   without fp8 (weights.h) refuses an FP8 model. */
typedef struct {
	enum zp_wtype wtype;
	bool fp8;
	enum zp_fp8_compute fp8_compute;	/* recorded on the model (zp_model) */
	bool random;		/* zp_model_load_random, from seed */
	uint64_t seed;
} zp_load_opts;
int zp_model_load_opts(zp_model *m, const char *dir, const zp_load_opts *o,
		       const zp_wlayout *lay, int threads, zp_load_progress *progress, zp_err *e);

/* --dtype as the user spells it: fp32 and bf16 are the compute type (the
   same numbers as enum zp_wtype); fp8 is bf16 compute over FP8 weights (an
   fp8 checkpoint's, or a plain checkpoint's quantised at load). */
enum zp_dtype_arg { ZP_DTYPE_FP32 = ZP_W_F32, ZP_DTYPE_BF16 = ZP_W_BF16, ZP_DTYPE_FP8 };
/* The load options --dtype d (enum zp_dtype_arg) and --random-weights seed
   (< 0: none) ask for. */
zp_load_opts zp_load_opts_of(int dtype, long random_seed);
/* What a loaded model computes, for logs: "fp32", "bf16", or with FP8
   weights "fp32/fp8", "bf16/fp8" (compute / weights). */
const char *zp_model_dtype_name(const zp_model *m);
void zp_model_free(zp_model *m);

/* Free every MoE layer's expert block (AsyncEP keeps its own shards); the
   layers' exp_gate_up/exp_down then point nowhere (data NULL) and
   expert_bytes_total becomes 0. */
void zp_model_drop_experts(zp_model *m);

/* Bytes of one expert (gate_up then down) in layout lay: a MoE layer's block
   is experts x this. Needs only the config (sizing, placement). */
size_t zp_model_expert_bytes(const zp_config *c, enum zp_wtype wtype, enum zp_wstore store,
			     const zp_wlayout *lay);

/* Row `tok` of the embedding, as f32 into out[H]. */
void zp_model_embed(const zp_model *m, int tok, float *out);

#endif

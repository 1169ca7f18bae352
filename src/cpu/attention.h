/* attention.h -- causal GQA self-attention of one sequence on the CPU, for one
   KV head and a block of query positions, as transformers' eager attention:
   softmax(q.k * d^-0.5 over keys <= query) . v, in f32. Every query's sums run
   in one fixed order (keys ascending, d ascending), whatever else is computed
   alongside. Called from pool tasks; each caller brings its own scratch. */
#ifndef ZP_ATTENTION_H
#define ZP_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
	const float *qkv;	/* [tokens, ld]: q heads, then k heads, then v heads */
	size_t ld;		/* floats per token row */
	int heads, kv_heads, d;
	float *out;		/* [tokens, ldo]: heads x d */
	size_t ldo;
	float *kt;		/* [kv_heads * d, ldk]: K transposed, filled by
				   zp_attn_transpose_k; 16 zero columns past the last token */
	size_t ldk;		/* >= tokens + 16 */
} zp_attn;

/* K of tokens [t0, t1) into a->kt (every KV head); run before zp_attn_block. */
void zp_attn_transpose_k(const zp_attn *a, int t0, int t1);

/* Floats of scratch one call needs for blocks of up to q_block queries whose
   last query is below q_max. */
size_t zp_attn_scratch_floats(const zp_attn *a, int q_block, int q_max);

/* Queries [q0, q1) of the sequence whose first token row is s0, for the q heads
   of KV head kvh. */
void zp_attn_block(const zp_attn *a, int s0, int kvh, int q0, int q1, float *scratch);

/* The plain reference: one query of one head, scalar, for tests. */
void zp_attn_ref(const zp_attn *a, int s0, int h, int q);

#endif

/* ---- bf16 attention on AMX (bf16 mode, head_dim a multiple of 32) ------------
   Each sequence's K and V are packed in 32-key panels that start at the
   sequence's first token (key slot ks0, a multiple of 32), so the order of every
   sum depends on the sequence alone, never on its place in the batch. Scores
   and P.V run as 32 x 32 AMX blocks; softmax in f32; P rounded to bf16 as
   transformers' bf16 attention does. */
typedef struct {
	int heads, kv_heads, d;
	const uint16_t *q16;	/* [tokens + 32, ldq]: bf16 q heads (after norm, RoPE) */
	size_t ldq;
	uint16_t *kp;		/* [kv_heads][slots / 32 panels][d/2][32][2] */
	uint16_t *vp;		/* [kv_heads][d / 32][slots / 2][32][2] */
	size_t slots;		/* key slots of capacity (a multiple of 32) */
	float *out;		/* [tokens, ldo] f32: heads x d */
	size_t ldo;
} zp_attn16;

/* Pack token t's K and V (f32 rows of qkv, as zp_attn) into key slot `slot`. */
void zp_attn16_pack(const zp_attn16 *a, const float *qkv_row, size_t slot);
/* Zero key slots [s0, s1) (a sequence's padding up to its last panel). */
void zp_attn16_clear(const zp_attn16 *a, size_t s0, size_t s1);
size_t zp_attn16_scratch_bytes(int q_max);
/* Queries [q0, q1) (q1 - q0 <= 32) of the sequence whose first token row is s0
   and first key slot ks0, for the q heads of KV head kvh. */
void zp_attn16_block(const zp_attn16 *a, int s0, size_t ks0, int kvh, int q0, int q1,
		     void *scratch);

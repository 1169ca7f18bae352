/* attention.h -- causal GQA self-attention of one sequence on the CPU, for one
   KV head and a block of query positions, as transformers' eager attention:
   softmax(q.k * d^-0.5 over keys <= query) . v, in f32. Every query's sums run
   in one fixed order (keys ascending, d ascending), whatever else is computed
   alongside. Called from pool tasks; each caller brings its own scratch. */
#ifndef ZP_ATTENTION_H
#define ZP_ATTENTION_H

#include <stddef.h>

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

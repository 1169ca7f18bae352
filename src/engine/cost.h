/* cost.h -- the true-FLOPs cost of a sequence (DESIGN.md section 4), for the
   scheduler's loads L_i and threshold T. A sequence of n prompt tokens whose
   first M are cached on an executor computes S = n - M tokens; with a prefix
   of P tokens (M of them cached) before a suffix of S, per layer:
     C_pfx(P - M)   the uncached prefix tokens: linear parts and their causal
                    self-attention pairs (P(P+1)/2 - M(M+1)/2),
     C_FFN(S)       the suffix's linear parts: q/k/v/o projections, router and
                    top-k active experts (MoE layers) or the dense MLP,
     C_self(S^2)    the suffix's causal pairs S(S+1)/2,
     C_cross(S x P) each suffix token against every prefix key,
   an attention pair costing 4 Nq d (scores and values). Costs are mean FLOPs
   per layer (the sum over layers / layers, the unit of T), plus the lm_head
   rows the outputs ask for spread over the layers. Pure; any thread. */
#ifndef ZP_COST_H
#define ZP_COST_H

#include "config.h"
#include "request.h"

typedef struct {
	int layers;
	double lin_tok;		/* linear FLOPs of one token, summed over layers */
	double mlp_tok;		/* of which the MLP (router + active experts, or dense) */
	double pair;		/* one attention (query, key) pair, summed over layers */
	double head_row;	/* one lm_head row: 2 H V */
} zp_cost;

void zp_cost_init(zp_cost *c, const zp_config *cfg);

/* Delta of a prefix of P tokens (M <= P of them cached) and a suffix of S,
   with rows lm_head rows: mean FLOPs per layer. */
double zp_cost_delta(const zp_cost *c, long P, long M, long S, long rows);
/* A sequence of n tokens whose first M are cached: zp_cost_delta(M, M, n - M). */
double zp_cost_seq(const zp_cost *c, long n, long M, long rows);
/* The lm_head rows r's outputs need: the last position's for candidates or
   top-k, one per position predicting a prompt log-prob; none for pooling. */
long zp_cost_rows(const zp_req *r);

#endif

/* cost.c -- see cost.h. */
#include "cost.h"

#include <string.h>

#include "util.h"

void zp_cost_init(zp_cost *c, const zp_config *cfg)
{
	memset(c, 0, sizeof *c);
	double H = cfg->hidden, d = cfg->head_dim, nq = cfg->heads, nkv = cfg->kv_heads;
	double proj = 2 * H * (nq * d + 2 * nkv * d) + 2 * nq * d * H;
	c->layers = cfg->layers;
	for (int l = 0; l < cfg->layers; l++) {
		double lf = zp_config_layer_flops(cfg, l);
		c->lin_tok += lf;
		c->mlp_tok += lf - proj;
	}
	c->pair = 4.0 * nq * d * cfg->layers;
	c->head_row = 2.0 * H * cfg->vocab;
}

double zp_cost_delta(const zp_cost *c, long P, long M, long S, long rows)
{
	ZP_ASSERT(0 <= M && M <= P && S >= 0 && rows >= 0 && c->layers > 0);
	double p = (double)P, m = (double)M, s = (double)S;
	double pfx = c->lin_tok * (p - m) + c->pair * (p * (p + 1) / 2 - m * (m + 1) / 2);
	double ffn = c->lin_tok * s;
	double self = c->pair * s * (s + 1) / 2;
	double cross = c->pair * s * p;
	return (pfx + ffn + self + cross + c->head_row * (double)rows) / c->layers;
}

double zp_cost_seq(const zp_cost *c, long n, long M, long rows)
{
	return zp_cost_delta(c, M, M, n - M, rows);
}

long zp_cost_rows(const zp_req *r)
{
	long rows = (r->want_cands || r->top_k > 0) ? 1 : 0;
	if (r->plp_start >= 0) /* positions max(start, 1) - 1 .. n - 2 predict the next token */
		rows += r->ntok - ZP_MAX(r->plp_start, 1);
	return rows;
}

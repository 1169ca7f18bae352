/* api_embed.c -- pooled final states: POST /v1/embeddings (OpenAI's shape,
   last token, normalised; float or base64; dimensions keeps the first ones,
   renormalised) and POST /pooling (last or mean, normalize off by default).
   Reactor thread. */
#include <string.h>

#include "endpoints.h"
#include "util.h"

/* /v1/embeddings (OpenAI: last token, normalised) and /pooling (the pooled
   final-norm state: "pooling" last or mean, "normalize" off by default). */
static int build_embed(zp_api_call *c, bool pooling)
{
	int32_t *ids = c->ids;
	static const char *const known[] = { "input", "model", "encoding_format", "user",
					     "dimensions", NULL };
	static const char *const known_p[] = { "input", "model", "encoding_format", "pooling",
					       "normalize", "dimensions", NULL };
	const cJSON *in = zp_api_field(c->root, "input"), *fmt = zp_api_field(c->root, "encoding_format");
	const cJSON *pl = zp_api_field(c->root, "pooling");
	int rc, nin;
	bool norm = true;
	if ((rc = zp_api_check_fields(c, pooling ? known_p : known)) ||
	    (rc = zp_api_get_list(c, in, "input", true, &nin)))
		return rc;
	if ((pooling && (rc = zp_api_get_bool(c, "normalize", &norm))) ||
	    (rc = zp_api_get_dims(c, &c->job->dims)))
		return rc;
	enum zp_pooling mode;
	if (!zp_req_pooling(pl, ZP_POOLING_LAST, &mode))
		return zp_api_bad(c, "pooling", "pooling must be \"last\" or \"mean\"");
	c->job->pooling_ep = pooling;
	if (fmt && (!cJSON_IsString(fmt) || (strcmp(fmt->valuestring, "float") &&
					     strcmp(fmt->valuestring, "base64"))))
		return zp_api_bad(c, "encoding_format", "encoding_format must be \"float\" "
				  "or \"base64\"");
	c->job->base64 = fmt && strcmp(fmt->valuestring, "base64") == 0;
	if (zp_api_field(c->root, "user") && !cJSON_IsString(zp_api_field(c->root, "user")))
		return zp_api_bad(c, "user", "user must be a string");
	if ((rc = zp_api_alloc_seqs(c, nin)))
		return rc;
	c->job->nout = nin;
	for (int i = 0; i < nin; i++) {
		int n;
		if ((rc = zp_api_get_tokens(c, zp_api_list_item(in, i), "input", ids, &n)) ||
		    (rc = zp_api_add_seq(c, ids, n, "input")))
			return rc;
		zp_req *r = &c->job->eng.seq[i];
		r->pool = mode;
		r->normalize = norm;
		r->emb_dim = c->a->lim.hidden;
		if ((rc = zp_api_seq_floats(c, r->emb_dim, &r->emb)))
			return rc;
	}
	return 0;
}

int zp_api_embed_build(zp_api_call *c)
{
	return build_embed(c, false);
}

int zp_api_pooling_build(zp_api_call *c)
{
	return build_embed(c, true);
}

static void base64(zp_buf *out, const uint8_t *p, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char q[4];
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		q[0] = tab[v >> 18];
		q[1] = tab[(v >> 12) & 63];
		q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? tab[v & 63] : '=';
		zp_buf_put(out, q, 4);
	}
}

void zp_api_embed_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	zp_buf_puts(out, "{\"object\":\"list\",\"data\":[");
	for (int i = 0; i < j->nout; i++) {
		zp_req *r = &j->eng.seq[i];
		zp_api_emb_dims(r, j->dims); /* "dimensions": Matryoshka's cut */
		zp_buf_printf(out, j->pooling_ep ? "%s{\"object\":\"pooling\",\"index\":%d,\"data\":" :
			      "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
		if (j->base64) { /* little-endian float32, as OpenAI's */
			zp_buf_puts(out, "\"");
			base64(out, (const uint8_t *)r->emb, (size_t)r->emb_dim * sizeof(float));
			zp_buf_puts(out, "\"}");
			continue;
		}
		zp_buf_puts(out, "[");
		for (int k = 0; k < r->emb_dim; k++) {
			zp_buf_puts(out, k ? "," : "");
			zp_buf_json_float(out, r->emb[k]);
		}
		zp_buf_puts(out, "]}");
	}
	zp_buf_puts(out, "]");
	zp_api_model_field(a, out);
	zp_api_usage(out, j->eng.tokens);
	zp_buf_puts(out, "}");
}


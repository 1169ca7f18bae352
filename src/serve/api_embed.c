/* api_embed.c -- pooled final states: POST /v1/embeddings (OpenAI's shape,
   last token, normalised unless normalize is false; float or base64 in
   float32, float16, bfloat16, fp8_e4m3 or fp8_e5m2 (vLLM's embed_dtype, as
   torch's .to() rounds); dimensions keeps the first ones,
   renormalised; truncate_prompt_tokens as vLLM) and POST /pooling (last or
   mean, normalize off by default, vLLM's task "embed" only). Reactor thread. */
#include <math.h>
#include <string.h>

#include "endpoints.h"
#include "util.h"

/* vLLM's embed_dtype and endianness of base64 output: *dt 0 float32, 1
   float16, 2 bfloat16, 3 fp8_e4m3, 4 fp8_e5m2; *big: big-endian (one-byte
   values have no order). */
enum { DT_F32, DT_F16, DT_BF16, DT_E4M3, DT_E5M2, DT_COUNT };

static int get_dtype(zp_api_call *c, int *dt, bool *big)
{
	static const char *const names[DT_COUNT] = { "float32", "float16", "bfloat16", "fp8_e4m3",
						      "fp8_e5m2" };
	const cJSON *d = zp_api_field(c->root, "embed_dtype"), *e = zp_api_field(c->root, "endianness");
	*dt = 0;
	*big = false;
	if (d) {
		*dt = -1;
		for (int k = 0; k < DT_COUNT && cJSON_IsString(d); k++)
			if (strcmp(d->valuestring, names[k]) == 0)
				*dt = k;
		if (*dt < 0)
			return zp_api_bad(c, "embed_dtype", "embed_dtype must be \"float32\", \"float16\", "
					  "\"bfloat16\", \"fp8_e4m3\" or \"fp8_e5m2\"");
	}
	if (e && (!cJSON_IsString(e) || (strcmp(e->valuestring, "native") &&
					  strcmp(e->valuestring, "little") && strcmp(e->valuestring, "big"))))
		return zp_api_bad(c, "endianness", "endianness must be \"native\", \"little\" or \"big\"");
	*big = e && strcmp(e->valuestring, "big") == 0;
	return 0;
}

/* vLLM's /pooling task: the pooled state is "embed"'s answer; the others
   (per-token outputs, classification heads) are not served. */
static int get_task(zp_api_call *c)
{
	const cJSON *t = zp_api_field(c->root, "task");
	if (!t || (cJSON_IsString(t) && strcmp(t->valuestring, "embed") == 0))
		return 0;
	if (!cJSON_IsString(t))
		return zp_api_bad(c, "task", "task must be a string");
	return zp_api_bad(c, "task", "Task %.32s is not supported: /pooling serves the pooled "
			  "final-norm state (task \"embed\"); per-token outputs (token_embed, "
			  "token_classify) and heads (classify, score, plugin) are not", t->valuestring);
}

/* The request's settings: fields, normalize, dimensions, pooling,
   encoding_format, embed_dtype, user, truncate_prompt_tokens. */
static int embed_settings(zp_api_call *c, bool pooling, bool *norm, enum zp_pooling *mode,
			  int *keep)
{
	static const char *const known[] = { "input", "model", "encoding_format", "user",
					     "dimensions", "normalize", "truncate_prompt_tokens",
					     "embed_dtype", "endianness", "add_special_tokens",
					     "priority", "request_id", NULL };
	static const char *const known_p[] = { "input", "model", "encoding_format", "pooling",
					       "normalize", "dimensions", "truncate_prompt_tokens",
					       "embed_dtype", "endianness", "task", "add_special_tokens",
					       "priority", "request_id", NULL };
	const cJSON *fmt = zp_api_field(c->root, "encoding_format"), *u = zp_api_field(c->root, "user");
	int rc;
	*norm = !pooling; /* OpenAI's vectors are unit vectors; /pooling's raw unless asked */
	if ((rc = zp_api_check_fields(c, pooling ? known_p : known)) ||
	    (zp_api_field(c->root, "normalize") && (rc = zp_api_get_bool(c, "normalize", norm))) ||
	    (rc = zp_api_get_dims(c, &c->job->dims)) ||
	    (rc = zp_api_get_truncate(c, "truncate_prompt_tokens", keep)) ||
	    (rc = get_dtype(c, &c->job->dtype, &c->job->big_endian)) || (pooling && (rc = get_task(c))))
		return rc;
	if (!zp_req_pooling(zp_api_field(c->root, "pooling"), ZP_POOLING_LAST, mode))
		return zp_api_bad(c, "pooling", "pooling must be \"last\" or \"mean\"");
	if (fmt && (!cJSON_IsString(fmt) || (strcmp(fmt->valuestring, "float") &&
					     strcmp(fmt->valuestring, "base64"))))
		return zp_api_bad(c, "encoding_format", "encoding_format must be \"float\" "
				  "or \"base64\"");
	c->job->base64 = fmt && strcmp(fmt->valuestring, "base64") == 0;
	if (u && !cJSON_IsString(u))
		return zp_api_bad(c, "user", "user must be a string");
	return 0;
}

/* /v1/embeddings (OpenAI: last token, normalised unless normalize is false)
   and /pooling (the pooled final-norm state: "pooling" last or mean,
   "normalize" off by default). truncate_prompt_tokens keeps the last tokens,
   as vLLM does. */
static int build_embed(zp_api_call *c, bool pooling)
{
	const cJSON *in = zp_api_field(c->root, "input");
	int rc, nin, keep;
	bool norm;
	enum zp_pooling mode;
	if ((rc = embed_settings(c, pooling, &norm, &mode, &keep)) ||
	    (rc = zp_api_get_list(c, in, "input", true, &nin)))
		return rc;
	c->job->pooling_ep = pooling;
	if ((rc = zp_api_alloc_seqs(c, nin)))
		return rc;
	c->job->nout = nin;
	for (int i = 0; i < nin; i++) {
		const cJSON *it = zp_api_list_item(in, i);
		int32_t *ids;
		int n;
		if ((rc = cJSON_IsString(it) ? zp_api_encode_all(c, it->valuestring, zp_json_strlen(it),
								 "input", true, &ids, &n)
					     : zp_api_ids_all(c, it, "input", &ids, &n)))
			return rc;
		if (n == 0)
			return zp_api_bad(c, "input", "input %d is empty", i);
		zp_api_truncate(&ids, &n, keep, true);
		if ((rc = zp_api_add_seq(c, ids, n, "input")))
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

/* float32 to float16, round to nearest even (overflow: Inf; NaN stays NaN). */
static uint16_t f32_to_f16(float f)
{
	union { float f; uint32_t u; } v = { .f = f };
	uint16_t sign = (uint16_t)((v.u >> 16) & 0x8000);
	uint32_t a = v.u & 0x7fffffffu;
	if (a > 0x7f800000u)
		return sign | 0x7e00;
	if (a >= 0x477ff000u) /* 65520 and up round to Inf */
		return sign | 0x7c00;
	if (a < 0x38800000u) /* under 2^-14: a subnormal, in units of 2^-24 (exact scaling) */
		return sign | (uint16_t)lrintf(fabsf(f) * 16777216.0f);
	a += 0xfffu + ((a >> 13) & 1u) - 0x38000000u; /* rebias 127 -> 15, round the 13 bits cut */
	return sign | (uint16_t)(a >> 13);
}

/* float32 to an 8-bit float of mb mantissa bits (e4m3fn: 3, bias 7, no
   Inf, 0x7f NaN; e5m2: 2, bias 15, IEEE-like), rounded to nearest even as
   torch's .to(torch.float8_e4m3fn / float8_e5m2) rounds, overflow as it
   does: e4m3fn saturates at 448, e5m2 goes to Inf. */
static uint8_t f32_to_f8(float f, int mb)
{
	bool fn = mb == 3;
	int bias = fn ? 7 : 15, emin = 1 - bias, ex;
	double max = fn ? 448.0 : 57344.0, a = fabs((double)f);
	uint8_t sign = signbit(f) ? 0x80 : 0;
	if (isnan(f))
		return sign | 0x7f;
	if (a == 0)
		return sign;
	frexp(a, &ex);
	ex = ZP_MAX(ex - 1, emin); /* a = 1.x 2^ex, or a subnormal at emin */
	double r = nearbyint(ldexp(a, mb - ex)); /* units in the last place, ties to even */
	if (r >= ldexp(1, mb + 1)) { /* rounded up into the next binade */
		r /= 2;
		ex++;
	}
	if (ldexp(r, ex - mb) > max)
		return sign | (fn ? 0x7e : 0x7c);
	if (r < ldexp(1, mb)) /* subnormal: exponent field 0 */
		return sign | (uint8_t)r;
	return sign | (uint8_t)(((ex + bias) << mb) | ((int)r - (1 << mb)));
}

/* An embedding's values in embed_dtype and byte order, base64 (OpenAI's and
   vLLM's): converted in place over the float32 array (each value is read
   before its narrower copy is written over it). */
static void emb_base64(zp_buf *out, zp_req *r, int dtype, bool big)
{
	uint8_t *b = (uint8_t *)r->emb;
	size_t w = dtype == DT_F32 ? 4 : dtype >= DT_E4M3 ? 1 : 2;
	for (int k = 0; k < r->emb_dim; k++) {
		union { float f; uint32_t u; } v = { .f = r->emb[k] };
		uint32_t x = dtype == DT_F16 ? f32_to_f16(v.f) : dtype == DT_BF16 ? zp_f32_to_bf16(v.f) :
			     dtype == DT_E4M3 ? f32_to_f8(v.f, 3) : dtype == DT_E5M2 ? f32_to_f8(v.f, 2) :
			     v.u;
		for (size_t i = 0; i < w; i++) /* byte i of the value, little- or big-endian */
			b[(size_t)k * w + (big ? w - 1 - i : i)] = (uint8_t)(x >> (8 * i));
	}
	base64(out, b, (size_t)r->emb_dim * w);
}

void zp_api_embed_finish(zp_api *a, zp_api_job *j, zp_buf *out)
{
	zp_buf_puts(out, "{\"object\":\"list\",\"data\":[");
	for (int i = 0; i < j->nout; i++) {
		zp_req *r = &j->eng.seq[i];
		zp_api_emb_dims(r, j->dims); /* "dimensions": Matryoshka's cut */
		zp_buf_printf(out, j->pooling_ep ? "%s{\"object\":\"pooling\",\"index\":%d,\"data\":" :
			      "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
		if (j->base64) { /* little-endian float32 by default, as OpenAI's */
			zp_buf_puts(out, "\"");
			emb_base64(out, r, j->dtype, j->big_endian);
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


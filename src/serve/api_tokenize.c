/* api_tokenize.c -- POST /tokenize and /detokenize (vLLM's shapes): the
   tokenizer alone, answered at once without the model (they work while the
   weights load). Reactor thread. */
#include <math.h>
#include <string.h>

#include "endpoints.h"
#include "util.h"

/* Code point of byte b in GPT-2's byte-level alphabet (the vocabulary's
   spelling of bytes): printable Latin-1 stands for itself, the other bytes
   take 256, 257, ... in byte order. */
static unsigned byte_char(unsigned b)
{
	unsigned k = 0;
	if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
		return b;
	for (unsigned x = 0; x < b; x++)
		k += !((x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff));
	return 256 + k;
}

/* vLLM's return_token_strs: each id as the vocabulary spells it
   (tokenizers' convert_ids_to_tokens: "Ġhello"). An added token is spelled
   as its text, which is the same for the printable ASCII ones Qwen's are
   ("<|im_end|>"); one holding a space or a non-ASCII byte would come out in
   the byte-level alphabet. */
static void token_strs(zp_api_call *c, const int32_t *ids, int n)
{
	char s[4 * 256];
	zp_buf_puts(c->out, ",\"token_strs\":[");
	for (int i = 0; i < n; i++) {
		size_t len, w = 0;
		const char *p = zp_tok_piece(c->a->tok, ids[i], &len);
		for (size_t k = 0; p && k < len && w + 2 < sizeof s; k++) {
			unsigned cp = byte_char((unsigned char)p[k]); /* < 0x800: two UTF-8 bytes at most */
			if (cp < 0x80) {
				s[w++] = (char)cp;
			} else {
				s[w++] = (char)(0xc0 | cp >> 6);
				s[w++] = (char)(0x80 | (cp & 0x3f));
			}
		}
		zp_buf_puts(c->out, i ? "," : "");
		zp_buf_json_strn(c->out, s, w);
	}
	zp_buf_puts(c->out, "]");
}

int zp_api_tokenize_build(zp_api_call *c)
{
	int32_t *ids = c->ids;
	static const char *const known[] = { "prompt", "add_special_tokens", "model",
					     "return_token_strs", NULL };
	const cJSON *p = zp_api_field(c->root, "prompt");
	bool add_special, strs;
	int rc, n;
	if ((rc = zp_api_check_fields(c, known)) ||
	    (rc = zp_api_get_bool(c, "add_special_tokens", &add_special)) ||
	    (rc = zp_api_get_bool(c, "return_token_strs", &strs)))
		return rc;
	if (!cJSON_IsString(p))
		return zp_api_bad(c, "prompt", "prompt must be a string");
	/* The Qwen post-processor adds no tokens, so add_special_tokens changes nothing. */
	zp_req_error err;
	if (zp_req_encode(&c->a->lim, p->valuestring, zp_json_strlen(p), ids, &n, "prompt",
			  &err))
		return zp_api_error(c->out, err.code, err.param, "%s", err.message);
	zp_buf_reset(c->out);
	zp_buf_printf(c->out, "{\"count\":%d,\"max_model_len\":%d,\"tokens\":[", n,
		      c->a->lim.seq_tokens_max);
	for (int i = 0; i < n; i++)
		zp_buf_printf(c->out, "%s%d", i ? "," : "", ids[i]);
	zp_buf_puts(c->out, "]");
	if (strs)
		token_strs(c, ids, n);
	zp_buf_puts(c->out, "}");
	return 200;
}

int zp_api_text_scratch(zp_api_call *c, zp_buf *text)
{
	/* what the parse region has left (the tree of a list of ids is small),
	   no more than the response can hold escaped (6 bytes for a control byte) */
	size_t cap = zp_region_avail(&c->a->parse);
	if (c->out->fixed)
		cap = ZP_MIN(cap, (c->out->cap - ZP_API_ITEM_CHARS) / 6);
	char *mem = cap ? zp_region_alloc(&c->a->parse, cap) : NULL;
	if (!mem)
		return zp_api_full(c, &c->a->parse);
	zp_buf_init_fixed(text, mem, cap);
	return 0;
}

int zp_api_detokenize_build(zp_api_call *c)
{
	int32_t *ids = c->ids;
	static const char *const known[] = { "tokens", "model", NULL };
	const cJSON *t = zp_api_field(c->root, "tokens"), *it;
	int rc, n = 0;
	if ((rc = zp_api_check_fields(c, known)))
		return rc;
	if (!c->a->tok)
		return zp_api_bad(c, "tokens", "the model directory has no tokenizer.json");
	if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) > c->a->lim.seq_tokens_max)
		return zp_api_bad(c, "tokens", "tokens must be an array of at most %d ids",
				  c->a->lim.seq_tokens_max);
	cJSON_ArrayForEach(it, t) {
		double d = it->valuedouble;
		if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d >= zp_tok_vocab_size(c->a->tok))
			return zp_api_bad(c, "tokens", "tokens[%d] is not a token id", n);
		ids[n++] = (int32_t)d;
	}
	zp_buf text;
	if ((rc = zp_api_text_scratch(c, &text)))
		return rc;
	if (zp_tok_decode(c->a->tok, ids, n, &text))
		return zp_api_bad(c, "tokens", "tokens holds an id with no text");
	if (text.overflow)
		return zp_api_error(c->out, ZP_HTTP_ERR_TOO_LARGE, "tokens", "the text of these "
				    "tokens is over the %zu bytes a response may hold", text.cap - 1);
	zp_buf_reset(c->out);
	zp_buf_puts(c->out, "{\"prompt\":");
	zp_buf_json_strn(c->out, text.p, text.len);
	zp_buf_puts(c->out, "}");
	return 200;
}

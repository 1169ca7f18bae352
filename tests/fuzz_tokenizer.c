/* fuzz_tokenizer.c -- libFuzzer target for the tokenizer on the real Qwen3
   tokenizer.json the repository carries (models/default; abort if missing): any valid UTF-8 (NUL
   bytes included) encodes to ids in range, the snprintf contract holds with a
   short output, and decoding gives back the text exactly when it is ASCII
   (NFC leaves ASCII alone). */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tokenizer.h"

/* Valid UTF-8 in which NUL bytes are text too (zp_json_check_utf8 refuses
   them): each NUL-free run checked; a NUL inside a sequence cuts it short. */
static int valid_text(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		const char *z = memchr(p + i, 0, n - i);
		size_t run = z ? (size_t)(z - p) - i : n - i;
		if (zp_json_check_utf8(p + i, run))
			return 0;
		i += run + (z != NULL);
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static zp_tok *t;
	static zp_tok_state *s;
	static int32_t ids[1 << 16];
	if (!t) {
		zp_err e;
		t = zp_tok_load("models/default/tokenizer.json", &e);
		if (!t)
			abort();
		s = zp_tok_state_new(t);
	}
	const char *p = (const char *)data;
	if (size > 4096 || !valid_text(p, size))
		return 0;
	int n = zp_tok_encode(s, p, size, ids, 1 << 16);
	/* at most one id per byte of the NFC form, which may be 3 times the
	   text's bytes (U+1D160 is 4 bytes, its decomposition 12) */
	if (n < 0 || n > 3 * (int)size)
		abort();
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= zp_tok_vocab_size(t))
			abort();
	int32_t few[3];
	if (zp_tok_encode(s, p, size, few, 3) != n || (n >= 3 && memcmp(few, ids, sizeof few)))
		abort();
	zp_buf b;
	zp_buf_init(&b, 64);
	if (zp_tok_decode(t, ids, n, &b))
		abort();
	int ascii = 1;
	for (size_t i = 0; i < size; i++)
		ascii &= data[i] < 0x80;
	if (ascii && (b.len != size || memcmp(b.p, p, size)))
		abort();
	if (!valid_text(b.p, b.len))
		abort(); /* decode output is always valid UTF-8 */
	zp_buf_free(&b);
	return 0;
}

/* fuzz_tokenizer_json.c -- libFuzzer target for the tokenizer.json loader
   (zp_tok_load: cJSON, then the vocab, merges, added tokens and the
   pre-tokenizer head): any bytes give an error or a tokenizer that encodes a
   fixed text to ids in range and decodes them to valid UTF-8. The input is
   handed over as a file (a memfd, the loader reads a path). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "json.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static const char text[] = "Hello, world! 123 \xc3\xa9t\xc3\xa9 <|im_end|>\n  tabs\tx";
	char path[64];
	if (fd < 0 && (fd = memfd_create("tokenizer.json", 0)) < 0)
		abort();
	if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	zp_err e;
	zp_tok *t = zp_tok_load(path, &e);
	if (!t)
		return 0;
	int V = zp_tok_vocab_size(t);
	zp_tok_state *s = zp_tok_state_new(t);
	int32_t ids[256];
	int n = zp_tok_encode(s, text, sizeof text - 1, ids, 256);
	if (n > 3 * (int)sizeof text)
		abort();
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= V)
			abort();
	zp_buf b;
	zp_buf_init(&b, 64);
	if (n >= 0 && zp_tok_decode(t, ids, n, &b) == 0 && zp_json_check_utf8(b.p, b.len))
		abort(); /* decode output is always valid UTF-8 */
	zp_buf_free(&b);
	zp_tok_state_free(s);
	zp_tok_free(t);
	return 0;
}

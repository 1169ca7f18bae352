/* fuzz_request.c -- libFuzzer target for the request path: JSON line -> zp_req
   (strict UTF-8, cJSON, field validation) -> result or error JSON. Every accepted
   request must satisfy the limits the forward pass asserts on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const zp_req_limits lim = { .vocab = 331, .max_tokens = 64, .hidden = 8 };
	zp_req r;
	zp_req_error err;
	zp_buf out;

	zp_buf_init(&out, 256);
	if (zp_req_parse(&r, (const char *)data, size, &lim, &err) == 0) {
		if (r.ntok < 1 || r.ntok > lim.max_tokens || r.top_k < 0 || r.plp_start >= r.ntok)
			abort();
		for (int i = 0; i < r.ntok; i++)
			if (r.tokens[i] < 0 || r.tokens[i] >= lim.vocab)
				abort();
		for (int i = 0; i < r.ncand; i++)
			if (r.cands[i] < 0 || r.cands[i] >= lim.vocab)
				abort();
		zp_req_write_result(&r, &out);
	} else {
		zp_req_write_error(r.id_json, &err, &out);
	}
	zp_req_free(&r);
	zp_buf_free(&out);
	return 0;
}

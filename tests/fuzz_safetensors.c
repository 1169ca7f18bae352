/* fuzz_safetensors.c -- libFuzzer target for the safetensors header parser and
   the shard index parser (`make fuzz`). Input byte 0 picks the parser; for the
   header, bytes 1..8 give the data-section size the offsets are checked against. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static int count_entry(void *ctx, const char *name, const char *file, zp_err *e)
{
	(void)name;
	(void)e;
	*(size_t *)ctx += strlen(file);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	zp_err e;
	if (size < 9)
		return 0;
	if (data[0] & 1) {
		size_t n = 0;
		zp_st_parse_index((const char *)data + 1, size - 1, count_entry, &n, &e);
		return 0;
	}
	uint64_t data_bytes;
	memcpy(&data_bytes, data + 1, 8);
	zp_st_tensor *t = NULL;
	size_t nt = 0;
	if (zp_st_parse_header((const char *)data + 9, size - 9, data_bytes, 0, &t, &nt, &e) == 0)
		for (size_t i = 0; i < nt; i++) { /* every accepted tensor lies inside the data */
			if (t[i].offset + t[i].nbytes > data_bytes)
				abort();
		}
	free(t);
	return 0;
}

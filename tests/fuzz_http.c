/* fuzz_http.c -- libFuzzer target for the HTTP/1.1 head parser: any bytes give
   incomplete, a head, or a 4xx/5xx; a parsed head lies inside the input, its
   path is NUL-terminated and short, its Content-Length within the limit; and
   every prefix of a parsed head is incomplete or an error, never a head. */
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	zp_http_req r;
	const char *p = (const char *)data;
	long n = zp_http_parse(p, size, 1024, 65536, &r);
	if (n > 0) {
		if ((size_t)n > size || strlen(r.path) >= ZP_HTTP_PATH_MAX || r.path[0] != '/' ||
		    r.content_length > 65536 || r.minor < 0 || r.minor > 1)
			abort();
		for (long cut = 0; cut < n; cut++)
			if (zp_http_parse(p, (size_t)cut, 1024, 65536, &r) > 0)
				abort();
	} else if (n < 0) {
		static const int ok[] = { 400, 411, 413, 414, 415, 431, 505 };
		size_t i = 0;
		while (i < sizeof ok / sizeof *ok && ok[i] != -n)
			i++;
		if (i == sizeof ok / sizeof *ok)
			abort();
	}
	return 0;
}

/* test_json_escape.c -- \u escapes in request JSON (fuzz_request's finding,
   issue 17 item 3): JSON's \u takes four hex digits; cJSON read a bad one as
   code point 0, so
     1  "x\uzzzzy" passed zp_json_parse's no-\u0000 rule as a string holding
        a NUL (the C string "x"), and
     2  zp_json_parse_text's length walk (literal_len) lost its place on a
        key holding \u0000 and then a bad \u, and read past the text's end
        (here a guard page: SIGSEGV before the fix).
   Both are refused now; good escapes still parse. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "json.h"
#include "util.h"

/* text at the very end of a page followed by an inaccessible one */
static char *at_page_end(const char *text, size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ZP_ASSERT(m != MAP_FAILED && n <= pg && mprotect(m + pg, pg, PROT_NONE) == 0);
	memcpy(m + pg - n, text, n);
	return m + pg - n;
}

int main(void)
{
	static const char bad_hex[] = "{\"a\":\"x\\uzzzzy\"}";
	static const char short_u[] = "{\"a\":\"x\\u12\"}";
	static const char walk[] = "{\"bXu00\":\"he\",\"bW\\u0000\\usep\\\\\\\\\":0}";
	static const char good[] = "{\"a\":\"\\u00e9\\ud83d\\ude00\\\\u\\\"\"}";
	cJSON *v = zp_json_parse(bad_hex, sizeof bad_hex - 1);
	CHECK(!v, "1: \\uzzzz accepted: \"%s\"", v ? cJSON_GetObjectItem(v, "a")->valuestring : "");
	cJSON_Delete(v);
	v = zp_json_parse(short_u, sizeof short_u - 1);
	CHECK(!v, "1: \\u12 accepted");
	cJSON_Delete(v);
	char *p = at_page_end(walk, sizeof walk - 1);
	v = zp_json_parse_text(p, sizeof walk - 1);
	CHECK(!v, "2: a key with \\u0000 then \\usep accepted");
	cJSON_Delete(v);
	p = at_page_end(good, sizeof good - 1);
	v = zp_json_parse_text(p, sizeof good - 1);
	const char *s = v ? cJSON_GetObjectItem(v, "a")->valuestring : NULL;
	CHECK(s && !strcmp(s, "\xc3\xa9\xf0\x9f\x98\x80\\u\""), "good escapes: %s", s ? s : "(refused)");
	cJSON_Delete(v);
	return check_exit("test_json_escape");
}

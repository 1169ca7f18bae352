/* json.c -- see json.h. */
#include "json.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util.h"

int zp_json_check_utf8(const char *buf, size_t len)
{
	const unsigned char *s = (const unsigned char *)buf;
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		uint32_t cp;
		int n;

		if (c == 0)
			return -1;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return -1;
		}
		if (len - i <= (size_t)n)
			return -1;
		for (int k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return -1;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return -1;
		i += (size_t)n + 1;
	}
	return 0;
}

/* A \u0000 escape outside a string is a syntax error anyway; inside one it is
   preceded by an odd run of backslashes. */
static int has_nul_escape(const char *s, size_t len)
{
	for (size_t i = 0; i + 6 <= len; i++) {
		if (s[i] != '\\' || memcmp(s + i + 1, "u0000", 5) != 0)
			continue;
		size_t run = 0;
		while (run < i && s[i - 1 - run] == '\\')
			run++;
		if (run % 2 == 0)
			return 1;
	}
	return 0;
}

/* The decoded bytes of the JSON string literal at s (s[0] is its quote;
   cJSON has checked its syntax); *end is past its closing quote, *nul set
   when it holds \u0000. */
static size_t literal_len(const char *s, const char **end, bool *nul)
{
	size_t i = 1, n = 0;
	*nul = false;
	while (s[i] != '"') {
		if (s[i] != '\\') {
			i++;
			n++;
		} else if (s[i + 1] != 'u') {
			i += 2;
			n++;
		} else {
			unsigned cp = (unsigned)strtoul((char[5]){ s[i + 2], s[i + 3], s[i + 4], s[i + 5], 0 },
							NULL, 16);
			i += 6;
			*nul |= cp == 0;
			if (cp >= 0xd800 && cp < 0xdc00) { /* a surrogate pair: one 4-byte code point */
				i += 6;
				n += 4;
			} else {
				n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
			}
		}
	}
	*end = s + i + 1;
	return n;
}

/* Walks the tree in document order beside the text (*cur: after the last
   string literal read, end: the text's end): the next literal is the next
   quote, as no other token holds one. A string value holding NUL keeps its
   length in valuedouble, unused by cJSON for strings. -1: a key holds NUL. */
static int set_lengths(cJSON *item, bool keyed, const char **cur, const char *end)
{
	const char *next;
	bool nul;
	if (keyed) {
		*cur = memchr(*cur, '"', (size_t)(end - *cur));
		ZP_ASSERT(*cur);
		literal_len(*cur, &next, &nul);
		*cur = next;
		if (nul)
			return -1;
	}
	if (cJSON_IsString(item)) {
		*cur = memchr(*cur, '"', (size_t)(end - *cur));
		ZP_ASSERT(*cur);
		size_t n = literal_len(*cur, &next, &nul);
		*cur = next;
		if (nul)
			item->valuedouble = (double)n;
	}
	for (cJSON *c = (cJSON_IsArray(item) || cJSON_IsObject(item)) ? item->child : NULL; c; c = c->next)
		if (set_lengths(c, cJSON_IsObject(item), cur, end))
			return -1;
	return 0;
}

/* A \u escape without four hex digits after it (JSON requires them). cJSON
   reads such a one as code point 0: a NUL past the \u0000 check, and a
   literal set_lengths would walk out of (fuzz_request found both). Escapes
   come in pairs, so the scan keeps its place; a backslash outside a string
   fails cJSON anyway. */
static bool bad_u_escape(const char *s, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u') {
			if (i + 6 > len)
				return true;
			for (size_t k = i + 2; k < i + 6; k++)
				if (!isxdigit((unsigned char)s[k]))
					return true;
			i += 5;
		} else {
			i++;
		}
	}
	return false;
}

static cJSON *parse(const char *buf, size_t len, bool nul_ok)
{
	const char *end = NULL;
	cJSON *v;
	bool nul = has_nul_escape(buf, len);

	if (zp_json_check_utf8(buf, len) || (nul && !nul_ok) || bad_u_escape(buf, len))
		return NULL;
	v = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
	if (!v)
		return NULL;
	for (const char *e = end; e && e < buf + len; e++)
		if (*e != ' ' && *e != '\t' && *e != '\n' && *e != '\r' && *e != 0) {
			cJSON_Delete(v);
			return NULL;
		}
	const char *cur = buf;
	if (nul && set_lengths(v, false, &cur, end)) {
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

cJSON *zp_json_parse(const char *buf, size_t len)
{
	return parse(buf, len, false);
}

cJSON *zp_json_parse_text(const char *buf, size_t len)
{
	return parse(buf, len, true);
}

size_t zp_json_strlen(const cJSON *s)
{
	ZP_ASSERT(cJSON_IsString(s));
	return s->valuedouble > 0 ? (size_t)s->valuedouble : strlen(s->valuestring);
}

static bool holds_nul(const cJSON *v)
{
	if (cJSON_IsString(v))
		return v->valuedouble > 0; /* set only for a string holding NUL */
	for (const cJSON *c = v->child; c && (cJSON_IsArray(v) || cJSON_IsObject(v)); c = c->next)
		if (holds_nul(c))
			return true;
	return false;
}

bool zp_json_nul_outside(const cJSON *object, const char *const *fields)
{
	if (!cJSON_IsObject(object))
		return holds_nul(object);
	for (const cJSON *c = object->child; c; c = c->next) {
		bool listed = false;
		for (const char *const *f = fields; *f && !listed; f++)
			listed = strcmp(c->string, *f) == 0;
		if (!listed && holds_nul(c))
			return true;
	}
	return false;
}

void zp_buf_init(zp_buf *b, size_t cap)
{
	memset(b, 0, sizeof *b);
	b->cap = cap ? cap : 256;
	b->p = zp_xmalloc(b->cap);
	b->owned = true;
	b->p[0] = 0;
}

void zp_buf_init_fixed(zp_buf *b, void *mem, size_t cap)
{
	ZP_ASSERT(cap >= 1);
	memset(b, 0, sizeof *b);
	b->owned = !mem;
	b->p = mem ? mem : zp_xmalloc(cap);
	b->cap = cap;
	b->fixed = true;
	b->p[0] = 0;
}

void zp_buf_free(zp_buf *b)
{
	if (b->owned)
		free(b->p);
	memset(b, 0, sizeof *b);
}

void zp_buf_reset(zp_buf *b)
{
	ZP_ASSERT(b->p);
	b->len = 0;
	b->overflow = false;
	b->p[0] = 0;
}

/* Room for extra more bytes plus the NUL: true, or false (fixed and full:
   overflow set, the append must write nothing). */
static bool reserve(zp_buf *b, size_t extra)
{
	ZP_ASSERT(b->p && b->len < b->cap);
	if (b->overflow)
		return false;
	if (extra < b->cap - b->len)
		return true;
	if (b->fixed) {
		b->overflow = true;
		return false;
	}
	while (extra >= b->cap - b->len)
		b->cap *= 2;
	b->p = realloc(b->p, b->cap);
	ZP_ASSERT(b->p);
	return true;
}

void zp_buf_put(zp_buf *b, const void *p, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

void zp_buf_puts(zp_buf *b, const char *s)
{
	zp_buf_put(b, s, strlen(s));
}

void zp_buf_printf(zp_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	ZP_ASSERT(n >= 0);
	if ((size_t)n < b->cap - b->len) {
		b->len += (size_t)n;
		return;
	}
	b->p[b->len] = 0; /* vsnprintf wrote a cut copy past len */
	if (!reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void zp_buf_json_str(zp_buf *b, const char *s)
{
	zp_buf_json_strn(b, s, strlen(s));
}

/* Runs of bytes that need no escape go in one put. */
void zp_buf_json_strn(zp_buf *b, const char *s, size_t n)
{
	const char *end = s + n, *run = s;
	zp_buf_put(b, "\"", 1);
	for (; s < end; s++) {
		unsigned char c = (unsigned char)*s;
		if (c != '"' && c != '\\' && c >= 0x20)
			continue;
		zp_buf_put(b, run, (size_t)(s - run));
		if (c < 0x20)
			zp_buf_printf(b, "\\u%04x", c);
		else
			zp_buf_put(b, c == '"' ? "\\\"" : "\\\\", 2);
		run = s + 1;
	}
	zp_buf_put(b, run, (size_t)(end - run));
	zp_buf_put(b, "\"", 1);
}

void zp_buf_json_float(zp_buf *b, float f)
{
	if (!isfinite(f)) {
		zp_buf_puts(b, "null");
		return;
	}
	zp_buf_printf(b, "%.9g", (double)f);
}

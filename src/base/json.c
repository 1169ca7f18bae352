/* json.c -- see json.h. */
#include "json.h"

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

cJSON *zp_json_parse(const char *buf, size_t len)
{
	const char *end = NULL;
	cJSON *v;

	if (zp_json_check_utf8(buf, len) || has_nul_escape(buf, len))
		return NULL;
	v = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
	if (!v)
		return NULL;
	for (; end && end < buf + len; end++)
		if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r' && *end != 0) {
			cJSON_Delete(v);
			return NULL;
		}
	return v;
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

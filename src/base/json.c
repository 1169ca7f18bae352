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

static int fail(zp_json_err *e, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(zp_json_err *e, const char *field, const char *fmt, ...)
{
	va_list ap;
	if (!e)
		return -1;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	snprintf(e->field, sizeof e->field, "%s", field ? field : "");
	return -1;
}

static int hex4(const char *s, const char *end)
{
	int v = 0;
	if (end - s < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
			c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* The escape at s[0] == '\\' (inside a string, end the text's end): its
   length, or 0 when JSON does not allow it (cJSON decodes a bad \u as NUL
   and cuts the text there; Python's json refuses it). A surrogate must come
   as a high-low pair (one code point); *nul set for \u0000. */
static size_t escape_len(const char *s, const char *end, bool *nul)
{
	if (end - s < 2)
		return 0;
	if (s[1] != 'u')
		return strchr("\"\\/bfnrt", s[1]) && s[1] ? 2 : 0;
	int cp = hex4(s + 2, end);
	if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff))
		return 0;
	*nul |= cp == 0;
	if (cp < 0xd800 || cp > 0xdbff)
		return 6;
	if (end - s < 12 || s[6] != '\\' || s[7] != 'u')
		return 0;
	int lo = hex4(s + 8, end);
	return lo >= 0xdc00 && lo <= 0xdfff ? 12 : 0;
}

/* Every escape of every string in buf is one JSON allows, before cJSON reads
   it. Tracks the top-level key a bad escape is under, to name it. *nul: some
   string holds \u0000. Syntax is cJSON's to check: this only needs to find
   the strings (a quote not inside a string opens one). */
static int check_escapes(const char *buf, size_t len, bool *nul, zp_json_err *e)
{
	const char *s = buf, *end = buf + len, *key = NULL;
	size_t key_len = 0;
	int depth = 0;
	bool root_obj = false, expect_key = false;
	*nul = false;
	for (; s < end; s++) {
		char c = *s;
		if (c == '{' || c == '[') {
			if (depth++ == 0)
				root_obj = c == '{';
			expect_key = depth == 1 && c == '{';
		} else if (c == '}' || c == ']') {
			depth--;
		} else if (c == ',') {
			expect_key = depth == 1 && root_obj;
		} else if (c == '"') {
			const char *start = ++s;
			bool is_key = expect_key;
			expect_key = false;
			while (s < end && *s != '"') {
				if (*s != '\\') {
					s++;
					continue;
				}
				size_t n = escape_len(s, end, nul);
				if (n == 0) {
					int w = (int)ZP_MIN((size_t)(end - s), (size_t)6);
					if (is_key)
						return fail(e, NULL, "a key holds the invalid escape \"%.*s\" "
							    "(JSON allows \\\" \\\\ \\/ \\b \\f \\n \\r \\t, and "
							    "\\u with 4 hex digits, a surrogate only in a pair)",
							    w, s);
					char f[64];
					snprintf(f, sizeof f, "%.*s", key ? (int)ZP_MIN(key_len, sizeof f - 1) : 0,
						 key ? key : "");
					return fail(e, key ? f : NULL, "%s%s%sholds the invalid escape \"%.*s\" "
						    "(JSON allows \\\" \\\\ \\/ \\b \\f \\n \\r \\t, and \\u "
						    "with 4 hex digits, a surrogate only in a pair)",
						    key ? "field \"" : "the body ", key ? f : "", key ? "\" " : "",
						    w, s);
				}
				s += n;
			}
			if (is_key) {
				key = start;
				key_len = (size_t)(s - start);
			}
		}
	}
	return 0;
}

/* Whether two members of object o share a name: the first repeated name, or
   NULL. Small objects compare every pair; larger ones hash the names into a
   table from cJSON's allocator (the request's region on the request path):
   *full set when it has no room. */
static const char *dup_in(const cJSON *o, bool *full)
{
	int n = 0;
	for (const cJSON *c = o->child; c; c = c->next)
		n++;
	if (n <= 32) {
		for (const cJSON *a = o->child; a; a = a->next)
			for (const cJSON *b = a->next; b; b = b->next)
				if (strcmp(a->string, b->string) == 0)
					return a->string;
		return NULL;
	}
	size_t cap = 64;
	while (cap < 2 * (size_t)n)
		cap *= 2;
	const cJSON **tab = cJSON_malloc(cap * sizeof *tab);
	if (!tab) {
		*full = true;
		return NULL;
	}
	memset(tab, 0, cap * sizeof *tab);
	const char *dup = NULL;
	for (const cJSON *c = o->child; c && !dup; c = c->next) {
		uint64_t h = 1469598103934665603ull; /* FNV-1a */
		for (const unsigned char *p = (const unsigned char *)c->string; *p; p++)
			h = (h ^ *p) * 1099511628211ull;
		size_t i = (size_t)h & (cap - 1);
		for (; tab[i] && !dup; i = (i + 1) & (cap - 1))
			if (strcmp(tab[i]->string, c->string) == 0)
				dup = c->string;
		tab[i] = c;
	}
	cJSON_free(tab);
	return dup;
}

/* The first object in the tree with a name twice. Python's json keeps the
   last, cJSON the first, other parsers either: a proxy that checked one and
   a server that reads the other see two requests, so neither is guessed. */
static int check_dups(const cJSON *v, const char *top, zp_json_err *e, bool *full)
{
	if (!cJSON_IsArray(v) && !cJSON_IsObject(v))
		return 0;
	if (cJSON_IsObject(v)) {
		const char *d = dup_in(v, full);
		if (*full)
			return -1;
		if (d)
			return fail(e, top ? top : d, "duplicate key \"%.64s\"%s%.64s%s: a key may "
				    "appear once in an object (parsers disagree on which one wins)", d,
				    top ? " inside field \"" : "", top ? top : "", top ? "\"" : "");
	}
	for (const cJSON *c = v->child; c; c = c->next)
		if (check_dups(c, top ? top : cJSON_IsObject(v) ? c->string : NULL, e, full))
			return -1;
	return 0;
}

cJSON *zp_json_parse_err(const char *buf, size_t len, bool nul_ok, zp_json_err *e)
{
	const char *end = NULL;
	cJSON *v;
	bool nul, full = false;

	if (e)
		e->msg[0] = e->field[0] = 0;
	if (zp_json_check_utf8(buf, len)) {
		fail(e, NULL, "body is not valid UTF-8 (or holds a raw NUL byte)");
		return NULL;
	}
	if (check_escapes(buf, len, &nul, e))
		return NULL;
	if (nul && !nul_ok) {
		fail(e, NULL, "\\u0000 is not accepted here");
		return NULL;
	}
	v = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
	if (!v) {
		if (e && !e->msg[0])
			fail(e, NULL, "body is not valid JSON (syntax error at byte %zu)",
			     end && end >= buf ? (size_t)(end - buf) : (size_t)0);
		return NULL;
	}
	for (const char *t = end; t && t < buf + len; t++)
		if (*t != ' ' && *t != '\t' && *t != '\n' && *t != '\r' && *t != 0) {
			cJSON_Delete(v);
			fail(e, NULL, "body is not valid JSON (more after the value, at byte %zu)",
			     (size_t)(t - buf));
			return NULL;
		}
	const char *cur = buf;
	if (nul && set_lengths(v, false, &cur, end)) {
		cJSON_Delete(v);
		fail(e, NULL, "a key holds \\u0000");
		return NULL;
	}
	if (check_dups(v, NULL, e, &full)) {
		cJSON_Delete(v);
		return NULL; /* full: the caller sees its region's failed allocation */
	}
	return v;
}

cJSON *zp_json_parse(const char *buf, size_t len)
{
	return zp_json_parse_err(buf, len, false, NULL);
}

cJSON *zp_json_parse_text(const char *buf, size_t len)
{
	return zp_json_parse_err(buf, len, true, NULL);
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

/* json.h -- our strict UTF-8 gate in front of cJSON, and small JSON output helpers.
   cJSON accepts some invalid UTF-8; every byte string from outside passes
   zp_json_check_utf8 before cJSON sees it. Stateless; any thread. */
#ifndef ZP_JSON_H
#define ZP_JSON_H

#include <stddef.h>
#include <stdint.h>

/* 0 when buf[0..len) is well-formed UTF-8 (no overlongs, no surrogates, no
   code point above U+10FFFF) and holds no NUL byte; -1 otherwise. */
int zp_json_check_utf8(const char *buf, size_t len);

/* Parse buf[0..len) as exactly one JSON value: strict UTF-8, no \u0000 escape
   (cJSON would cut the string there), nothing but whitespace after the value.
   NULL when any of that fails. Free with cJSON_Delete. */
struct cJSON *zp_json_parse(const char *buf, size_t len);

/* A growable output buffer for JSON text (start-up sized; grows rarely). */
typedef struct {
	char *p;
	size_t len, cap;
} zp_buf;

void zp_buf_init(zp_buf *b, size_t cap);
void zp_buf_free(zp_buf *b);
void zp_buf_puts(zp_buf *b, const char *s);
void zp_buf_printf(zp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void zp_buf_put(zp_buf *b, const void *p, size_t n);
/* A JSON string literal, escaped (the n-byte form may hold NUL bytes). */
void zp_buf_json_str(zp_buf *b, const char *s);
void zp_buf_json_strn(zp_buf *b, const char *s, size_t n);
/* A float as the shortest text that reads back to the same float, or null for NaN/Inf. */
void zp_buf_json_float(zp_buf *b, float f);

#endif

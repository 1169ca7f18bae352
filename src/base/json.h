/* json.h -- our strict UTF-8 gate in front of cJSON, and small JSON output helpers.
   cJSON accepts some invalid UTF-8; every byte string from outside passes
   zp_json_check_utf8 before cJSON sees it. Stateless; any thread. */
#ifndef ZP_JSON_H
#define ZP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 0 when buf[0..len) is well-formed UTF-8 (no overlongs, no surrogates, no
   code point above U+10FFFF) and holds no NUL byte; -1 otherwise. */
int zp_json_check_utf8(const char *buf, size_t len);

/* Parse buf[0..len) as exactly one JSON value: strict UTF-8, no \u0000 escape
   (cJSON would cut the string there), only the escapes JSON defines (cJSON
   decodes a bad \u as NUL), no object with a key twice, nothing but
   whitespace after the value. NULL when any of that fails. Free with
   cJSON_Delete. */
struct cJSON *zp_json_parse(const char *buf, size_t len);

/* Why a parse failed, for the client: a message, and the top-level field it
   concerns ("" when none). */
typedef struct {
	char msg[256];
	char field[64];
} zp_json_err;
/* zp_json_parse (nul_ok false) or zp_json_parse_text (true), saying why in e
   (may be NULL). A failed allocation (a full region) leaves e->msg empty. */
struct cJSON *zp_json_parse_err(const char *buf, size_t len, bool nul_ok, zp_json_err *e);

/* As zp_json_parse, but a \u0000 escape is accepted inside a string value
   (never in a key): such a string holds NUL bytes, and its true length is
   zp_json_strlen's. For texts that are tokenized (a prompt), whose readers
   take that length; every other string must not be read past its first NUL. */
struct cJSON *zp_json_parse_text(const char *buf, size_t len);
/* The bytes of string value s, NUL bytes from \u0000 escapes included (a tree
   from zp_json_parse_text; strlen for any other). */
size_t zp_json_strlen(const struct cJSON *s);
/* Whether some string of the tree, outside the members of object named in
   fields (NULL-terminated), holds a NUL byte: the caller refuses such a tree,
   as it reads those strings as C strings. */
bool zp_json_nul_outside(const struct cJSON *object, const char *const *fields);

/* An output buffer for JSON text, in one of two modes:
   - growable (zp_buf_init): realloc as needed; start-up and the CLI only.
   - fixed (zp_buf_init_fixed): never grows, for the request path (buffers sized
     from the limits at start-up); an append that does not fit is dropped whole
     and sets overflow, and every append after it is dropped too, so the text
     is never a silently cut answer: the caller checks overflow and answers an
     error instead (zp_buf_reset clears it).
   p is NUL-terminated at len in both modes. */
typedef struct {
	char *p;		/* [cap] */
	size_t len, cap;
	bool fixed;		/* cap never changes */
	bool overflow;		/* fixed: an append did not fit since the last reset */
	bool owned;		/* p is freed by zp_buf_free */
} zp_buf;

void zp_buf_init(zp_buf *b, size_t cap);
/* Over mem[0..cap) (not freed here), or, mem NULL, over cap bytes allocated
   now (start-up; freed by zp_buf_free). cap >= 1. */
void zp_buf_init_fixed(zp_buf *b, void *mem, size_t cap);
void zp_buf_free(zp_buf *b);
/* Empty again, overflow cleared. */
void zp_buf_reset(zp_buf *b);
void zp_buf_puts(zp_buf *b, const char *s);
void zp_buf_printf(zp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void zp_buf_put(zp_buf *b, const void *p, size_t n);
/* A JSON string literal, escaped (the n-byte form may hold NUL bytes). */
void zp_buf_json_str(zp_buf *b, const char *s);
void zp_buf_json_strn(zp_buf *b, const char *s, size_t n);
/* A float as the shortest text that reads back to the same float, or null for NaN/Inf. */
void zp_buf_json_float(zp_buf *b, float f);

#endif

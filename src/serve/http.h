/* http.h -- the HTTP/1.1 request-head parser and response writer of the server.
   Pure functions over a caller's buffer (no I/O, no allocation), so they can be
   fuzzed alone. Used by the reactor thread only. Bodies are Content-Length;
   chunked bodies are refused (411). */
#ifndef ZP_HTTP_H
#define ZP_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "json.h"

#define ZP_HTTP_PATH_MAX 256

enum zp_http_method { ZP_HTTP_GET, ZP_HTTP_POST, ZP_HTTP_HEAD, ZP_HTTP_OTHER };

typedef struct {
	enum zp_http_method method;
	char path[ZP_HTTP_PATH_MAX];	/* without the query string */
	int minor;			/* HTTP/1.minor */
	bool keep_alive;		/* after this request */
	bool expect_continue;
	size_t content_length;
	size_t head_bytes;		/* request line + headers + the blank line */
} zp_http_req;

/* Parse the head at buf[0..len).
   > 0: complete; the head is that many bytes and *r is filled.
     0: incomplete (and still within head_max bytes).
   < 0: -status to answer before closing: 400 malformed, 411 chunked,
        413 Content-Length over body_max, 414 path too long, 431 head over
        head_max, 505 not HTTP/1.x. */
long zp_http_parse(const char *buf, size_t len, size_t head_max, size_t body_max, zp_http_req *r);

const char *zp_http_reason(int status);

/* A whole response: head (Content-Type, Content-Length, Connection,
   Retry-After when > 0, Allow when allow is not NULL) then body. */
void zp_http_respond(zp_buf *out, int status, const char *content_type, const char *body,
		     size_t body_len, bool keep_alive, int retry_after_s, const char *allow);

#endif

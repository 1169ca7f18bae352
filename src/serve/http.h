/* http.h -- the HTTP/1.1 request-head parser and response writer of the server.
   Pure functions over a caller's buffer (no I/O, no allocation), so they can be
   fuzzed alone. Used by the reactor thread only. Bodies are Content-Length;
   chunked bodies are refused (411). */
#ifndef ZP_HTTP_H
#define ZP_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "json.h"

#define ZP_HTTP_PATH_MAX 256		/* path bytes, query string excluded */
#define ZP_HTTP_TARGET_MAX 8192		/* request-target bytes, query string included */

/* The error vocabulary, from the parser to the response: each kind is its
   HTTP status (so the parser's -kind reads as -status), and
   zp_http_err_type gives the OpenAI-style "type" of its JSON error body.
   The parser, the endpoints and the server's limits all answer with these. */
enum zp_http_err {
	ZP_HTTP_ERR_BAD_REQUEST = 400,		/* malformed head or body, bad field */
	ZP_HTTP_ERR_FORBIDDEN = 403,		/* peer uid not allowed */
	ZP_HTTP_ERR_NOT_FOUND = 404,		/* no such path, or another model */
	ZP_HTTP_ERR_METHOD = 405,		/* path served by other methods */
	ZP_HTTP_ERR_TIMEOUT = 408,		/* head or body not received in time */
	ZP_HTTP_ERR_LENGTH_REQUIRED = 411,	/* chunked body, or a POST without Content-Length */
	ZP_HTTP_ERR_TOO_LARGE = 413,		/* body over the limit */
	ZP_HTTP_ERR_URI_TOO_LONG = 414,
	ZP_HTTP_ERR_MEDIA = 415,		/* a Content-Encoding (bodies are not decoded) */
	ZP_HTTP_ERR_HEAD_TOO_LARGE = 431,
	ZP_HTTP_ERR_INTERNAL = 500,		/* a forward pass failed */
	ZP_HTTP_ERR_UNAVAILABLE = 503,		/* loading, full, stopping */
	ZP_HTTP_ERR_VERSION = 505,		/* not HTTP/1.x */
};

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
   < 0: -status to answer before closing: 400 malformed, 411 chunked or a
        POST without Content-Length, 413 Content-Length over body_max, 414
        path too long, 415 a Content-Encoding other than identity, 431 head
        over head_max, 505 not HTTP/1.x. */
long zp_http_parse(const char *buf, size_t len, size_t head_max, size_t body_max, zp_http_req *r);
/* The error message for a status zp_http_parse returned (negated). */
const char *zp_http_parse_why(int status);

const char *zp_http_reason(int status);
/* The OpenAI-style error type of a status: "invalid_request_error" (4xx but
   404, and 505), "not_found_error", "service_unavailable" (503),
   "internal_error" (the other 5xx). */
const char *zp_http_err_type(int status);

/* A whole response: head (Content-Type, Content-Length, Connection,
   Retry-After when > 0, Allow when allow is not NULL) then body. */
void zp_http_respond(zp_buf *out, int status, const char *content_type, const char *body,
		     size_t body_len, bool keep_alive, int retry_after_s, const char *allow);

#endif

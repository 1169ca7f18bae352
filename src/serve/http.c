/* http.c -- see http.h. Strict where strictness prevents smuggling: one
   Content-Length (digits only, repeated only with the same value), no
   Transfer-Encoding, no bare LF inside the head, no obs-fold. */
#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static bool tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int parse_line(const char *p, const char *end, zp_http_req *r)
{
	const char *sp1 = memchr(p, ' ', (size_t)(end - p)), *sp2;
	if (!sp1 || sp1 == p)
		return -ZP_HTTP_ERR_BAD_REQUEST;
	for (const char *q = p; q < sp1; q++)
		if (!tchar(*q))
			return -ZP_HTTP_ERR_BAD_REQUEST;
	size_t ml = (size_t)(sp1 - p);
	r->method = ml == 3 && !memcmp(p, "GET", 3)	 ? ZP_HTTP_GET :
		    ml == 4 && !memcmp(p, "POST", 4) ? ZP_HTTP_POST :
		    ml == 4 && !memcmp(p, "HEAD", 4) ? ZP_HTTP_HEAD :
							ZP_HTTP_OTHER;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1 || sp1[1] != '/')
		return -ZP_HTTP_ERR_BAD_REQUEST;
	const char *q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
	size_t pl = (size_t)((q ? q : sp2) - (sp1 + 1));
	if ((size_t)(sp2 - sp1 - 1) >= ZP_HTTP_TARGET_MAX)
		return -ZP_HTTP_ERR_URI_TOO_LONG;
	if (pl >= ZP_HTTP_PATH_MAX)
		return -ZP_HTTP_ERR_URI_TOO_LONG;
	for (const char *c = sp1 + 1; c < sp2; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
			return -ZP_HTTP_ERR_BAD_REQUEST;
	memcpy(r->path, sp1 + 1, pl);
	r->path[pl] = 0;
	if (end - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7))
		return end - sp2 - 1 >= 5 && !memcmp(sp2 + 1, "HTTP/", 5) ? -ZP_HTTP_ERR_VERSION
								  : -ZP_HTTP_ERR_BAD_REQUEST;
	if (sp2[8] != '0' && sp2[8] != '1')
		return -ZP_HTTP_ERR_VERSION;
	r->minor = sp2[8] - '0';
	r->keep_alive = r->minor == 1;
	return 0;
}

static bool value_is(const char *v, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(v, want, n) == 0;
}

/* Does a comma-separated header value list hold token want? */
static bool list_has(const char *v, size_t n, const char *want)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (value_is(v + s, e - s, want))
			return true;
	}
	return false;
}

static int parse_header(const char *p, const char *end, size_t body_max, zp_http_req *r,
			bool *seen_len)
{
	const char *colon = memchr(p, ':', (size_t)(end - p));
	if (!colon || colon == p)
		return -ZP_HTTP_ERR_BAD_REQUEST;
	for (const char *q = p; q < colon; q++)
		if (!tchar(*q))
			return -ZP_HTTP_ERR_BAD_REQUEST; /* also refuses obs-fold (leading space) */
	size_t nl = (size_t)(colon - p);
	const char *v = colon + 1, *ve = end;
	while (v < ve && (*v == ' ' || *v == '\t'))
		v++;
	while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
		ve--;
	for (const char *q = v; q < ve; q++)
		if ((unsigned char)*q < 0x20 && *q != '\t')
			return -ZP_HTTP_ERR_BAD_REQUEST;
	size_t vl = (size_t)(ve - v);
	if (nl == 14 && !strncasecmp(p, "content-length", 14)) {
		size_t n = 0;
		if (vl == 0 || vl > 15)
			return vl > 15 ? -ZP_HTTP_ERR_TOO_LARGE : -ZP_HTTP_ERR_BAD_REQUEST;
		for (size_t i = 0; i < vl; i++) {
			if (v[i] < '0' || v[i] > '9')
				return -ZP_HTTP_ERR_BAD_REQUEST;
			n = n * 10 + (size_t)(v[i] - '0');
		}
		if (*seen_len && n != r->content_length)
			return -ZP_HTTP_ERR_BAD_REQUEST;
		*seen_len = true;
		r->content_length = n;
		if (n > body_max)
			return -ZP_HTTP_ERR_TOO_LARGE;
	} else if (nl == 17 && !strncasecmp(p, "transfer-encoding", 17)) {
		return list_has(v, vl, "chunked") ? -ZP_HTTP_ERR_LENGTH_REQUIRED
						  : -ZP_HTTP_ERR_BAD_REQUEST;
	} else if (nl == 10 && !strncasecmp(p, "connection", 10)) {
		if (list_has(v, vl, "close"))
			r->keep_alive = false;
		else if (list_has(v, vl, "keep-alive"))
			r->keep_alive = true;
	} else if (nl == 16 && !strncasecmp(p, "content-encoding", 16)) {
		/* bodies are not decoded: a compressed one would read as bad JSON */
		if (!value_is(v, vl, "identity"))
			return -ZP_HTTP_ERR_MEDIA;
	} else if (nl == 6 && !strncasecmp(p, "expect", 6)) {
		if (!value_is(v, vl, "100-continue"))
			/* 417 in RFC terms; a client that sends another never waits */
			return -ZP_HTTP_ERR_BAD_REQUEST;
		r->expect_continue = true;
	}
	return 0;
}

long zp_http_parse(const char *buf, size_t len, size_t head_max, size_t body_max, zp_http_req *r)
{
	size_t scan = ZP_MIN(len, head_max);
	const char *end = NULL;
	/* tolerate blank lines before a request (RFC 9112 2.2) */
	size_t start = 0;
	while (start + 1 < scan && buf[start] == '\r' && buf[start + 1] == '\n')
		start += 2;
	for (size_t i = start; i + 3 < scan; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
			end = buf + i + 2; /* just past the last header's CRLF */
			break;
		}
	if (!end) {
		/* Refuse what can never become a request now, not at the timeout: a
		   method with a non-token byte, or a bare LF. */
		size_t i = start;
		while (i < scan && tchar(buf[i]))
			i++;
		if (i < scan && (buf[i] != ' ' || i == start) &&
		    !(i == start && buf[i] == '\r' && i + 1 == scan)) /* half a blank line */
			return -ZP_HTTP_ERR_BAD_REQUEST;
		for (i = start; i < scan; i++)
			if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
				return -ZP_HTTP_ERR_BAD_REQUEST;
		return len >= head_max ? -ZP_HTTP_ERR_HEAD_TOO_LARGE : 0;
	}
	memset(r, 0, sizeof *r);
	bool seen_len = false;
	const char *p = buf + start;
	int rc;
	for (int line = 0; p < end; line++) {
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		ZP_ASSERT(eol); /* end points past a CRLF */
		if (eol[1] != '\n' || memchr(p, '\n', (size_t)(eol - p)))
			return -ZP_HTTP_ERR_BAD_REQUEST; /* bare CR or bare LF */
		rc = line == 0 ? parse_line(p, eol, r) : parse_header(p, eol, body_max, r, &seen_len);
		if (rc)
			return rc;
		p = eol + 2;
	}
	if (r->method == ZP_HTTP_POST && !seen_len)
		return -ZP_HTTP_ERR_LENGTH_REQUIRED; /* every endpoint's body is Content-Length */
	r->head_bytes = (size_t)(end + 2 - buf);
	return (long)r->head_bytes;
}

const char *zp_http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

const char *zp_http_parse_why(int status)
{
	switch (status) {
	case ZP_HTTP_ERR_LENGTH_REQUIRED:
		return "a POST needs a Content-Length header (chunked bodies are not accepted)";
	case ZP_HTTP_ERR_MEDIA:
		return "Content-Encoding is not supported: send the body uncompressed (identity)";
	case ZP_HTTP_ERR_VERSION: return "only HTTP/1.0 and HTTP/1.1 are served";
	case ZP_HTTP_ERR_TOO_LARGE: return "Content-Length is over body_bytes_max";
	case ZP_HTTP_ERR_URI_TOO_LONG: return "request target is too long";
	case ZP_HTTP_ERR_HEAD_TOO_LARGE: return "request head is over header_bytes_max";
	default: return "malformed HTTP request head";
	}
}

const char *zp_http_err_type(int status)
{
	return status == ZP_HTTP_ERR_UNAVAILABLE ? "service_unavailable" :
	       status == ZP_HTTP_ERR_VERSION	  ? "invalid_request_error" : /* the client's */
	       status >= 500			  ? "internal_error" :
	       status == ZP_HTTP_ERR_NOT_FOUND	  ? "not_found_error" :
						    "invalid_request_error";
}

void zp_http_respond(zp_buf *out, int status, const char *content_type, const char *body,
		     size_t body_len, bool keep_alive, int retry_after_s, const char *allow)
{
	zp_buf_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n", status,
		      zp_http_reason(status), content_type, body_len);
	if (retry_after_s > 0)
		zp_buf_printf(out, "Retry-After: %d\r\n", retry_after_s);
	if (allow)
		zp_buf_printf(out, "Allow: %s\r\n", allow);
	zp_buf_puts(out, keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
	zp_buf_put(out, body, body_len);
}

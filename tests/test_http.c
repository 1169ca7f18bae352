/* test_http.c -- the HTTP/1.1 head parser alone: complete heads split at every
   byte boundary parse the same as whole; each refusal maps to its status;
   keep-alive and Expect rules; the response writer. */
#include <string.h>

#include "check.h"
#include "http.h"

static long parse(const char *s, zp_http_req *r)
{
	return zp_http_parse(s, strlen(s), 1024, 4096, r);
}

int main(void)
{
	zp_http_req r;
	const char *ok = "POST /v1/score?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
			 "Connection: keep-alive, Upgrade\r\nExpect: 100-continue\r\n\r\nBODY";
	long n = parse(ok, &r);
	CHECK(n == (long)(strstr(ok, "BODY") - ok), "head length %ld", n);
	CHECK(r.method == ZP_HTTP_POST && !strcmp(r.path, "/v1/score") && r.minor == 1 &&
	      r.content_length == 12 && r.keep_alive && r.expect_continue, "fields");
	for (size_t cut = 0; cut < (size_t)n; cut++) /* every prefix: incomplete, never an error */
		CHECK(zp_http_parse(ok, cut, 1024, 4096, &r) == 0, "prefix %zu", cut);
	CHECK(parse("GET / HTTP/1.0\r\n\r\n", &r) > 0 && !r.keep_alive, "1.0 closes by default");
	CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r) > 0 && r.keep_alive,
	      "1.0 keep-alive");
	CHECK(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &r) > 0 && !r.keep_alive, "close");
	CHECK(parse("\r\nGET / HTTP/1.1\r\n\r\n", &r) > 0, "a leading blank line is skipped");
	CHECK(parse("GET /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &r) > 0 &&
	      r.content_length == 5, "repeated equal Content-Length");
	CHECK(parse("POST /x HTTP/1.1\r\nContent-Length: 0\r\nContent-Encoding: identity\r\n\r\n",
		    &r) > 0 && r.content_length == 0, "POST with Content-Length 0, identity encoding");
	CHECK(parse("GET /x HTTP/1.1\r\n\r\n", &r) > 0, "a GET needs no Content-Length");

	static const struct { const char *head; long want; } bad[] = {
		{ "GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n", -413 },
		{ "GET / HTTP/1.1\r\nContent-Length: 1234567890123456\r\n\r\n", -413 },
		{ "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", -411 },
		{ "GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", -400 },
		{ "POST / HTTP/1.1\r\nHost: x\r\n\r\n", -411 },
		{ "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Encoding: gzip\r\n\r\n", -415 },
		{ "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Encoding: br\r\n\r\n", -415 },
		{ "GET / HTTP/3\r\n\r\n", -505 },
		{ "GET / HTTP/1.2\r\n\r\n", -505 },
		{ "GET / FTP/1.1\r\n\r\n", -400 },
		{ "GET  / HTTP/1.1\r\n\r\n", -400 },
		{ "GET x HTTP/1.1\r\n\r\n", -400 },
		{ "G(T / HTTP/1.1\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\n: novalue\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\nX: a\n\n", -400 },
		{ "\x16\x03\x01", -400 },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK(parse(bad[i].head, &r) == bad[i].want, "bad head %zu: %ld, want %ld", i,
		      parse(bad[i].head, &r), bad[i].want);
	char big[2048];
	memset(big, 'a', sizeof big);
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	CHECK(zp_http_parse(big, sizeof big, 1024, 4096, &r) == -431, "head over the limit");
	char path[400] = "GET /";
	memset(path + 5, 'p', 300);
	strcpy(path + 305, " HTTP/1.1\r\n\r\n");
	CHECK(parse(path, &r) == -414, "path over the limit");

	zp_buf b;
	zp_buf_init(&b, 16);
	zp_http_respond(&b, 503, "application/json", "{}", 2, false, 1, NULL);
	CHECK(!strcmp(b.p, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
		      "Content-Length: 2\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{}"),
	      "503 response: %s", b.p);
	zp_buf_free(&b);
	return check_exit("test_http");
}

/* test_router.c -- the router table alone: every documented (method, path)
   maps to its endpoint and flags; an unknown path is 404; a served path with
   another method is 405 with the right Allow; HEAD is served only where a row
   says so (/health, /ping: the probes of vLLM's clients); query strings
   are cut by the parser before routing; no trailing-slash or case folding;
   labels are the metrics' names. */
#include <string.h>

#include "check.h"
#include "router.h"

static const struct {
	enum zp_http_method m;
	const char *path;
	enum zp_route id;
	const char *name;
	bool needs_model;
	const char *allow;	/* every method the path is served by */
} documented[] = {
	{ ZP_HTTP_POST, "/v1/prefill", ZP_ROUTE_PREFILL, "prefill", true, "POST" },
	{ ZP_HTTP_POST, "/v1/score", ZP_ROUTE_SCORE, "score", true, "POST" },
	{ ZP_HTTP_POST, "/score", ZP_ROUTE_SCORE, "score", true, "POST" },
	{ ZP_HTTP_POST, "/classify", ZP_ROUTE_CLASSIFY, "classify", true, "POST" },
	{ ZP_HTTP_POST, "/v1/rerank", ZP_ROUTE_RERANK, "rerank", true, "POST" },
	{ ZP_HTTP_POST, "/rerank", ZP_ROUTE_RERANK, "rerank", true, "POST" },
	{ ZP_HTTP_POST, "/v1/embeddings", ZP_ROUTE_EMBED, "embeddings", true, "POST" },
	{ ZP_HTTP_POST, "/pooling", ZP_ROUTE_POOLING, "pooling", true, "POST" },
	{ ZP_HTTP_POST, "/tokenize", ZP_ROUTE_TOKENIZE, "tokenize", false, "POST" },
	{ ZP_HTTP_POST, "/detokenize", ZP_ROUTE_DETOKENIZE, "detokenize", false, "POST" },
	{ ZP_HTTP_GET, "/v1/models", ZP_ROUTE_MODELS, "models", false, "GET" },
	{ ZP_HTTP_GET, "/health", ZP_ROUTE_HEALTH, "health", false, "GET, HEAD" },
	{ ZP_HTTP_GET, "/metrics", ZP_ROUTE_METRICS, "metrics", false, "GET" },
	{ ZP_HTTP_POST, "/v1/completions", ZP_ROUTE_COMPLETIONS, "completions", true, "POST" },
	{ ZP_HTTP_POST, "/v1/chat/completions", ZP_ROUTE_CHAT, "chat", true, "POST" },
	{ ZP_HTTP_POST, "/embed", ZP_ROUTE_TEI_EMBED, "embed", true, "POST" },
	{ ZP_HTTP_GET, "/info", ZP_ROUTE_TEI_INFO, "info", false, "GET" },
	{ ZP_HTTP_POST, "/v2/rerank", ZP_ROUTE_RERANK_V2, "rerank_v2", true, "POST" },
	{ ZP_HTTP_POST, "/decode", ZP_ROUTE_TEI_DECODE, "decode", false, "POST" },
	{ ZP_HTTP_POST, "/invocations", ZP_ROUTE_INVOCATIONS, "invocations", true, "POST" },
	{ ZP_HTTP_GET, "/version", ZP_ROUTE_VERSION, "version", false, "GET" },
	{ ZP_HTTP_HEAD, "/health", ZP_ROUTE_HEALTH, "health", false, "GET, HEAD" },
	{ ZP_HTTP_GET, "/ping", ZP_ROUTE_HEALTH, "health", false, "GET, HEAD, POST" },
	{ ZP_HTTP_POST, "/ping", ZP_ROUTE_HEALTH, "health", false, "GET, HEAD, POST" },
	{ ZP_HTTP_HEAD, "/ping", ZP_ROUTE_HEALTH, "health", false, "GET, HEAD, POST" },
};

/* Whether the documented path is served by method m. */
static bool serves(const char *allow, enum zp_http_method m)
{
	const char *name = m == ZP_HTTP_GET ? "GET" : m == ZP_HTTP_POST ? "POST" :
			   m == ZP_HTTP_HEAD ? "HEAD" : NULL;
	return name && strstr(allow, name);
}
#define NDOC (sizeof documented / sizeof *documented)

/* The route of a whole request head, as the server routes it. */
static const zp_route_entry *route_head(const char *head, int *status)
{
	zp_http_req r;
	long n = zp_http_parse(head, strlen(head), 1024, 4096, &r);
	CHECK(n > 0, "head parses: %s", head);
	return n > 0 ? zp_route_find(r.method, r.path, status) : NULL;
}

int main(void)
{
	static const enum zp_http_method methods[] = { ZP_HTTP_GET, ZP_HTTP_POST, ZP_HTTP_HEAD,
						       ZP_HTTP_OTHER };
	bool seen[ZP_ROUTE_COUNT] = { false };
	for (size_t i = 0; i < NDOC; i++) {
		int status = 0;
		const zp_route_entry *r = zp_route_find(documented[i].m, documented[i].path, &status);
		CHECK(r && r->id == documented[i].id && !strcmp(r->path, documented[i].path),
		      "%s routes to its endpoint", documented[i].path);
		if (!r)
			continue;
		seen[r->id] = true;
		CHECK(r->build, "%s has a build", r->path);
		CHECK(!!(r->flags & ZP_ROUTE_NEEDS_MODEL) == documented[i].needs_model &&
		      zp_route_needs_model(r->id) == documented[i].needs_model,
		      "%s needs_model", r->path);
		CHECK(!r->finish == !documented[i].needs_model, "%s: a finish iff it runs the model",
		      r->path);
		CHECK(!strcmp(zp_route_name(r->id), documented[i].name), "%s label %s", r->path,
		      zp_route_name(r->id));
		CHECK(!!(r->flags & ZP_ROUTE_SCRAPE) == (r->id == ZP_ROUTE_METRICS),
		      "%s on the metrics listener", r->path);
		CHECK(zp_route_allow(documented[i].path) &&
		      !strcmp(zp_route_allow(documented[i].path), documented[i].allow), "Allow of %s",
		      documented[i].path);
		/* every other method: 405, the path being known */
		for (size_t k = 0; k < sizeof methods / sizeof *methods; k++) {
			if (serves(documented[i].allow, methods[k]))
				continue;
			status = 0;
			CHECK(!zp_route_find(methods[k], documented[i].path, &status) && status == 405,
			      "%s by method %d: 405, got %d", documented[i].path, (int)methods[k], status);
		}
	}
	for (int id = 0; id < ZP_ROUTE_OTHER; id++) /* no endpoint without a path */
		CHECK(seen[id], "endpoint %d (%s) is documented", id, zp_route_name(id));
	CHECK(!strcmp(zp_route_name(ZP_ROUTE_OTHER), "other") &&
	      !zp_route_needs_model(ZP_ROUTE_OTHER), "the label of unrouted requests");

	/* unknown paths: 404 whatever the method, no Allow */
	static const char *const unknown[] = { "/", "/v2/everything", "/health/", "/v1/prefill/",
					       "/HEALTH", "/v1/Score", "//health", "/v1",
					       "/health?x", "/metricsx" };
	for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
		for (size_t k = 0; k < sizeof methods / sizeof *methods; k++) {
			int status = 0;
			CHECK(!zp_route_find(methods[k], unknown[i], &status) && status == 404,
			      "%s by method %d: 404, got %d", unknown[i], (int)methods[k], status);
			CHECK(!zp_route_allow(unknown[i]), "no Allow for %s", unknown[i]);
		}

	/* through the parser: the query string is cut, HEAD stays HEAD, an
	   unknown method is OTHER (405 on a known path) */
	int status = 0;
	const zp_route_entry *r = route_head("POST /v1/score?x=1&y=%20 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
					      &status); /* a POST without it is a 411 */
	CHECK(r && r->id == ZP_ROUTE_SCORE, "query string ignored");
	r = route_head("GET /health? HTTP/1.1\r\n\r\n", &status);
	CHECK(r && r->id == ZP_ROUTE_HEALTH, "empty query string ignored");
	r = route_head("HEAD /health HTTP/1.1\r\n\r\n", &status);
	CHECK(r && r->id == ZP_ROUTE_HEALTH && r->method == ZP_HTTP_HEAD, "HEAD /health is served");
	status = 0;
	r = route_head("HEAD /v1/models HTTP/1.1\r\n\r\n", &status);
	CHECK(!r && status == 405, "HEAD /v1/models: 405 (HEAD only where a row says), got %d", status);
	status = 0;
	r = route_head("BREW /metrics HTTP/1.1\r\n\r\n", &status);
	CHECK(!r && status == 405 && !strcmp(zp_route_allow("/metrics"), "GET"), "BREW /metrics");
	status = 0;
	r = route_head("GET /tokenize HTTP/1.1\r\n\r\n", &status);
	CHECK(!r && status == 405 && !strcmp(zp_route_allow("/tokenize"), "POST"), "GET /tokenize");
	status = 0;
	r = route_head("GET /health/?a=b HTTP/1.1\r\n\r\n", &status);
	CHECK(!r && status == 404, "trailing slash before a query: 404");
	return check_exit("test_router");
}

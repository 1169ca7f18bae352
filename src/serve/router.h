/* router.h -- the one table of HTTP endpoints: each row is {method, path,
   endpoint, build, finish, flags}; 404 and 405 (with its Allow header) come
   from the same table. Owns no state (the table is const); any thread.
   The endpoints themselves live in api_*.c; this file only finds them. */
#ifndef ZP_ROUTER_H
#define ZP_ROUTER_H

#include <stdbool.h>

#include "http.h"
#include "json.h"

enum zp_route {
	ZP_ROUTE_PREFILL, ZP_ROUTE_SCORE, ZP_ROUTE_CLASSIFY, ZP_ROUTE_RERANK, ZP_ROUTE_EMBED,
	ZP_ROUTE_POOLING, ZP_ROUTE_TOKENIZE, ZP_ROUTE_DETOKENIZE, ZP_ROUTE_MODELS,
	ZP_ROUTE_HEALTH, ZP_ROUTE_METRICS,
	ZP_ROUTE_COMPLETIONS, ZP_ROUTE_TEI_EMBED, ZP_ROUTE_TEI_INFO, ZP_ROUTE_INVOCATIONS,
	ZP_ROUTE_VERSION, ZP_ROUTE_CHAT, ZP_ROUTE_RERANK_V2, ZP_ROUTE_TEI_DECODE,
	ZP_ROUTE_OTHER,	/* unknown path or method */
	ZP_ROUTE_COUNT
};

enum {
	ZP_ROUTE_NEEDS_MODEL = 1 << 0,	/* runs a forward pass: a job, admitted once loaded */
	ZP_ROUTE_JSON = 1 << 1,		/* the body is a JSON object, parsed before build */
	ZP_ROUTE_SCRAPE = 1 << 2,	/* also served on the loopback metrics listener */
};

typedef struct zp_api zp_api;
typedef struct zp_api_job zp_api_job;
typedef struct zp_api_call zp_api_call;

typedef struct {
	enum zp_http_method method;
	const char *path;		/* exact; the parser has cut the query string */
	enum zp_route id;
	const char *name;		/* the endpoint's label in logs and metrics */
	/* 0: call->job holds sequences to run (NEEDS_MODEL only); > 0: an HTTP
	   status whose whole body is in call->reply */
	int (*build)(zp_api_call *call);
	/* NEEDS_MODEL only: every sequence done, the response body into out */
	void (*finish)(zp_api *a, zp_api_job *j, zp_buf *out);
	unsigned flags;
} zp_route_entry;

/* The row for (m, path), or NULL with *status 404 (no row has that path) or
   405 (the path is served, by other methods). */
const zp_route_entry *zp_route_find(enum zp_http_method m, const char *path, int *status);
/* The Allow header value for path ("GET", "GET, HEAD", "POST", ...), or NULL
   when no row has it. */
const char *zp_route_allow(const char *path);
/* The first row of endpoint id (not ZP_ROUTE_OTHER). */
const zp_route_entry *zp_route_of(enum zp_route id);
/* Every row, in table order (the man page lists them): *n rows. */
const zp_route_entry *zp_route_rows(size_t *n);
/* Label of any id, ZP_ROUTE_OTHER ("other") included. */
const char *zp_route_name(enum zp_route id);
bool zp_route_needs_model(enum zp_route id);

#endif

/* router.c -- see router.h. The table below is every endpoint the server
   answers; a new endpoint is one row here and its build/finish in an api_*.c. */
#include "router.h"

#include <string.h>

#include "endpoints.h"
#include "util.h"

#define NEEDS ZP_ROUTE_NEEDS_MODEL
#define JSON ZP_ROUTE_JSON

static const zp_route_entry routes[] = {
	/* method       path              endpoint             name          build                    finish                   flags */
	{ ZP_HTTP_POST, "/v1/prefill",    ZP_ROUTE_PREFILL,    "prefill",    zp_api_prefill_build,    zp_api_prefill_finish,   NEEDS },
	{ ZP_HTTP_POST, "/v1/score",      ZP_ROUTE_SCORE,      "score",      zp_api_vllm_score_build, zp_api_vllm_score_finish, NEEDS | JSON },
	{ ZP_HTTP_POST, "/score",         ZP_ROUTE_SCORE,      "score",      zp_api_vllm_score_build, zp_api_vllm_score_finish, NEEDS | JSON },
	{ ZP_HTTP_POST, "/classify",      ZP_ROUTE_CLASSIFY,   "classify",   zp_api_classify_build,   zp_api_classify_finish,  NEEDS | JSON },
	{ ZP_HTTP_POST, "/v1/rerank",     ZP_ROUTE_RERANK,     "rerank",     zp_api_tei_rerank_build, zp_api_tei_rerank_finish, NEEDS | JSON },
	{ ZP_HTTP_POST, "/rerank",        ZP_ROUTE_RERANK,     "rerank",     zp_api_tei_rerank_build, zp_api_tei_rerank_finish, NEEDS | JSON },
	{ ZP_HTTP_POST, "/v1/embeddings", ZP_ROUTE_EMBED,      "embeddings", zp_api_embed_build,      zp_api_embed_finish,     NEEDS | JSON },
	{ ZP_HTTP_POST, "/pooling",       ZP_ROUTE_POOLING,    "pooling",    zp_api_pooling_build,    zp_api_embed_finish,     NEEDS | JSON },
	{ ZP_HTTP_POST, "/tokenize",      ZP_ROUTE_TOKENIZE,   "tokenize",   zp_api_tei_tokenize_build, NULL,                  JSON },
	{ ZP_HTTP_POST, "/detokenize",    ZP_ROUTE_DETOKENIZE, "detokenize", zp_api_detokenize_build, NULL,                    JSON },
	{ ZP_HTTP_GET,  "/v1/models",     ZP_ROUTE_MODELS,     "models",     zp_api_models_build,     NULL,                    0 },
	{ ZP_HTTP_GET,  "/health",        ZP_ROUTE_HEALTH,     "health",     zp_api_health_build,     NULL,                    0 },
	{ ZP_HTTP_GET,  "/metrics",       ZP_ROUTE_METRICS,    "metrics",    zp_api_metrics_build,    NULL,                    ZP_ROUTE_SCRAPE },
	/* the other engines' paths (api_vllm.c, api_tei.c); the shared paths
	   above tell their shapes apart by their fields */
	{ ZP_HTTP_POST, "/v1/completions", ZP_ROUTE_COMPLETIONS, "completions", zp_api_completions_build, zp_api_completions_finish, NEEDS | JSON },
	{ ZP_HTTP_POST, "/v1/chat/completions", ZP_ROUTE_CHAT, "chat", zp_api_chat_build,   zp_api_chat_finish,      NEEDS | JSON },
	{ ZP_HTTP_POST, "/embed",         ZP_ROUTE_TEI_EMBED,  "embed",      zp_api_tei_embed_build,  zp_api_tei_embed_finish, NEEDS | JSON },
	{ ZP_HTTP_GET,  "/info",          ZP_ROUTE_TEI_INFO,   "info",       zp_api_tei_info_build,   NULL,                    0 },
	{ ZP_HTTP_POST, "/v2/rerank",     ZP_ROUTE_RERANK_V2,  "rerank_v2",  zp_api_tei_rerank_build, zp_api_cohere_rerank_finish, NEEDS | JSON },
	{ ZP_HTTP_POST, "/decode",        ZP_ROUTE_TEI_DECODE, "decode",     zp_api_tei_decode_build, NULL,                    JSON },
	/* SageMaker's one path (as vLLM): the body's fields pick the endpoint */
	{ ZP_HTTP_POST, "/invocations",   ZP_ROUTE_INVOCATIONS, "invocations", zp_api_invocations_build, zp_api_invocations_finish, NEEDS | JSON },
	{ ZP_HTTP_GET,  "/version",       ZP_ROUTE_VERSION,    "version",    zp_api_version_build,    NULL,                    0 },
	{ ZP_HTTP_HEAD, "/health",        ZP_ROUTE_HEALTH,     "health",     zp_api_health_build,     NULL,                    0 },
	{ ZP_HTTP_GET,  "/ping",          ZP_ROUTE_HEALTH,     "health",     zp_api_health_build,     NULL,                    0 },
	{ ZP_HTTP_POST, "/ping",          ZP_ROUTE_HEALTH,     "health",     zp_api_health_build,     NULL,                    0 },
	{ ZP_HTTP_HEAD, "/ping",          ZP_ROUTE_HEALTH,     "health",     zp_api_health_build,     NULL,                    0 },
};
#define NROUTES (sizeof routes / sizeof *routes)

const zp_route_entry *zp_route_rows(size_t *n)
{
	*n = NROUTES;
	return routes;
}

const zp_route_entry *zp_route_find(enum zp_http_method m, const char *path, int *status)
{
	bool path_known = false;
	for (size_t i = 0; i < NROUTES; i++)
		if (strcmp(path, routes[i].path) == 0) {
			if (routes[i].method == m)
				return &routes[i];
			path_known = true;
		}
	*status = path_known ? 405 : 404;
	return NULL;
}

const char *zp_route_allow(const char *path)
{
	static const char *const allow[8] = { NULL, "GET", "POST", "GET, POST", "HEAD", "GET, HEAD",
					      "HEAD, POST", "GET, HEAD, POST" };
	unsigned m = 0; /* 1 GET, 2 POST, 4 HEAD */
	for (size_t i = 0; i < NROUTES; i++)
		if (strcmp(path, routes[i].path) == 0)
			m |= routes[i].method == ZP_HTTP_GET ? 1u : routes[i].method == ZP_HTTP_POST ? 2u : 4u;
	return allow[m];
}

const zp_route_entry *zp_route_of(enum zp_route id)
{
	for (size_t i = 0; i < NROUTES; i++)
		if (routes[i].id == id)
			return &routes[i];
	ZP_ASSERT(!"an endpoint without a route");
	return NULL;
}

const char *zp_route_name(enum zp_route id)
{
	ZP_ASSERT(id >= 0 && id < ZP_ROUTE_COUNT);
	return id == ZP_ROUTE_OTHER ? "other" : zp_route_of(id)->name;
}

bool zp_route_needs_model(enum zp_route id)
{
	return id != ZP_ROUTE_OTHER && (zp_route_of(id)->flags & ZP_ROUTE_NEEDS_MODEL);
}

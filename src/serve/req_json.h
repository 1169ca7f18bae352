/* req_json.h -- the native request's JSON (POST /v1/prefill, the prefill CLI's
   lines): parse one into a zp_req, write its result or its error line. Runs on
   the thread that owns the request (reactor or CLI driver). With a region,
   nothing here calls malloc: the cJSON tree and the request's arrays come
   from the region. Parse errors fail that request only. */
#ifndef ZP_REQ_JSON_H
#define ZP_REQ_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "region.h"
#include "request.h"

struct cJSON;

/* "pooling": v absent gives dflt, "last" or "mean" their mode; false for any
   other value (the caller answers 400: pooling must be "last" or "mean"). */
bool zp_req_pooling(const struct cJSON *v, enum zp_pooling dflt, enum zp_pooling *out);

/* A JSON array of token ids into out[max]: *n of them, each in [0, vocab).
   0, or -1 with err set (name is the field). */
int zp_req_ids(const struct cJSON *a, const char *name, int vocab, int max, int32_t *out, int *n,
	       zp_req_error *err);

/* Parse one JSON request onto the heap (no region entered on this thread). 0,
   or -1 with err set; either way *r must be freed with zp_req_free. The id is
   recovered even when the rest is bad. */
int zp_req_parse(zp_req *r, const char *json, size_t len, const zp_req_limits *lim,
		 zp_req_error *err);
/* As zp_req_parse, with the cJSON tree and every array of *r in rg (the tree
   is dropped at rg's reset, and *r with it). A region too small for the
   request is a 413 (err says so). rg must not be entered by another thread. */
int zp_req_parse_in(zp_req *r, zp_region *rg, const char *json, size_t len,
		    const zp_req_limits *lim, zp_req_error *err);
/* Region bytes that any request of at most body_max bytes fits in, under lim:
   the largest cJSON tree such a body can make, the printed id, and the
   largest arrays the limits allow. For sizing regions at start-up. */
size_t zp_req_region_bytes(const zp_req_limits *lim, size_t body_max);

/* One result line (no newline): the fields asked for, or the error. With a
   fixed zp_buf, check out->overflow after. */
void zp_req_write_result(const zp_req *r, zp_buf *out);
void zp_req_write_error(const char *id_json, const zp_req_error *err, zp_buf *out);

#endif

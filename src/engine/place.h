/* place.h -- how experts are placed over executors (DESIGN.md section 3):
   the parallel modes and the one expert partition, which asyncep.c's
   placement and dpep.c's members both use. Pure functions; any thread. */
#ifndef ZP_PLACE_H
#define ZP_PLACE_H

#include "util.h"

#define ZP_EXECUTORS_MAX 64	/* executors of one engine (serve's executors bound) */

enum zp_parallel { ZP_PAR_REPLICATE, ZP_PAR_ASYNCEP, ZP_PAR_DPEP };

/* --parallel when not given: prefill, bench and serve alike. */
#define ZP_PARALLEL_DEFAULT ZP_PAR_ASYNCEP

/* "asyncep", "dpep" or "replicate" -> *p. 0, or -1 with e set. */
int zp_parallel_parse(const char *s, enum zp_parallel *p, zp_err *e);
const char *zp_parallel_name(enum zp_parallel p);

/* The one expert partition: member x of n owns experts [lo, hi) of experts
   (contiguous, sizes differing by one at most; n need not divide experts).
   asyncep's shards and dpep's members both use it. */
void zp_place_part(int n, int experts, int x, int *lo, int *hi);

#endif

/* place.c -- see place.h. */
#include "place.h"

#include <string.h>

int zp_parallel_parse(const char *s, enum zp_parallel *p, zp_err *e)
{
	if (!strcmp(s, "asyncep"))
		*p = ZP_PAR_ASYNCEP;
	else if (!strcmp(s, "replicate"))
		*p = ZP_PAR_REPLICATE;
	else if (!strcmp(s, "dpep"))
		*p = ZP_PAR_DPEP;
	else
		return zp_errf(e, "parallel must be asyncep, dpep or replicate");
	return 0;
}

const char *zp_parallel_name(enum zp_parallel p)
{
	return p == ZP_PAR_ASYNCEP ? "asyncep" : p == ZP_PAR_DPEP ? "dpep" : "replicate";
}

void zp_place_part(int n, int experts, int x, int *lo, int *hi)
{
	ZP_ASSERT(n >= 1 && x >= 0 && x < n);
	*lo = (int)((long)experts * x / n);
	*hi = (int)((long)experts * (x + 1) / n);
}

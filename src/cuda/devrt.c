/* devrt.c -- what both device runtimes (devrt_cuda.c, devrt_sim.c) share:
   the one place a failed device call goes (devrt.h's zp_drt_fail). Any
   thread. */
#include "devrt.h"

void zp_drt_fail(const char *dev, const char *call, const char *why, const char *file, int line)
{
	zp_log(ZP_LOG_ERROR, "msg=\"device call failed\" device=%s call=%s why=\"%s\" at=%s:%d", dev,
	       call, why, file, line);
	zp_panic(file, line, call);
}

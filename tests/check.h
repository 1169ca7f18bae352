/* check.h -- the few helpers every C test program shares: a failure counter,
   CHECK with a message, and the exit code convention (0 pass, 1 fail, 77 skip). */
#ifndef ZP_CHECK_H
#define ZP_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			check_failures++;                                    \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
		}                                                            \
	} while (0)

/* Fresh random inputs, reproducible: xorshift64, uniform in [lo, hi). */
static unsigned long long check_rng = 88172645463325252ull;
static inline float check_frand(float lo, float hi)
{
	check_rng ^= check_rng << 13;
	check_rng ^= check_rng >> 7;
	check_rng ^= check_rng << 17;
	return lo + (hi - lo) * (float)((check_rng >> 11) * (1.0 / 9007199254740992.0));
}

static inline int check_exit(const char *name)
{
	printf("%s: %s (%d failure%s)\n", name, check_failures ? "FAIL" : "ok", check_failures,
	       check_failures == 1 ? "" : "s");
	return check_failures ? 1 : 0;
}

#endif

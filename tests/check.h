/* check.h -- the few helpers every C test program shares: a failure counter,
   CHECK with a message, and the exit code convention (0 pass, 1 fail, 77 skip). */
#ifndef ZP_CHECK_H
#define ZP_CHECK_H

#include <stdio.h>
#include <stdlib.h>

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

/* A whole file, NUL-terminated (malloc'ed), its length in *len when len is
   not NULL; NULL when it cannot be opened. */
static inline char *check_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)(n > 0 ? n : 0) + 1);
	size_t got = n > 0 ? fread(b, 1, (size_t)n, f) : 0;
	b[got] = 0;
	fclose(f);
	if (len)
		*len = got;
	return b;
}

static inline int check_exit(const char *name)
{
	printf("%s: %s (%d failure%s)\n", name, check_failures ? "FAIL" : "ok", check_failures,
	       check_failures == 1 ? "" : "s");
	return check_failures ? 1 : 0;
}

#endif

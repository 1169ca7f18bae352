/* reqs.h -- the engine tests' requests (test_asyncep, test_engine,
   test_device_fault): n sequences of 1 to 40 random tokens asking for three
   candidates' log-probs and every prompt log-prob, from a seed; and the
   bitwise comparison of two runs' results. */
#ifndef ZP_TEST_REQS_H
#define ZP_TEST_REQS_H

#include <stdbool.h>
#include <string.h>

#include "request.h"
#include "util.h"

static inline void make_reqs(zp_req *r, int n, int vocab, unsigned seed)
{
	for (int s = 0; s < n; s++) {
		memset(&r[s], 0, sizeof r[s]);
		r[s].ntok = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 40;
		r[s].tokens = zp_xmalloc((size_t)r[s].ntok * sizeof *r[s].tokens);
		for (int i = 0; i < r[s].ntok; i++)
			r[s].tokens[i] = (int)((seed = seed * 1103515245u + 12345u) >> 16) % vocab;
		r[s].ncand = 3;
		r[s].want_cands = true;
		r[s].cands = zp_xmalloc(3 * sizeof *r[s].cands);
		r[s].cand_lp = zp_xmalloc(3 * sizeof *r[s].cand_lp);
		for (int k = 0; k < 3; k++)
			r[s].cands[k] = k * 7 % vocab;
		r[s].plp_start = 0;
		r[s].plp = zp_xmalloc((size_t)r[s].ntok * sizeof *r[s].plp);
	}
}

static inline void free_reqs(zp_req *r, int n)
{
	for (int s = 0; s < n; s++)
		zp_req_free(&r[s]);
}

/* a's and b's n sequences gave the same bits */
static inline bool same_reqs(const zp_req *a, const zp_req *b, int n)
{
	for (int s = 0; s < n; s++)
		if (memcmp(a[s].cand_lp, b[s].cand_lp, 3 * sizeof(float)) ||
		    memcmp(a[s].plp + 1, b[s].plp + 1, (size_t)(a[s].ntok - 1) * sizeof(float)))
			return false;
	return true;
}

#endif

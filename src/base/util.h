/* util.h -- assertions, logging, timing and small helpers used by every module.
   Owns nothing; thread-safe (logging writes whole lines with one write()). */
#ifndef ZP_UTIL_H
#define ZP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A broken invariant is a bug: always on, aborts with file:line. */
#define ZP_ASSERT(c) \
	do { if (!(c)) zp_panic(__FILE__, __LINE__, #c); } while (0)

_Noreturn void zp_panic(const char *file, int line, const char *what);

enum zp_log_level { ZP_LOG_DEBUG, ZP_LOG_INFO, ZP_LOG_WARN, ZP_LOG_ERROR };
extern enum zp_log_level zp_log_min;
/* key=value log line on stderr: "level=info msg=... k=v". Never prompt text. */
void zp_log(enum zp_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* One kind of log line that can repeat per request or per connection (a
   refused connection, a stale completion), written at most once a window:
   the first line of a window is written whole; the others are counted and
   summed up in one line when the window has passed, at the next such line or
   at zp_log_limit_flush:
     level=warn msg="connection refused" repeated=2311 seconds=10.0 note="..."
   The owner sets what (the summary's msg), lvl, window_s and optionally
   burst (lines written whole per window; 0 means 1); the rest starts zero.
   The one limiter every repeated warning goes through (connections, stale
   completions, ignored request fields). One thread per limiter: its owner's
   (no lock). */
typedef struct {
	const char *what;
	enum zp_log_level lvl;
	double window_s;
	int burst;			/* lines written per window (0: 1) */
	double t0;			/* when the window's first line went out; 0: none */
	int written;			/* lines written since t0 */
	unsigned long repeats;		/* lines counted, not written, since t0 */
} zp_log_limit;

/* A line of l's kind at time now (seconds, any clock the owner keeps using). */
void zp_log_limited(zp_log_limit *l, double now, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The summary line of a window that has passed (or of the window open now,
   when all: at shutdown), if lines were counted in it: called from the
   owner's periodic tick so a burst that stops is still told. */
void zp_log_limit_flush(zp_log_limit *l, double now, bool all);

/* Allocation that aborts on failure: only at start-up, never per request. */
void *zp_xmalloc(size_t n);
void *zp_xcalloc(size_t n, size_t sz);
/* 64-byte aligned (cache line / zmm, AMX tile rows), zero-filled; large blocks
   come zeroed from the kernel page by page, so untouched workspace costs no
   memory. Free with zp_free_aligned. */
void *zp_xalloc_aligned(size_t n);
void zp_free_aligned(void *p);

double zp_now_s(void);

/* Error text for the outside-world failures: written into a caller buffer. */
#define ZP_ERR_LEN 256
typedef struct { char msg[ZP_ERR_LEN]; } zp_err;
int zp_errf(zp_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Progress on a terminal (stderr is a tty): "\rlabel i/n"; silent otherwise. */
void zp_progress(const char *label, size_t i, size_t n);

/* The directory part of path into dir[n]: "." for a bare name, "/" for "/s". */
void zp_path_dir(const char *path, char *dir, size_t n);

/* bf16 / f16 conversions (bit exact: round to nearest even, NaN kept quiet). */
static inline float zp_bf16_to_f32(uint16_t h)
{
	union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
	return v.f;
}
static inline uint16_t zp_f32_to_bf16(float f)
{
	union { uint32_t u; float f; } v = { .f = f };
	if ((v.u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((v.u >> 16) | 0x40);
	v.u += 0x7fffu + ((v.u >> 16) & 1u);
	return (uint16_t)(v.u >> 16);
}
float zp_f16_to_f32(uint16_t h);

#define ZP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ZP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define ZP_ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

#endif

/* util.c -- see util.h. */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum zp_log_level zp_log_min = ZP_LOG_INFO;

void zp_panic(const char *file, int line, const char *what)
{
	fprintf(stderr, "level=fatal msg=\"assertion failed\" what=\"%s\" at=%s:%d\n",
		what, file, line);
	abort();
}

void zp_log(enum zp_log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	char line[1024];
	int n;
	va_list ap;

	if (lvl < zp_log_min)
		return;
	n = snprintf(line, sizeof line, "level=%s ", names[lvl]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	if (write(2, line, (size_t)n) < 0) {
		/* stderr gone: nothing better to do */
	}
}

void zp_log_limit_flush(zp_log_limit *l, double now, bool all)
{
	if (l->t0 <= 0 || (!all && now - l->t0 < l->window_s))
		return;
	if (l->repeats)
		zp_log(l->lvl, "msg=\"%s\" repeated=%lu seconds=%.1f note=\"lines like the last "
		       "one written, counted instead of written\"", l->what, l->repeats, now - l->t0);
	l->repeats = 0;
	l->t0 = 0;
	l->written = 0;
}

void zp_log_limited(zp_log_limit *l, double now, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	ZP_ASSERT(l->what && l->window_s > 0);
	if (l->lvl < zp_log_min)
		return;
	zp_log_limit_flush(l, now, false);
	if (l->t0 > 0 && l->written >= (l->burst > 0 ? l->burst : 1)) {
		l->repeats++;
		return;
	}
	if (l->t0 <= 0)
		l->t0 = now > 0 ? now : 1e-9; /* 0 means no window */
	l->written++;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	zp_log(l->lvl, "%s", line);
}

void *zp_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		zp_log(ZP_LOG_ERROR, "msg=\"out of memory\" bytes=%zu", n);
		abort();
	}
	return p;
}

void *zp_xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p) {
		zp_log(ZP_LOG_ERROR, "msg=\"out of memory\" bytes=%zu", n * sz);
		abort();
	}
	return p;
}

/* Blocks from this size up are mapped fresh by mmap: zero and untouched
   until written (a prefix cache of GiBs costs nothing at start), given back
   whole on free. glibc's calloc does the same for them; tsan's calloc
   clears them by writing instead (a 4 GiB cache took 11 s of system time
   to start under it). */
#define BIG_ALLOC ((size_t)1 << 20)

/* Before each block: [-1] the calloc'd start, or NULL for a mapped block,
   whose mapping starts 64 bytes below and runs [-2] bytes. */
void *zp_xalloc_aligned(size_t n)
{
	if (n >= BIG_ALLOC) {
		size_t len = n + 64;
		char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED) {
			zp_log(ZP_LOG_ERROR, "msg=\"out of memory\" bytes=%zu error=\"mmap: %s\"", n,
			       strerror(errno));
			abort();
		}
		char *p = m + 64;
		((void **)p)[-1] = NULL;
		((size_t *)p)[-2] = len;
		return p;
	}
	/* calloc: zero memory */
	char *raw = calloc(1, n + 64 + sizeof(void *));
	if (!raw) {
		zp_log(ZP_LOG_ERROR, "msg=\"out of memory\" bytes=%zu", n);
		abort();
	}
	char *p = (char *)ZP_ALIGN_UP((uintptr_t)raw + sizeof(void *), 64);
	((void **)p)[-1] = raw;
	return p;
}

void zp_free_aligned(void *p)
{
	if (!p)
		return;
	if (((void **)p)[-1])
		free(((void **)p)[-1]);
	else
		munmap((char *)p - 64, ((size_t *)p)[-2]);
}

double zp_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int zp_errf(zp_err *e, const char *fmt, ...)
{
	va_list ap;
	if (!e)
		return -1;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return -1;
}

void zp_progress(const char *label, size_t i, size_t n)
{
	static int tty = -1;
	if (tty < 0)
		tty = isatty(2);
	if (!tty)
		return;
	fprintf(stderr, "\r%s %zu/%zu\033[K%s", label, i, n, i == n ? "\n" : "");
	fflush(stderr);
}

float zp_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;
	union { uint32_t u; float f; } v;

	if (exp == 0) {
		/* zero or subnormal: value = man * 2^-24 */
		v.f = (float)man * 5.9604644775390625e-8f;
		v.u |= sign;
		return v.f;
	}
	if (exp == 31)
		v.u = sign | 0x7f800000u | (man << 13);
	else
		v.u = sign | ((exp + 112u) << 23) | (man << 13);
	return v.f;
}

void zp_path_dir(const char *path, char *dir, size_t n)
{
	snprintf(dir, n, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, n, ".");
	else
		slash[slash == dir] = 0; /* "/s" -> "/" */
}

/* alloc_count.h -- counts heap allocations in a test program. Include it in
   exactly one .c file of the program: it defines malloc, calloc, realloc,
   free and the aligned forms, which then serve the whole process (our code,
   cJSON and glibc's own strdup/getline/...), forwarding to
   glibc's __libc_* functions. Counting is off until zp_alloc_count_begin() and
   off again at zp_alloc_count_end(); every thread is counted. The first
   ALLOC_SITES_MAX allocations counted keep their size and caller for the
   report. Under ASan/TSan (which own malloc) it is compiled out:
   zp_alloc_count_available() says so and the test skips. The including file
   defines _GNU_SOURCE before its first include (for dladdr). */
#ifndef ZP_ALLOC_COUNT_H
#define ZP_ALLOC_COUNT_H

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ZP_ALLOC_COUNT_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ZP_ALLOC_COUNT_OFF 1
#endif
#endif

#define ALLOC_SITES_MAX 16

static atomic_bool alloc_counting;
static atomic_long alloc_calls;
static struct {
	size_t bytes;
	void *caller;
} alloc_sites[ALLOC_SITES_MAX];

#ifndef ZP_ALLOC_COUNT_OFF
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t sz);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);

static void alloc_note(size_t n, void *caller)
{
	if (!atomic_load_explicit(&alloc_counting, memory_order_relaxed))
		return;
	long i = atomic_fetch_add(&alloc_calls, 1);
	if (i < ALLOC_SITES_MAX) {
		alloc_sites[i].bytes = n;
		alloc_sites[i].caller = caller;
	}
}

void *malloc(size_t n)
{
	alloc_note(n, __builtin_return_address(0));
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t sz)
{
	alloc_note(n * sz, __builtin_return_address(0));
	return __libc_calloc(n, sz);
}

/* A realloc is an allocation (it may move), except a pure free (n == 0). */
void *realloc(void *p, size_t n)
{
	if (n)
		alloc_note(n, __builtin_return_address(0));
	return __libc_realloc(p, n);
}

void free(void *p)
{
	__libc_free(p);
}

void *memalign(size_t align, size_t n)
{
	alloc_note(n, __builtin_return_address(0));
	return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
	alloc_note(n, __builtin_return_address(0));
	return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	alloc_note(n, __builtin_return_address(0));
	void *p = __libc_memalign(align, n);
	if (!p)
		return 12; /* ENOMEM */
	*out = p;
	return 0;
}
#endif

static inline bool zp_alloc_count_available(void)
{
#ifdef ZP_ALLOC_COUNT_OFF
	return false;
#else
	return true;
#endif
}

/* Start counting from zero. */
static inline void zp_alloc_count_begin(void)
{
	atomic_store(&alloc_calls, 0);
	atomic_store(&alloc_counting, true);
}

/* Stop counting; the allocations counted since the begin. */
static inline long zp_alloc_count_end(void)
{
	atomic_store(&alloc_counting, false);
	return atomic_load(&alloc_calls);
}

/* The sizes and callers of the first allocations counted, as object file +
   offset (for addr2line -e FILE OFFSET). Call it after zp_alloc_count_end. */
static inline void zp_alloc_count_report(FILE *f, const char *what, long n)
{
	for (long i = 0; i < n && i < ALLOC_SITES_MAX; i++) {
		Dl_info di = { 0 };
		void *c = alloc_sites[i].caller;
		dladdr(c, &di);
		fprintf(f, "  %s: allocation %ld: %zu bytes from %s+%#lx\n", what, i,
			alloc_sites[i].bytes, di.dli_fname ? di.dli_fname : "?",
			(unsigned long)((char *)c - (char *)di.dli_fbase));
	}
}

#endif

/* ipc.h -- what every ipc/ header shares: an always-on assert (ipc/ includes
   nothing from src/, so it has its own) and the cache-line size the shared
   structures are padded to. Any thread. */
#ifndef ZP_IPC_H
#define ZP_IPC_H

#include <stdio.h>
#include <stdlib.h>

#define ZP_IPC_LINE 64 /* bytes: one cache line */

/* A broken invariant of shared memory is a bug: abort with file:line, under
   NDEBUG too (STYLE 5). */
#define ZP_IPC_ASSERT(c)                                                              \
	do {                                                                          \
		if (!(c)) {                                                           \
			fprintf(stderr, "ipc assertion failed: %s (%s:%d)\n", #c, __FILE__, \
				__LINE__);                                            \
			abort();                                                      \
		}                                                                     \
	} while (0)

#endif

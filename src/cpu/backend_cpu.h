/* backend_cpu.h -- the cpu backend (backend.h's ops on the AMX / AVX512-BF16 /
   AVX512 / plain-C kernels of this room), and host events. An instance owns
   its thread pool; its memory is host memory. Built and used by one owner
   thread; its events by any thread. */
#ifndef ZP_BACKEND_CPU_H
#define ZP_BACKEND_CPU_H

#include "backend.h"

/* threads counts the caller (zp_pool_new). Free with b->ops->free(b). */
zp_backend *zp_backend_cpu_new(int threads);

/* The cpu backend's events, for host threads that hold no backend (a comm
   thread): a count of records under a mutex and condition variable. */
zp_event *zp_cpu_event_new(void);
void zp_cpu_event_free(zp_event *ev);
uint64_t zp_cpu_event_record(zp_event *ev);
void zp_cpu_event_wait(zp_event *ev, uint64_t n);

#endif

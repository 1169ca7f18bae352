/* backend_cpu.h -- the cpu backend (backend.h's ops on the AMX / AVX512-BF16 /
   AVX512 / plain-C kernels of this room). An instance owns
   its thread pool; its memory is host memory. Built and used by one owner
   thread; its events by any thread. */
#ifndef ZP_BACKEND_CPU_H
#define ZP_BACKEND_CPU_H

#include "backend.h"

/* threads counts the caller (zp_pool_new). Free with b->ops->free(b). */
zp_backend *zp_backend_cpu_new(int threads);

#endif

/* cpu.h -- what this CPU can run, probed once per process (thread-safe): AVX512F,
   AVX512-BF16, and AMX-BF16 with the kernel's permission for the tile state.
   ZP_NO_AMX=1 in the environment turns AMX off (to compare the paths). */
#ifndef ZP_CPU_H
#define ZP_CPU_H

int zp_cpu_avx512(void);
int zp_cpu_bf16(void);
int zp_cpu_amx(void);

#endif

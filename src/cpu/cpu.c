/* cpu.c -- see cpu.h. */
#include "cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int avx512, bf16, amx;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void probe(void)
{
	unsigned a, b, c, d;
	avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
	bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
	if (bf16 && !getenv("ZP_NO_AMX") && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
	    (d & (1u << 22)) && (d & (1u << 24))) /* AMX-BF16, AMX-TILE */
		amx = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

int zp_cpu_avx512(void)
{
	pthread_once(&once, probe);
	return avx512;
}

int zp_cpu_bf16(void)
{
	pthread_once(&once, probe);
	return bf16;
}

int zp_cpu_amx(void)
{
	pthread_once(&once, probe);
	return amx;
}

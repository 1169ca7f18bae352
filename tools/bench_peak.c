/* bench_peak.c -- the arithmetic peak of this CPU, measured: independent chains of
   vfmadd231ps (f32), vdpbf16ps (AVX512-BF16) and tdpbf16ps (AMX) on registers,
   no memory traffic, one thread per core. What "% of peak" in the notes divides by.
   Build: make build/bench_peak; run: build/bench_peak [threads] */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "util.h"

#define N 20000000L

__attribute__((target("avx512f"))) static float f32_chains(long n)
{
	__m512 a[12], x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f);
	for (int i = 0; i < 12; i++)
		a[i] = _mm512_set1_ps((float)i);
	for (long k = 0; k < n; k++)
#pragma GCC unroll 12
		for (int i = 0; i < 12; i++)
			a[i] = _mm512_fmadd_ps(a[i], x, y);
	float s = 0;
	for (int i = 0; i < 12; i++)
		s += _mm512_reduce_add_ps(a[i]);
	return s; /* 12 x 16 lanes x 2 flops per k */
}

__attribute__((target("avx512f,avx512bf16"))) static float bf16_chains(long n)
{
	__m512 a[12];
	__m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x3c003c00);
	for (int i = 0; i < 12; i++)
		a[i] = _mm512_set1_ps((float)i);
	for (long k = 0; k < n; k++)
#pragma GCC unroll 12
		for (int i = 0; i < 12; i++)
			a[i] = _mm512_dpbf16_ps(a[i], x, y);
	float s = 0;
	for (int i = 0; i < 12; i++)
		s += _mm512_reduce_add_ps(a[i]);
	return s; /* 12 x 16 lanes x 4 flops per k */
}

struct cfg {
	uint8_t palette, start_row, reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};

__attribute__((target("amx-tile,amx-bf16"))) static float amx_chains(long n)
{
	_Alignas(64) struct cfg c;
	_Alignas(64) static __thread uint16_t ab[16 * 32];
	_Alignas(64) float out[256];
	memset(&c, 0, sizeof c);
	c.palette = 1;
	for (int t = 0; t < 8; t++) {
		c.colsb[t] = 64;
		c.rows[t] = 16;
	}
	__asm__ __volatile__("" : : "r"(&c) : "memory");
	_tile_loadconfig(&c);
	_tile_loadd(4, ab, 64);
	_tile_loadd(5, ab, 64);
	_tile_loadd(6, ab, 64);
	_tile_loadd(7, ab, 64);
	_tile_zero(0);
	_tile_zero(1);
	_tile_zero(2);
	_tile_zero(3);
	for (long k = 0; k < n / 16; k++) {
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		_tile_dpbf16ps(2, 5, 6);
		_tile_dpbf16ps(3, 5, 7);
	}
	_tile_stored(0, out, 64);
	_tile_release();
	return out[0]; /* 4 x 16 x 16 x 32 x 2 flops per k */
}

struct job {
	int kind;
	double flops;
};

static void *run(void *v)
{
	struct job *j = v;
	volatile float s;
	if (j->kind == 0) {
		s = f32_chains(N);
		j->flops = N * 12.0 * 16 * 2;
	} else if (j->kind == 1) {
		s = bf16_chains(N);
		j->flops = N * 12.0 * 16 * 4;
	} else {
		s = amx_chains(N);
		j->flops = N / 16 * 4.0 * 16 * 16 * 32 * 2;
	}
	(void)s;
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 2;
	static const char *names[] = { "f32 vfmadd231ps", "bf16 vdpbf16ps", "bf16 AMX tdpbf16ps" };
	int have[] = { zp_cpu_avx512(), zp_cpu_bf16(), zp_cpu_amx() };
	for (int kind = 0; kind < 3; kind++) {
		if (!have[kind]) {
			printf("%-20s not available on this CPU\n", names[kind]);
			continue;
		}
		pthread_t t[64];
		struct job j[64];
		double t0 = zp_now_s(), fl = 0;
		for (int i = 0; i < threads; i++) {
			j[i].kind = kind;
			pthread_create(&t[i], NULL, run, &j[i]);
		}
		for (int i = 0; i < threads; i++) {
			pthread_join(t[i], NULL);
			fl += j[i].flops;
		}
		printf("%-20s %8.1f GFLOP/s (%d threads)\n", names[kind], fl / (zp_now_s() - t0) * 1e-9,
		       threads);
	}
	return 0;
}

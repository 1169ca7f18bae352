/* bench_gemm.c -- zprefill's AVX512-BF16 GEMM against oneDNN's matmul (Debian
   libdnnl, which picks AMX/AVX512 itself) on the shapes of a prefill, run
   alternately in one process; prints GFLOP/s of each and the ratio.
   Build and run: make tools/bench_gemm && OMP_NUM_THREADS=2 build/bench_gemm */
#include <dnnl.h>
#include <stdio.h>
#include <string.h>

#include "gemm.h"
#include "safetensors.h"
#include "util.h"

#define DNNL_OK(x) ZP_ASSERT((x) == dnnl_success)

struct shape {
	const char *what;
	int m, n, k;
};

static const void *row_fn(void *ctx, int n)
{
	return (const uint16_t *)ctx + (size_t)n * 4096;
}

struct onednn {
	dnnl_engine_t eng;
	dnnl_stream_t st;
	dnnl_primitive_t prim;
	dnnl_memory_t a, w, c;
};

static void onednn_init(struct onednn *o, const struct shape *s, uint16_t *a, uint16_t *wsrc,
			float *c)
{
	dnnl_memory_desc_t ad, wd, cd, wany, wplain;
	dnnl_matmul_desc_t md;
	dnnl_primitive_desc_t pd;
	dnnl_dims_t adims = { s->m, s->k }, wdims = { s->k, s->n }, cdims = { s->m, s->n };
	dnnl_memory_t wp;
	dnnl_primitive_t reorder;
	dnnl_primitive_desc_t rpd;

	DNNL_OK(dnnl_engine_create(&o->eng, dnnl_cpu, 0));
	DNNL_OK(dnnl_stream_create(&o->st, o->eng, dnnl_stream_default_flags));
	DNNL_OK(dnnl_memory_desc_init_by_tag(&ad, 2, adims, dnnl_bf16, dnnl_ab));
	DNNL_OK(dnnl_memory_desc_init_by_tag(&wany, 2, wdims, dnnl_bf16, dnnl_format_tag_any));
	/* weights as stored by HF: [N, K] row-major = [K, N] with tag ba */
	DNNL_OK(dnnl_memory_desc_init_by_tag(&wplain, 2, wdims, dnnl_bf16, dnnl_ba));
	DNNL_OK(dnnl_memory_desc_init_by_tag(&cd, 2, cdims, dnnl_f32, dnnl_ab));
	DNNL_OK(dnnl_matmul_desc_init(&md, &ad, &wany, NULL, &cd));
	DNNL_OK(dnnl_primitive_desc_create(&pd, &md, NULL, o->eng, NULL));
	wd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	DNNL_OK(dnnl_primitive_create(&o->prim, pd));
	DNNL_OK(dnnl_memory_create(&o->a, &ad, o->eng, a));
	DNNL_OK(dnnl_memory_create(&o->c, &cd, o->eng, c));
	DNNL_OK(dnnl_memory_create(&wp, &wplain, o->eng, wsrc));
	DNNL_OK(dnnl_memory_create(&o->w, &wd, o->eng, DNNL_MEMORY_ALLOCATE));
	DNNL_OK(dnnl_reorder_primitive_desc_create(&rpd, &wplain, o->eng, &wd, o->eng, NULL));
	DNNL_OK(dnnl_primitive_create(&reorder, rpd));
	dnnl_exec_arg_t rargs[] = { { DNNL_ARG_FROM, wp }, { DNNL_ARG_TO, o->w } };
	DNNL_OK(dnnl_primitive_execute(reorder, o->st, 2, rargs));
	DNNL_OK(dnnl_stream_wait(o->st));
	const char *impl = NULL;
	dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
	printf("  onednn impl: %s\n", impl ? impl : "?");
	dnnl_primitive_destroy(reorder);
	dnnl_primitive_desc_destroy(rpd);
	dnnl_primitive_desc_destroy(pd);
	dnnl_memory_destroy(wp);
}

static void onednn_run(struct onednn *o)
{
	dnnl_exec_arg_t args[] = { { DNNL_ARG_SRC, o->a }, { DNNL_ARG_WEIGHTS, o->w },
				   { DNNL_ARG_DST, o->c } };
	DNNL_OK(dnnl_primitive_execute(o->prim, o->st, 3, args));
	DNNL_OK(dnnl_stream_wait(o->st));
}

int main(int argc, char **argv)
{
	static const struct shape shapes[] = {
		{ "qkv 512 tok (small)", 512, 3072, 1024 },
		{ "expert gate_up 64 tok", 64, 768, 1024 },
		{ "expert down 64 tok", 64, 1024, 384 },
		{ "o_proj 2048 tok (30B)", 2048, 2048, 4096 },
		{ "lm_head 32 rows", 32, 32000, 1024 },
	};
	int threads = argc > 1 ? atoi(argv[1]) : 2, reps = 5;
	zp_pool *pool = zp_pool_new(threads);
	uint16_t *wsrc = zp_xalloc_aligned((size_t)32000 * 4096 * 2);
	uint16_t *a = zp_xalloc_aligned((size_t)2048 * 4096 * 2);
	float *c = zp_xalloc_aligned((size_t)2048 * 32000 * 4);

	for (size_t i = 0; i < (size_t)32000 * 4096; i++)
		wsrc[i] = zp_f32_to_bf16((float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f);
	for (size_t i = 0; i < (size_t)2048 * 4096; i++)
		a[i] = zp_f32_to_bf16((float)((i * 40503u) % 1000) / 1000.0f - 0.5f);
	printf("threads=%d zp_isa=%s\n", threads, zp_gemm_isa());
	for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
		const struct shape *s = &shapes[si];
		zp_wmat w;
		void *packed = zp_xalloc_aligned(zp_wmat_bytes(ZP_W_BF16, ZP_WS_PLAIN, s->n, s->k));
		/* oneDNN reads weights as [K, N] (tag ba over a [N, K] buffer with stride 4096
		   is not expressible simply): give it its own dense copy */
		uint16_t *wdense = zp_xalloc_aligned((size_t)s->n * s->k * 2);
		for (int n = 0; n < s->n; n++)
			memcpy(wdense + (size_t)n * s->k, wsrc + (size_t)n * 4096, (size_t)s->k * 2);
		zp_wmat_pack(&w, packed, ZP_W_BF16, ZP_WS_PLAIN, s->n, s->k,
			     &(zp_wsrc){ ZP_DT_BF16, row_fn, NULL, wsrc });
		struct onednn o;
		printf("%s: M=%d N=%d K=%d\n", s->what, s->m, s->n, s->k);
		onednn_init(&o, s, a, wdense, c);
		zp_gemm_op op = { .a = a, .lda = (size_t)s->k, .m = s->m, .w = &w, .c = c,
				  .ldc = (size_t)s->n, .epi = ZP_EPI_STORE };
		double tz = 1e30, td = 1e30, fl = 2.0 * s->m * s->n * s->k;
		zp_gemm_run(pool, &op, 1);
		onednn_run(&o);
		for (int r = 0; r < reps; r++) { /* alternate: the machine is shared and noisy */
			double t0 = zp_now_s();
			zp_gemm_run(pool, &op, 1);
			double t1 = zp_now_s();
			onednn_run(&o);
			double t2 = zp_now_s();
			tz = t1 - t0 < tz ? t1 - t0 : tz;
			td = t2 - t1 < td ? t2 - t1 : td;
		}
		printf("  zprefill %.1f GFLOP/s   onednn %.1f GFLOP/s   ratio zp/onednn %.2f\n",
		       fl / tz * 1e-9, fl / td * 1e-9, td / tz);
		dnnl_primitive_destroy(o.prim);
		dnnl_memory_destroy(o.a);
		dnnl_memory_destroy(o.w);
		dnnl_memory_destroy(o.c);
		dnnl_stream_destroy(o.st);
		dnnl_engine_destroy(o.eng);
		zp_free_aligned(packed);
		zp_free_aligned(wdense);
	}
	zp_pool_free(pool);
	return 0;
}

/* test_gds.c -- GPUDirect loading (src/cuda/gds_load.h) on the sim device,
   which plays cuFile with pread into its memory under the same O_DIRECT rule:
   the runtime's file reads refuse what O_DIRECT refuses and read what the file
   holds; the CUDA backend's mirror of a model, loaded with GDS, holds every
   matrix byte for byte as the host copy in the cuda layout (q/k/v rows of
   wqkv, gate and up halves of padded SwiGLU matrices, tied lm_head, shards),
   the log says which path ran and why; a read that fails (the file changed
   under the loader: short) leaves the mirror whole through the staged path.
   No GPU needed. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_cuda.h"
#include "check.h"
#include "devrt.h"
#include "gds_load.h"
#include "model.h"

/* stderr into a file while fn runs; the file's text back (malloc'ed) */
static char *capture_begin(int *saved, char *path)
{
	strcpy(path, "/tmp/zp_test_gds_log_XXXXXX");
	int fd = mkstemp(path);
	ZP_ASSERT(fd >= 0);
	fflush(stderr);
	*saved = dup(2);
	dup2(fd, 2);
	close(fd);
	return path;
}

static char *capture_end(int saved, const char *path)
{
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char *t = check_slurp(path, NULL);
	unlink(path);
	return t;
}

static int load(zp_model *m, const char *dir)
{
	zp_err e;
	if (zp_model_load(m, dir, ZP_W_BF16, &zp_cuda_wlayout, 2, NULL, &e)) {
		CHECK(0, "load %s: %s", dir, e.msg);
		return -1;
	}
	return 0;
}

/* the layout's bytes of w (FP8: codes, per-row scales, the BLK128x128
   tensor: backend_cuda.c) */
static size_t mbytes(const zp_wmat *w)
{
	if (w->store == ZP_WS_FP8) {
		size_t nkb = (size_t)(w->k + 127) / 128, nrb = (size_t)(w->n + 127) / 128;
		return w->scale_off + ZP_ALIGN_UP((size_t)w->n * nkb * 4, 64) + ZP_ALIGN_UP(nkb * nrb * 4, 64);
	}
	return (size_t)w->n * w->kp * (w->type == ZP_W_F32 ? 4 : 2);
}

static void same(const char *what, int l, const zp_wmat *dev, const zp_wmat *host)
{
	CHECK(dev->n == host->n && dev->kp == host->kp && dev->data != host->data &&
		      !memcmp(dev->data, host->data, mbytes(host)),
	      "%s layer %d: the device matrix differs from the host copy", what, l);
}

/* every matrix of the sim mirror d against the host model m */
static void mirror_matches(const char *dir, const zp_model *d, const zp_model *m)
{
	same("lm_head", -1, &d->lm_head, &m->lm_head);
	for (int l = 0; l < m->cfg.layers; l++) {
		const zp_layer *D = &d->layers[l], *L = &m->layers[l];
		same("wqkv", l, &D->wqkv, &L->wqkv);
		same("wo", l, &D->wo, &L->wo);
		if (!L->sparse) {
			same("w_gate_up", l, &D->w_gate_up, &L->w_gate_up);
			same("w_down", l, &D->w_down, &L->w_down);
			continue;
		}
		same("router", l, &D->router, &L->router);
		for (int x = 0; x < m->cfg.experts; x++) {
			same("expert gate_up", l, &D->exp_gate_up[x], &L->exp_gate_up[x]);
			same("expert down", l, &D->exp_down[x], &L->exp_down[x]);
		}
	}
	(void)dir;
}

/* the mirror of dir's model on a sim backend; the log of its upload */
static char *mirror_check(const char *dir, const char *gds_env)
{
	zp_model m;
	zp_err e;
	char path[64];
	int saved;
	if (load(&m, dir))
		return NULL;
	if (gds_env)
		setenv("ZP_GDS", gds_env, 1);
	else
		unsetenv("ZP_GDS");
	zp_backend *b = zp_backend_device_new(ZP_DEV_SIM, 0, 2, &m.cfg, 64, &e);
	ZP_ASSERT(b);
	capture_begin(&saved, path);
	const zp_model *d = zp_backend_cuda_model(b, &m, true, &e);
	char *log = capture_end(saved, path);
	CHECK(d, "%s: mirror: %s", dir, e.msg);
	if (d)
		mirror_matches(dir, d, &m);
	b->ops->free(b);
	zp_model_free(&m);
	unsetenv("ZP_GDS");
	return log;
}

/* the FP8 checkpoints: F8_E4M3 codes of k % 16 == 0 come by GDS (their
   scales staged), the rest (fp8-odd's k 200 and 136: rows padded to 16
   codes) staged; the mirror is the host copy either way */
static void check_mirrors(void)
{
	static const char *dirs[] = { "tests/models/odd", "tests/models/tied-sharded",
				      "tests/models/dense", "tests/models/hd64",
				      "tests/models/dense-fp8", "tests/models/fp8-odd" };
	for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
		char *log = mirror_check(dirs[i], NULL);
		CHECK(log && strstr(log, "path=gds"), "%s: the upload did not go through GDS:\n%s",
		      dirs[i], log ? log : "");
		free(log);
		log = mirror_check(dirs[i], "off");
		CHECK(log && strstr(log, "path=staged why=\"ZP_GDS=off\"") && !strstr(log, "path=gds"),
		      "%s: ZP_GDS=off is not the staged path, said once:\n%s", dirs[i],
		      log ? log : "");
		free(log);
	}
}

/* O_DIRECT's rule on the sim's file reads, and the bytes they read */
static void check_reads(void)
{
	const char *file = "tests/models/odd/model.safetensors";
	zp_drt *r = zp_drt_sim_new(2);
	char why[256];
	struct stat st;
	ZP_ASSERT(stat(file, &st) == 0 && st.st_size > 3 * ZP_DFILE_ALIGN);
	zp_dfile *f = r->ops->file_open(r, file, why, sizeof why);
	CHECK(f, "file_open: %s", why);
	char *raw = r->ops->alloc(r, 4 * ZP_DFILE_ALIGN), *buf;
	buf = (char *)ZP_ALIGN_UP((uintptr_t)raw, ZP_DFILE_ALIGN);
	CHECK(r->ops->file_read(r, f, buf, 100, ZP_DFILE_ALIGN, why, sizeof why) < 0 &&
		      strstr(why, "file offset"), "an unaligned offset was read (%s)", why);
	CHECK(r->ops->file_read(r, f, buf + 64, 0, ZP_DFILE_ALIGN, why, sizeof why) < 0 &&
		      strstr(why, "device address"), "an unaligned address was read (%s)", why);
	CHECK(r->ops->file_read(r, f, buf, 0, 1000, why, sizeof why) < 0 && strstr(why, "size"),
	      "an unaligned size was read (%s)", why);
	int64_t got = r->ops->file_read(r, f, buf, ZP_DFILE_ALIGN, 2 * ZP_DFILE_ALIGN, why, sizeof why);
	char *ref = zp_xmalloc(2 * ZP_DFILE_ALIGN);
	int fd = open(file, O_RDONLY);
	ZP_ASSERT(fd >= 0 && pread(fd, ref, 2 * ZP_DFILE_ALIGN, ZP_DFILE_ALIGN) == 2 * ZP_DFILE_ALIGN);
	close(fd);
	CHECK(got == 2 * ZP_DFILE_ALIGN && !memcmp(buf, ref, 2 * ZP_DFILE_ALIGN),
	      "an aligned read: %lld bytes, or not the file's", (long long)got);
	uint64_t past = (uint64_t)st.st_size / ZP_DFILE_ALIGN * ZP_DFILE_ALIGN;
	got = r->ops->file_read(r, f, buf, past, 2 * ZP_DFILE_ALIGN, why, sizeof why);
	CHECK(got == st.st_size - (int64_t)past, "a read past the end: %lld bytes, not %lld",
	      (long long)got, (long long)(st.st_size - (int64_t)past));
	r->ops->file_close(r, f);
	CHECK(!r->ops->file_open(r, "tests/models/odd/absent.safetensors", why, sizeof why) &&
		      strstr(why, "absent"), "a missing file opened");
	free(ref);
	r->ops->free(r, raw);
	r->ops->close(r);
}

/* the module alone: what qualifies, and what does not */
static void check_module(void)
{
	zp_model m;
	char why[256];
	if (load(&m, "tests/models/odd"))
		return;
	zp_drt *r = zp_drt_sim_new(2);
	zp_gds *g = zp_gds_new(r, &m, 3, why, sizeof why);
	CHECK(g, "zp_gds_new: %s", why);
	zp_wmat wo = m.layers[0].wo, router = m.layers[0].router;
	wo.data = r->ops->alloc(r, mbytes(&wo));
	router.data = r->ops->alloc(r, mbytes(&router));
	const char *o = "model.layers.0.self_attn.o_proj.weight", *q = "model.layers.0.self_attn.q_proj.weight";
	const char *rt = "model.layers.0.mlp.gate.weight";
	int row0 = 0, row1 = 1;
	CHECK(!zp_gds_add(g, &router, m.layers[0].router.data, &rt, &row0, 1),
	      "the f32 router is served from a bf16 file");
	CHECK(!zp_gds_add(g, &wo, m.layers[0].wo.data, &q, &row0, 1),
	      "q_proj [%d rows] served as o_proj [%d rows]", m.cfg.heads * m.cfg.head_dim, wo.n);
	CHECK(!zp_gds_add(g, &wo, m.layers[0].wo.data, &o, &row1, 1),
	      "o_proj served one row down, past the matrix");
	CHECK(zp_gds_add(g, &wo, m.layers[0].wo.data, &o, &row0, 1), "o_proj not served");
	CHECK(zp_gds_run(g, NULL, NULL, why, sizeof why) == 0, "zp_gds_run: %s", why);
	CHECK(!memcmp(wo.data, m.layers[0].wo.data, mbytes(&wo)), "o_proj read wrong");
	zp_gds_free(g);
	m.random = true;
	CHECK(!zp_gds_new(r, &m, 2, why, sizeof why) && strstr(why, "random"),
	      "random weights have a file");
	m.random = false;
	r->ops->free(r, wo.data);
	r->ops->free(r, router.data);
	r->ops->close(r);
	zp_model_free(&m);
}

/* a read that fails: the file was replaced by a short one after the load
   (the loader's mapping keeps the old bytes); the mirror is whole anyway */
static void check_fallback(void)
{
	char dir[] = "/tmp/zp_test_gds_XXXXXX", cmd[512], file[256];
	zp_model m;
	zp_err e;
	char path[64];
	int saved;
	ZP_ASSERT(mkdtemp(dir));
	snprintf(cmd, sizeof cmd, "cp tests/models/odd/config.json tests/models/odd/model.safetensors %s/",
		 dir);
	ZP_ASSERT(system(cmd) == 0);
	if (load(&m, dir))
		return;
	snprintf(file, sizeof file, "%s/model.safetensors", dir);
	unlink(file);
	FILE *f = fopen(file, "wb");
	ZP_ASSERT(f && fwrite("short", 1, 5, f) == 5 && fclose(f) == 0);
	unsetenv("ZP_GDS");
	zp_backend *b = zp_backend_device_new(ZP_DEV_SIM, 0, 2, &m.cfg, 64, &e);
	ZP_ASSERT(b);
	capture_begin(&saved, path);
	const zp_model *d = zp_backend_cuda_model(b, &m, true, &e);
	char *log = capture_end(saved, path);
	CHECK(d, "mirror: %s", e.msg);
	if (d)
		mirror_matches(dir, d, &m);
	CHECK(log && strstr(log, "GDS read failed") && strstr(log, "short read") &&
		      strstr(log, "path=staged"), "the failed read is not said, or not staged:\n%s",
	      log ? log : "");
	free(log);
	b->ops->free(b);
	zp_model_free(&m);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	ZP_ASSERT(system(cmd) == 0);
}

int main(void)
{
	check_reads();
	check_module();
	check_mirrors();
	check_fallback();
	return check_exit("test_gds");
}

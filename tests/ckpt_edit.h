/* ckpt_edit.h -- what the bad-checkpoint tests share (test_checkpoint.c,
   test_checkpoint_fp8.c): a committed model copied to a temporary directory
   (ckpt_dir), a file of it written whole, a text edited, a safetensors file
   opened with its header parsed and saved back (header edited, data kept),
   and a load that must fail with an error naming what broke. Header only;
   include after check.h. */
#ifndef ZP_CKPT_EDIT_H
#define ZP_CKPT_EDIT_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

#include "device.h"
#include "model.h"

static char ckpt_dir[256]; /* the copy each case breaks; the test names it */

static inline void ckpt_copy(const char *name)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r tests/models/%s %s", ckpt_dir, name,
		 ckpt_dir);
	ZP_ASSERT(system(cmd) == 0);
}

static inline void ckpt_path(char *out, const char *file)
{
	snprintf(out, 512, "%s/%s", ckpt_dir, file);
}

static inline void ckpt_spit(const char *path, const void *b, size_t n)
{
	FILE *f = fopen(path, "wb");
	ZP_ASSERT(f && fwrite(b, 1, n, f) == n);
	fclose(f);
}

/* The first occurrence of from in the copy's file replaced by to. */
static inline void ckpt_edit_text(const char *file, const char *from, const char *to)
{
	char p[512];
	size_t len = 0;
	ckpt_path(p, file);
	char *b = check_slurp(p, &len), *at = strstr(b, from);
	ZP_ASSERT(at);
	size_t nf = strlen(from), nt = strlen(to);
	char *o = malloc(len - nf + nt + 1);
	memcpy(o, b, (size_t)(at - b));
	memcpy(o + (at - b), to, nt);
	memcpy(o + (at - b) + nt, at + nf, len - (size_t)(at - b) - nf);
	ckpt_spit(p, o, len - nf + nt);
	free(o);
	free(b);
}

/* One safetensors file of the copy, read whole: its bytes, and its header
   parsed (h) for a case to edit. */
struct ckpt_st {
	char path[512];
	char *b;       /* the file's bytes */
	size_t len;
	uint64_t hlen; /* the header's length in the file */
	cJSON *h;
};

static inline void ckpt_st_open(struct ckpt_st *s, const char *file)
{
	ckpt_path(s->path, file);
	s->b = check_slurp(s->path, &s->len);
	ZP_ASSERT(s->b && s->len >= 8);
	memcpy(&s->hlen, s->b, 8);
	s->h = cJSON_ParseWithLength(s->b + 8, s->hlen);
	ZP_ASSERT(s->h);
}

/* The byte offset in b of tensor name's data. */
static inline size_t ckpt_st_data(const struct ckpt_st *s, const char *name)
{
	cJSON *t = cJSON_GetObjectItem(s->h, name);
	ZP_ASSERT(t);
	return 8 + s->hlen + (size_t)cJSON_GetArrayItem(cJSON_GetObjectItem(t, "data_offsets"),
							0)->valuedouble;
}

/* Written back: the header from h when header, else the bytes as they are
   now; then freed. */
static inline void ckpt_st_save(struct ckpt_st *s, bool header)
{
	if (header) {
		char *txt = cJSON_PrintUnformatted(s->h);
		uint64_t nh = strlen(txt);
		FILE *f = fopen(s->path, "wb");
		ZP_ASSERT(f);
		fwrite(&nh, 8, 1, f);
		fwrite(txt, 1, nh, f);
		fwrite(s->b + 8 + s->hlen, 1, s->len - 8 - s->hlen, f);
		fclose(f);
		free(txt);
	} else {
		ckpt_spit(s->path, s->b, s->len);
	}
	cJSON_Delete(s->h);
	free(s->b);
}

/* The copy loaded at wt must fail, its error holding needle1 (and needle2). */
static inline void ckpt_expect_fail(enum zp_wtype wt, const char *what, const char *needle1,
			     const char *needle2)
{
	zp_model m;
	zp_err e = { "" };
	int rc = zp_model_load(&m, ckpt_dir, wt, zp_device_layout(ZP_DEV_CPU), 2, NULL, &e);
	CHECK(rc == -1, "%s: load succeeded", what);
	if (rc == 0) {
		zp_model_free(&m);
		return;
	}
	CHECK(strstr(e.msg, needle1) != NULL, "%s: error \"%s\" lacks \"%s\"", what, e.msg, needle1);
	if (needle2)
		CHECK(strstr(e.msg, needle2) != NULL, "%s: error \"%s\" lacks \"%s\"", what, e.msg,
		      needle2);
	printf("%-30s -> %s\n", what, e.msg);
}

#endif

/* safetensors.h -- read-only access to Hugging Face safetensors checkpoints by mmap.
   Owns the file mappings and the tensor directory (sorted by name). Every header
   offset, dtype and shape is checked at open; errors name the tensor and the file.
   Touched by the loading thread (and the threads it packs with); tensor data
   pointers stay valid until zp_st_free. A file that shrinks under its mapping
   (truncated or rewritten by another process) makes a read there raise SIGBUS:
   reads go through zp_st_guard / zp_st_copy, which turn that into an error. */
#ifndef ZP_SAFETENSORS_H
#define ZP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum zp_dtype {
	ZP_DT_F32, ZP_DT_F16, ZP_DT_BF16, ZP_DT_F64, ZP_DT_I64, ZP_DT_I32,
	ZP_DT_I16, ZP_DT_I8, ZP_DT_U8, ZP_DT_BOOL, ZP_DT_F8_E4M3, ZP_DT_F8_E5M2,
	ZP_DT_COUNT
};

#define ZP_ST_NDIM_MAX 8
#define ZP_ST_NAME_MAX 256
#define ZP_ST_HEADER_MAX (100u << 20) /* same bound as the reference reader */
#define ZP_ST_FILES_MAX 4096

typedef struct {
	char name[ZP_ST_NAME_MAX];
	enum zp_dtype dtype;
	int ndim;
	int64_t shape[ZP_ST_NDIM_MAX];
	uint64_t offset;	/* from the start of the data section */
	uint64_t nbytes;
	int file;		/* index into zp_st.files */
	const void *data;	/* into the mapping; set by zp_st_open_dir */
} zp_st_tensor;

typedef struct {
	char *path;
	void *map;
	size_t size;
} zp_st_file;

typedef struct {
	zp_st_file *files;
	int nfiles;
	zp_st_tensor *tensors; /* sorted by name */
	size_t ntensors;
} zp_st;

const char *zp_dtype_name(enum zp_dtype dt);
size_t zp_dtype_size(enum zp_dtype dt);

/* Parse one file's header (the bytes after the 8-byte length) against a data
   section of data_bytes. Appends to *tensors (realloc'd), tagging each with file.
   Returns 0, or -1 with e set. Pure: no I/O (the fuzz target calls it). */
int zp_st_parse_header(const char *json, size_t len, uint64_t data_bytes, int file,
		       zp_st_tensor **tensors, size_t *ntensors, zp_err *e);

/* Parse model.safetensors.index.json: calls fn(name, filename) per weight_map
   entry. Filenames must be plain names inside the directory. Pure. */
int zp_st_parse_index(const char *json, size_t len,
		      int (*fn)(void *ctx, const char *name, const char *file, zp_err *e),
		      void *ctx, zp_err *e);

/* Open model.safetensors, or the shards listed by model.safetensors.index.json,
   in dir. Returns 0, or -1 with e set (nothing left open). */
int zp_st_open_dir(zp_st *st, const char *dir, zp_err *e);
void zp_st_free(zp_st *st);

const zp_st_tensor *zp_st_find(const zp_st *st, const char *name);
/* Find name and check its shape (ndim entries); -1 with a message naming the
   tensor and file when missing or mis-shaped, or of a dtype we cannot compute. */
int zp_st_get(const zp_st *st, const char *name, int ndim, const int64_t *shape,
	      const zp_st_tensor **out, zp_err *e);
/* The same for a linear layer's weight, which may also be F8_E4M3 codes. */
int zp_st_get_linear(const zp_st *st, const char *name, int ndim, const int64_t *shape,
		     const zp_st_tensor **out, zp_err *e);
const char *zp_st_file_of(const zp_st *st, const zp_st_tensor *t);

/* Run fn(ctx) on the calling thread with a SIGBUS on one of st's mappings
   (the file shrank under it) turned into an error: fn's result, or -1 with e
   naming the file, the tensor at the faulting address and the file's size now.
   fn must only read the mapping: the fault leaves it by longjmp, so it may not
   hold a lock or an allocation then. Guards nest (the innermost catches);
   threads guard independently; a fault anywhere else keeps its default action. */
int zp_st_guard(const zp_st *st, int (*fn)(void *ctx), void *ctx, zp_err *e);
/* memcpy of n bytes from src (inside one of st's mappings), under a guard. */
int zp_st_copy(const zp_st *st, void *dst, const void *src, size_t n, zp_err *e);

/* Tests: with the environment variable ZP_FAULT_LOAD_TRUNCATE=NAME, a call for
   the tensor NAME truncates its file at the first page boundary inside the
   tensor (what another process truncating the checkpoint mid-load does: the
   tensor's reads past it fault); no-op
   for every other tensor and without the variable. */
void zp_st_fault_truncate(const zp_st *st, const zp_st_tensor *t);

/* Element i of a float tensor (f32, f16 or bf16) as f32. */
float zp_st_elem_f32(const zp_st_tensor *t, size_t i);

#endif

/* tokenizer.c -- see tokenizer.h. BPE runs on raw bytes: every vocabulary
   entry is stored as the bytes its byte-level characters stand for, so a piece
   never has to be mapped to those characters and back. Merges go lowest rank
   first, leftmost first on ties, through a heap, as tokenizers' BPE does (so a
   very long word costs n log n, not n^2). Encode and decode allocate
   nothing: every buffer of a state is sized at zp_tok_state_new from the
   longest text it takes.
   Unicode: the pre-tokenizer patterns are matched by hand and NFC is computed
   here, both on unicode_tables.h, because tokenizers' results depend on the
   Unicode versions of its own regex engine (16.0) and normalizer (9.0): a
   library with other tables (PCRE2, utf8proc) splits and composes some text
   differently. */
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "unicode_tables.h"

#define TOK_FILE_MAX (256u << 20)
#define CACHE_SLOTS (1u << 16)		/* piece cache entries per state */
#define CACHE_PIECE_MAX 48		/* longer pieces are not cached */
#define CACHE_IDS_MAX (CACHE_SLOTS * 4)	/* ids held by the cache before it is cleared */

/* The pre-tokenizer patterns we match (by hand, in piece_end_*): GPT-2's
   (ByteLevel with use_regex = true, or as a Split) and Qwen2's (Qwen2, Qwen3). */
static const char gpt2_pattern[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char qwen2_pattern[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
	"[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

enum pretok { PRETOK_GPT2, PRETOK_QWEN2 };

typedef struct {
	uint32_t off, len;	/* bytes in t->bytes */
} span;

typedef struct {		/* an added token, matched on the raw text */
	span s;
	int32_t id;
	bool special;		/* tokenizer.json's "special": skipped by skip_special_tokens */
} added;

struct zp_tok {
	int nvocab;		/* one past the largest id */
	int tok_cap;		/* entries allocated in tok */
	span *tok;		/* [nvocab] bytes each id decodes to (len 0: unused id) */
	char *bytes;		/* the arena behind every span */
	size_t bytes_len, bytes_cap;
	uint32_t *vmap;		/* [vmap_cap] bytes -> id+1 (0: empty), model vocabulary */
	uint32_t vmap_cap;
	uint64_t *pkey;		/* [pmap_cap] (left << 32 | right) + 1 (0: empty) */
	int32_t *prank, *pnew;	/* [pmap_cap] rank and merged id of that pair */
	uint32_t pmap_cap;
	int32_t byte_id[256];	/* the id of each single byte */
	added *add;		/* [nadd] */
	int nadd;
	uint8_t add_first[256];	/* 1: some added token starts with this byte */
	bool nfc, ignore_merges;
	enum pretok pretok;
};

typedef struct {
	int32_t rank, pos, id;
} merge;

typedef struct {
	int32_t id, prev, next, len; /* len 0: merged away */
} sym;

struct zp_tok_state {
	const zp_tok *t;
	size_t text_max;	/* bytes of text (and of its NFC form) one encode takes */
	uint32_t *nfc;		/* [nfc_cap]: a segment's code points, decomposed and
				   composed, then its NFC UTF-8 written over them */
	size_t nfc_cap;
	sym *sym;		/* [text_max]: one per byte of a piece */
	merge *heap;		/* [3 * text_max]: a piece's pairs, then two per merge */
	/* piece cache: slot -> (hash, key bytes, ids) */
	uint64_t *c_hash;	/* [CACHE_SLOTS] 0: empty */
	uint32_t *c_key, *c_klen, *c_ids, *c_n;
	char *c_keys;		/* [CACHE_SLOTS * CACHE_PIECE_MAX] */
	int32_t *c_idbuf;	/* [CACHE_IDS_MAX] */
	uint32_t c_used, c_idused;
};

static uint64_t hash_bytes(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static uint32_t put_bytes(zp_tok *t, const char *p, size_t n)
{
	if (t->bytes_len + n > t->bytes_cap) {
		t->bytes_cap = (t->bytes_len + n) * 2 + 4096;
		t->bytes = realloc(t->bytes, t->bytes_cap);
		ZP_ASSERT(t->bytes);
	}
	memcpy(t->bytes + t->bytes_len, p, n);
	t->bytes_len += n;
	return (uint32_t)(t->bytes_len - n);
}

/* The code point at p[*i] of valid UTF-8 (the caller checked); *i moves past it. */
static inline uint32_t utf8_next(const uint8_t *p, size_t *i)
{
	uint32_t c = p[*i];
	if (c < 0x80) {
		*i += 1;
		return c;
	}
	if (c < 0xe0) {
		c = (c & 0x1f) << 6 | (p[*i + 1] & 0x3fu);
		*i += 2;
		return c;
	}
	if (c < 0xf0) {
		c = (c & 0x0f) << 12 | (p[*i + 1] & 0x3fu) << 6 | (p[*i + 2] & 0x3fu);
		*i += 3;
		return c;
	}
	c = (c & 0x07) << 18 | (p[*i + 1] & 0x3fu) << 12 | (p[*i + 2] & 0x3fu) << 6 | (p[*i + 3] & 0x3fu);
	*i += 4;
	return c;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
   other 68 bytes for U+0100 onwards. cp_byte maps a code point back (-1: none). */
static void byte_level_table(int cp_byte[512])
{
	int n = 0;
	for (int i = 0; i < 512; i++)
		cp_byte[i] = -1;
	for (int b = 0; b < 256; b++) {
		bool self = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
		cp_byte[self ? b : 256 + n++] = b;
	}
}

/* A byte-level string to its raw bytes; -1 when a character is not in the table. */
static int unbyte(const char *s, char *out, size_t *n, const int cp_byte[512])
{
	size_t len = strlen(s), i = 0; /* s came through zp_json_parse: valid UTF-8 */
	*n = 0;
	while (i < len) {
		uint32_t cp = utf8_next((const uint8_t *)s, &i);
		if (cp >= 512 || cp_byte[cp] < 0)
			return -1;
		out[(*n)++] = (char)cp_byte[cp];
	}
	return 0;
}

static uint32_t vmap_slot(const zp_tok *t, const char *p, size_t n, bool *found)
{
	uint32_t mask = t->vmap_cap - 1, i = (uint32_t)hash_bytes(p, n) & mask;
	for (;; i = (i + 1) & mask) {
		uint32_t v = t->vmap[i];
		if (!v) {
			*found = false;
			return i;
		}
		span s = t->tok[v - 1];
		if (s.len == n && memcmp(t->bytes + s.off, p, n) == 0) {
			*found = true;
			return i;
		}
	}
}

static int vocab_get(const zp_tok *t, const char *p, size_t n)
{
	bool found;
	uint32_t i = vmap_slot(t, p, n, &found);
	return found ? (int)t->vmap[i] - 1 : -1;
}

static uint32_t pmap_slot(const zp_tok *t, int32_t a, int32_t b)
{
	uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
	uint32_t mask = t->pmap_cap - 1, i = (uint32_t)hash_u64(key) & mask;
	while (t->pkey[i] && t->pkey[i] != key)
		i = (i + 1) & mask;
	return i;
}

static const char *str_of(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool is_true(const cJSON *o, const char *k)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static bool empty_or_null(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return !v || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0]);
}

/* The pre-tokenizer: Split(regex, Isolated) then ByteLevel(use_regex=false), or
   ByteLevel(use_regex=true) alone; the regex one of the two we match. */
static int load_pretok(zp_tok *t, const cJSON *pt, zp_err *e)
{
	const char *type = str_of(pt, "type");
	const cJSON *seq = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
	if (type && strcmp(type, "ByteLevel") == 0) {
		if (!is_true(pt, "use_regex") || is_true(pt, "add_prefix_space"))
			return zp_errf(e, "tokenizer: ByteLevel pre-tokenizer needs use_regex and "
				       "no add_prefix_space");
		t->pretok = PRETOK_GPT2;
		return 0;
	}
	if (!type || strcmp(type, "Sequence") || cJSON_GetArraySize(seq) != 2)
		return zp_errf(e, "tokenizer: pre_tokenizer must be Sequence[Split, ByteLevel] "
			       "or ByteLevel");
	const cJSON *sp = cJSON_GetArrayItem(seq, 0), *bl = cJSON_GetArrayItem(seq, 1);
	const cJSON *pat = cJSON_GetObjectItemCaseSensitive(sp, "pattern");
	const char *beh = str_of(sp, "behavior"), *re = str_of(pat, "Regex");
	if (!str_of(sp, "type") || strcmp(str_of(sp, "type"), "Split") || !re || !beh ||
	    strcmp(beh, "Isolated") || is_true(sp, "invert"))
		return zp_errf(e, "tokenizer: only Split(Regex, Isolated, invert=false) is supported");
	if (!str_of(bl, "type") || strcmp(str_of(bl, "type"), "ByteLevel") ||
	    is_true(bl, "use_regex") || is_true(bl, "add_prefix_space"))
		return zp_errf(e, "tokenizer: second pre-tokenizer must be ByteLevel(use_regex=false, "
			       "add_prefix_space=false)");
	if (strcmp(re, qwen2_pattern) == 0)
		t->pretok = PRETOK_QWEN2;
	else if (strcmp(re, gpt2_pattern) == 0)
		t->pretok = PRETOK_GPT2;
	else
		return zp_errf(e, "tokenizer: the Split regex is neither the Qwen2 nor the GPT-2 "
			       "pattern, the two implemented (%.80s)", re);
	return 0;
}

static int load_head(zp_tok *t, const cJSON *root, zp_err *e)
{
	const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
	const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
	const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");

	if (norm && !cJSON_IsNull(norm)) {
		if (!str_of(norm, "type") || strcmp(str_of(norm, "type"), "NFC"))
			return zp_errf(e, "tokenizer: normalizer must be NFC or null");
		t->nfc = true;
	}
	if (pp && !cJSON_IsNull(pp) && (!str_of(pp, "type") || strcmp(str_of(pp, "type"), "ByteLevel")))
		return zp_errf(e, "tokenizer: post_processor must be ByteLevel or null "
			       "(templates that add tokens are not supported)");
	if (!str_of(dec, "type") || strcmp(str_of(dec, "type"), "ByteLevel"))
		return zp_errf(e, "tokenizer: decoder must be ByteLevel");
	if (load_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), e))
		return -1;
	if (!str_of(model, "type") || strcmp(str_of(model, "type"), "BPE"))
		return zp_errf(e, "tokenizer: model.type must be BPE");
	if (!empty_or_null(model, "dropout") || is_true(model, "byte_fallback") ||
	    !empty_or_null(model, "continuing_subword_prefix") ||
	    !empty_or_null(model, "end_of_word_suffix"))
		return zp_errf(e, "tokenizer: BPE dropout, byte_fallback, continuing_subword_prefix "
			       "and end_of_word_suffix are not supported");
	t->ignore_merges = is_true(model, "ignore_merges");
	return 0;
}

static void grow_ids(zp_tok *t, int id)
{
	if (id < t->nvocab)
		return;
	if (id >= t->tok_cap) { /* geometric: ids mostly arrive in order */
		int cap = ZP_MAX(id + 1, t->tok_cap * 2);
		t->tok = realloc(t->tok, (size_t)cap * sizeof *t->tok);
		ZP_ASSERT(t->tok);
		t->tok_cap = cap;
	}
	memset(t->tok + t->nvocab, 0, (size_t)(id + 1 - t->nvocab) * sizeof *t->tok);
	t->nvocab = id + 1;
}

static int load_vocab(zp_tok *t, const cJSON *vocab, const int cp_byte[512], zp_err *e)
{
	const cJSON *it;
	char buf[1024];
	int n = cJSON_GetArraySize(vocab);

	if (!cJSON_IsObject(vocab) || n == 0)
		return zp_errf(e, "tokenizer: model.vocab must be a non-empty object");
	t->vmap_cap = 1;
	while (t->vmap_cap < (uint32_t)n * 2)
		t->vmap_cap *= 2;
	t->vmap = zp_xcalloc(t->vmap_cap, sizeof *t->vmap);
	for (int b = 0; b < 256; b++)
		t->byte_id[b] = -1;
	cJSON_ArrayForEach(it, vocab) {
		size_t len;
		bool found;
		double d = it->valuedouble;
		if (!cJSON_IsNumber(it) || d != (int)d || d < 0 || d >= (1 << 24))
			return zp_errf(e, "tokenizer: vocab id of %.40s is not in [0, 2^24)", it->string);
		if (strlen(it->string) >= sizeof buf || unbyte(it->string, buf, &len, cp_byte) ||
		    len == 0)
			return zp_errf(e, "tokenizer: vocab entry %.40s is not a byte-level string",
				       it->string);
		int id = (int)d;
		grow_ids(t, id);
		if (t->tok[id].len)
			return zp_errf(e, "tokenizer: vocab id %d appears twice", id);
		uint32_t slot = vmap_slot(t, buf, len, &found);
		if (found)
			return zp_errf(e, "tokenizer: vocab entry %.40s appears twice", it->string);
		t->tok[id] = (span){ put_bytes(t, buf, len), (uint32_t)len };
		t->vmap[slot] = (uint32_t)id + 1;
		if (len == 1)
			t->byte_id[(uint8_t)buf[0]] = id;
	}
	for (int b = 0; b < 256; b++)
		if (t->byte_id[b] < 0)
			return zp_errf(e, "tokenizer: vocab lacks the byte 0x%02x (byte-level BPE "
				       "needs all 256)", b);
	return 0;
}

/* merges: ["a b", ...] (older files) or [["a", "b"], ...]. */
static int load_merges(zp_tok *t, const cJSON *merges, const int cp_byte[512], zp_err *e)
{
	const cJSON *it;
	int n = cJSON_GetArraySize(merges), rank = 0;
	char a[1024], b[1024], ab[2048];

	if (!cJSON_IsArray(merges))
		return zp_errf(e, "tokenizer: model.merges must be an array");
	t->pmap_cap = 1;
	while (t->pmap_cap < (uint32_t)n * 2 + 2)
		t->pmap_cap *= 2;
	t->pkey = zp_xcalloc(t->pmap_cap, sizeof *t->pkey);
	t->prank = zp_xcalloc(t->pmap_cap, sizeof *t->prank);
	t->pnew = zp_xcalloc(t->pmap_cap, sizeof *t->pnew);
	cJSON_ArrayForEach(it, merges) {
		const char *l = NULL, *r = NULL;
		char pair[2048];
		size_t la, lb;
		if (cJSON_IsString(it) && strlen(it->valuestring) < sizeof pair) {
			strcpy(pair, it->valuestring);
			char *sp = strchr(pair, ' ');
			if (sp) {
				*sp = 0;
				l = pair;
				r = sp + 1;
			}
		} else if (cJSON_GetArraySize(it) == 2) {
			l = cJSON_GetArrayItem(it, 0)->valuestring;
			r = cJSON_GetArrayItem(it, 1)->valuestring;
		}
		if (!l || !r || strlen(l) >= sizeof a || strlen(r) >= sizeof b ||
		    unbyte(l, a, &la, cp_byte) || unbyte(r, b, &lb, cp_byte))
			return zp_errf(e, "tokenizer: merge %d is not a pair of byte-level strings", rank);
		memcpy(ab, a, la);
		memcpy(ab + la, b, lb);
		int ia = vocab_get(t, a, la), ib = vocab_get(t, b, lb), iab = vocab_get(t, ab, la + lb);
		if (ia < 0 || ib < 0 || iab < 0)
			return zp_errf(e, "tokenizer: merge %d (%.40s %.40s) uses a token not in the "
				       "vocab", rank, l, r);
		uint32_t s = pmap_slot(t, ia, ib);
		if (!t->pkey[s]) { /* a repeated pair keeps its first (lowest) rank */
			t->pkey[s] = ((uint64_t)(uint32_t)ia << 32 | (uint32_t)ib) + 1;
			t->prank[s] = rank;
			t->pnew[s] = iab;
		}
		rank++;
	}
	return 0;
}

static int load_added(zp_tok *t, const cJSON *arr, const int cp_byte[512], zp_err *e)
{
	const cJSON *it;
	char buf[1024];
	t->add = zp_xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof *t->add);
	cJSON_ArrayForEach(it, arr) {
		const char *c = str_of(it, "content");
		const cJSON *idv = cJSON_GetObjectItemCaseSensitive(it, "id");
		size_t len;
		if (!c || !c[0] || !cJSON_IsNumber(idv) || idv->valueint < 0 ||
		    idv->valueint >= (1 << 24))
			return zp_errf(e, "tokenizer: an added token lacks content or id");
		if (is_true(it, "lstrip") || is_true(it, "rstrip") || is_true(it, "single_word") ||
		    is_true(it, "normalized"))
			return zp_errf(e, "tokenizer: added token %.40s uses lstrip, rstrip, "
				       "single_word or normalized, which are not supported", c);
		int id = idv->valueint;
		grow_ids(t, id);
		len = strlen(c);
		/* Decoded as tokenizers' ByteLevel decoder does: through the byte table
		   when every character is in it, else as its own UTF-8. */
		if (len >= sizeof buf || unbyte(c, buf, &len, cp_byte)) {
			len = strlen(c);
			memcpy(buf, c, ZP_MIN(len, sizeof buf));
		}
		t->tok[id] = (span){ put_bytes(t, buf, len), (uint32_t)len };
		t->add[t->nadd].s = (span){ put_bytes(t, c, strlen(c)), (uint32_t)strlen(c) };
		t->add[t->nadd].special = is_true(it, "special");
		t->add[t->nadd++].id = id;
		t->add_first[(uint8_t)c[0]] = 1;
	}
	return 0;
}

static cJSON *read_json(const char *path, zp_err *e)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf;
	cJSON *root = NULL;
	if (!f) {
		zp_errf(e, "tokenizer: %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) || st.st_size <= 0 || (size_t)st.st_size > TOK_FILE_MAX) {
		zp_errf(e, "tokenizer: %s: empty, unreadable or over %u MiB", path, TOK_FILE_MAX >> 20);
		fclose(f);
		return NULL;
	}
	buf = zp_xmalloc((size_t)st.st_size);
	if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
		zp_errf(e, "tokenizer: %s: short read", path);
	else if (!(root = zp_json_parse(buf, (size_t)st.st_size)))
		zp_errf(e, "tokenizer: %s is not valid JSON", path);
	free(buf);
	fclose(f);
	return root;
}

zp_tok *zp_tok_load(const char *path, zp_err *e)
{
	int cp_byte[512];
	zp_tok *t = zp_xcalloc(1, sizeof *t);
	cJSON *root = read_json(path, e), *model;

	byte_level_table(cp_byte);
	if (!root)
		goto bad;
	model = cJSON_GetObjectItemCaseSensitive(root, "model");
	if (load_head(t, root, e) ||
	    load_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), cp_byte, e) ||
	    load_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"), cp_byte, e) ||
	    load_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), cp_byte, e))
		goto bad;
	cJSON_Delete(root);
	return t;
bad:
	cJSON_Delete(root);
	zp_tok_free(t);
	return NULL;
}

void zp_tok_free(zp_tok *t)
{
	if (!t)
		return;
	free(t->tok);
	free(t->bytes);
	free(t->vmap);
	free(t->pkey);
	free(t->prank);
	free(t->pnew);
	free(t->add);
	free(t);
}

int zp_tok_vocab_size(const zp_tok *t)
{
	return t->nvocab;
}

int zp_tok_find(const zp_tok *t, const char *s, size_t len)
{
	for (int i = 0; i < t->nadd; i++)
		if (t->add[i].s.len == len && memcmp(t->bytes + t->add[i].s.off, s, len) == 0)
			return t->add[i].id;
	return len ? vocab_get(t, s, len) : -1;
}

zp_tok_state *zp_tok_state_new_sized(const zp_tok *t, size_t text_max)
{
	zp_tok_state *s = zp_xcalloc(1, sizeof *s);
	ZP_ASSERT(text_max >= 1 && text_max <= ZP_TOK_TEXT_LIMIT);
	s->t = t;
	s->text_max = text_max;
	/* a full canonical decomposition is at most 2 code points per byte
	   (tools/gen_unicode.py checks; U+01D5 is 3 per 2) */
	s->nfc_cap = 2 * text_max;
	/* calloc'd: pages a short text never reaches cost no memory */
	s->nfc = zp_xcalloc(s->nfc_cap, sizeof *s->nfc);
	s->sym = zp_xcalloc(text_max, sizeof *s->sym);
	s->heap = zp_xcalloc(3 * text_max, sizeof *s->heap);
	s->c_hash = zp_xcalloc(CACHE_SLOTS, sizeof *s->c_hash);
	s->c_key = zp_xcalloc(CACHE_SLOTS, sizeof *s->c_key);
	s->c_klen = zp_xcalloc(CACHE_SLOTS, sizeof *s->c_klen);
	s->c_ids = zp_xcalloc(CACHE_SLOTS, sizeof *s->c_ids);
	s->c_n = zp_xcalloc(CACHE_SLOTS, sizeof *s->c_n);
	s->c_keys = zp_xmalloc((size_t)CACHE_SLOTS * CACHE_PIECE_MAX);
	s->c_idbuf = zp_xmalloc((size_t)CACHE_IDS_MAX * sizeof *s->c_idbuf);
	return s;
}

zp_tok_state *zp_tok_state_new(const zp_tok *t)
{
	return zp_tok_state_new_sized(t, ZP_TOK_TEXT_DEFAULT);
}

size_t zp_tok_state_text_max(const zp_tok_state *s)
{
	return s->text_max;
}

void zp_tok_state_free(zp_tok_state *s)
{
	if (!s)
		return;
	free(s->nfc);
	free(s->sym);
	free(s->heap);
	free(s->c_hash);
	free(s->c_key);
	free(s->c_klen);
	free(s->c_ids);
	free(s->c_n);
	free(s->c_keys);
	free(s->c_idbuf);
	free(s);
}

/* ---- BPE of one piece ---- */

static bool merge_less(merge a, merge b)
{
	return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(merge *h, int *n, merge m)
{
	int i = (*n)++;
	while (i > 0 && merge_less(m, h[(i - 1) / 2])) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = m;
}

static merge heap_pop(merge *h, int *n)
{
	merge top = h[0], last = h[--(*n)];
	int i = 0;
	for (;;) {
		int c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && merge_less(h[c + 1], h[c]))
			c++;
		if (!merge_less(h[c], last))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = last;
	return top;
}

static void push_pair(const zp_tok_state *s, int *nh, int pos)
{
	const zp_tok *t = s->t;
	const sym *sy = s->sym;
	int nx = sy[pos].next;
	if (nx < 0)
		return;
	uint32_t slot = pmap_slot(t, sy[pos].id, sy[nx].id);
	ZP_ASSERT((size_t)*nh < 3 * s->text_max);
	if (t->pkey[slot])
		heap_push(s->heap, nh, (merge){ t->prank[slot], pos, t->pnew[slot] });
}

/* ids of one piece into out (at most max written); returns how many. */
static int bpe(zp_tok_state *s, const char *p, int n, int32_t *out, int max)
{
	const zp_tok *t = s->t;
	int nh = 0, k = 0;
	if (t->ignore_merges) {
		int id = vocab_get(t, p, (size_t)n);
		if (id >= 0) {
			if (max > 0)
				out[0] = id;
			return 1;
		}
	}
	ZP_ASSERT(n >= 1 && (size_t)n <= s->text_max);
	sym *sy = s->sym;
	for (int i = 0; i < n; i++)
		sy[i] = (sym){ t->byte_id[(uint8_t)p[i]], i - 1, i + 1 < n ? i + 1 : -1, 1 };
	for (int i = 0; i + 1 < n; i++)
		push_pair(s, &nh, i);
	while (nh > 0) {
		merge m = heap_pop(s->heap, &nh);
		int nx = sy[m.pos].next;
		if (!sy[m.pos].len || nx < 0)
			continue;
		uint32_t slot = pmap_slot(t, sy[m.pos].id, sy[nx].id);
		if (!t->pkey[slot] || t->prank[slot] != m.rank || t->pnew[slot] != m.id)
			continue; /* stale: a neighbour merged since this was queued */
		sy[m.pos].id = m.id;
		sy[m.pos].len += sy[nx].len;
		sy[nx].len = 0;
		sy[m.pos].next = sy[nx].next;
		if (sy[nx].next >= 0)
			sy[sy[nx].next].prev = m.pos;
		if (sy[m.pos].prev >= 0)
			push_pair(s, &nh, sy[m.pos].prev);
		push_pair(s, &nh, m.pos);
	}
	for (int i = 0; i >= 0; i = sy[i].next) {
		if (k < max)
			out[k] = sy[i].id;
		k++;
	}
	return k;
}

/* Short pieces repeat (words, spaces, punctuation): cache their ids. */
static int bpe_cached(zp_tok_state *s, const char *p, int n, int32_t *out, int max)
{
	if (n == 1) {
		if (max > 0)
			out[0] = s->t->byte_id[(uint8_t)*p];
		return 1;
	}
	if (n > CACHE_PIECE_MAX)
		return bpe(s, p, n, out, max);
	uint64_t h = hash_bytes(p, (size_t)n) | 1;
	uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
	for (;; i = (i + 1) & (CACHE_SLOTS - 1)) {
		if (!s->c_hash[i])
			break;
		if (s->c_hash[i] == h && s->c_klen[i] == (uint32_t)n &&
		    memcmp(s->c_keys + s->c_key[i], p, (size_t)n) == 0) {
			int k = (int)s->c_n[i];
			memcpy(out, s->c_idbuf + s->c_ids[i], (size_t)ZP_MIN(k, max) * sizeof *out);
			return k;
		}
	}
	int k = bpe(s, p, n, out, max);
	if (k > max)
		return k;
	if (s->c_used * 2 >= CACHE_SLOTS || s->c_idused + (uint32_t)k > CACHE_IDS_MAX) {
		memset(s->c_hash, 0, CACHE_SLOTS * sizeof *s->c_hash);
		s->c_used = s->c_idused = 0;
		i = (uint32_t)h & (CACHE_SLOTS - 1);
	}
	s->c_hash[i] = h;
	s->c_key[i] = s->c_used * CACHE_PIECE_MAX;
	memcpy(s->c_keys + s->c_key[i], p, (size_t)n);
	s->c_klen[i] = (uint32_t)n;
	s->c_ids[i] = s->c_idused;
	s->c_n[i] = (uint32_t)k;
	memcpy(s->c_idbuf + s->c_idused, out, (size_t)k * sizeof *out);
	s->c_idused += (uint32_t)k;
	s->c_used++;
	return k;
}

/* ---- pre-tokenization ----
   The patterns' alternatives always match somewhere at every position (every
   code point is a letter, a number, white space or other), so the matches
   tile the text: piece_end gives where the match starting at i ends, taking
   the alternatives in order, with the backtracking the regex engine would do
   worked out once (see ws_end). */

typedef struct {
	uint32_t cp;
	unsigned f;	/* ZP_UC_* */
	size_t len;	/* bytes */
} uch;

static inline uch uch_at(const uint8_t *p, size_t i)
{
	size_t j = i;
	uint32_t cp = utf8_next(p, &j);
	return (uch){ cp, zp_uc_prop(cp), j - i };
}

#define UC_LNW (ZP_UC_L | ZP_UC_N | ZP_UC_WS)

/* The end of the run from i of code points whose flags & mask == want. */
static size_t run_of(const uint8_t *p, size_t n, size_t i, unsigned want, unsigned mask)
{
	while (i < n) {
		uch c = uch_at(p, i);
		if ((c.f & mask) != want)
			break;
		i += c.len;
	}
	return i;
}

static uint8_t ascii_lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}

/* Bytes of 's 't 're 've 'm 'll 'd at p[i] (p[i] is '), 0 if none. fold: as
   Oniguruma's (?i:...), which also lets U+017F LONG S stand for s. */
static size_t contraction(const uint8_t *p, size_t n, size_t i, bool fold)
{
	if (i + 1 >= n)
		return 0;
	uint8_t a = fold ? ascii_lower(p[i + 1]) : p[i + 1];
	uint8_t b = i + 2 < n ? (fold ? ascii_lower(p[i + 2]) : p[i + 2]) : 0;
	if (a == 's' || a == 't' || a == 'm' || a == 'd')
		return 2;
	if (((a == 'r' || a == 'v') && b == 'e') || (a == 'l' && b == 'l'))
		return 3;
	if (fold && p[i + 1] == 0xc5 && b == 0xbf)
		return 3;
	return 0;
}

/* White space from i (p[i] is white space): \s+(?!\S) then \s+, and before
   them, when crlf, \s*[\r\n]+. The greedy \s* backs off to the last \r or \n
   of the run; \s+(?!\S) backs off by one code point unless the run ends the
   text; \s+ takes the run (one code point then). */
static size_t ws_end(const uint8_t *p, size_t n, size_t i, bool crlf)
{
	size_t e = i, last = i, after_crlf = 0, count = 0;
	while (e < n) {
		uch c = uch_at(p, e);
		if (!(c.f & ZP_UC_WS))
			break;
		last = e;
		e += c.len;
		count++;
		if (c.cp == '\r' || c.cp == '\n')
			after_crlf = e;
	}
	ZP_ASSERT(count >= 1);
	if (crlf && after_crlf)
		return after_crlf;
	return e == n || count == 1 ? e : last;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t piece_end_gpt2(const uint8_t *p, size_t n, size_t i)
{
	size_t k, o = i;
	if (p[i] == '\'' && (k = contraction(p, n, i, false)))
		return i + k;
	uch c = uch_at(p, i);
	if (c.cp == ' ' && i + 1 < n) {
		uch d = uch_at(p, i + 1);
		if (!(d.f & ZP_UC_WS)) {
			o = i + 1;
			c = d;
		}
	}
	if (c.f & ZP_UC_L)
		return run_of(p, n, o, ZP_UC_L, ZP_UC_L);
	if (c.f & ZP_UC_N)
		return run_of(p, n, o, ZP_UC_N, ZP_UC_N);
	if (!(c.f & ZP_UC_WS))
		return run_of(p, n, o, 0, UC_LNW);
	return ws_end(p, n, i, false);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
   \s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t piece_end_qwen2(const uint8_t *p, size_t n, size_t i)
{
	size_t k;
	if (p[i] == '\'' && (k = contraction(p, n, i, true)))
		return i + k;
	uch c = uch_at(p, i);
	size_t j = i + c.len, o = i;
	if (c.f & ZP_UC_L)
		return run_of(p, n, j, ZP_UC_L, ZP_UC_L);
	if (!(c.f & (ZP_UC_L | ZP_UC_N)) && c.cp != '\r' && c.cp != '\n' && j < n &&
	    (uch_at(p, j).f & ZP_UC_L))
		return run_of(p, n, j, ZP_UC_L, ZP_UC_L);
	if (c.f & ZP_UC_N)
		return j;
	if (c.cp == ' ' && j < n && !(uch_at(p, j).f & UC_LNW))
		o = j;
	if (o > i || !(c.f & ZP_UC_WS)) {
		o = run_of(p, n, o, 0, UC_LNW);
		while (o < n && (p[o] == '\r' || p[o] == '\n'))
			o++;
		return o;
	}
	return ws_end(p, n, i, true);
}

static int encode_plain(zp_tok_state *s, const char *text, size_t n, int32_t *ids, int max, int k)
{
	const uint8_t *p = (const uint8_t *)text;
	bool qwen2 = s->t->pretok == PRETOK_QWEN2;
	for (size_t off = 0; off < n;) {
		size_t end = qwen2 ? piece_end_qwen2(p, n, off) : piece_end_gpt2(p, n, off);
		ZP_ASSERT(end > off && end <= n);
		k += bpe_cached(s, text + off, (int)(end - off), ids + k, ZP_MAX(max - k, 0));
		off = end;
	}
	return k;
}

/* ---- NFC (UAX #15) on the Unicode 9.0 data of unicode_tables.h ---- */

#define HANGUL_S 0xac00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11a7u
#define HANGUL_NV 21u
#define HANGUL_NT 28u
#define HANGUL_NS (19u * HANGUL_NV * HANGUL_NT)

/* The primary composite of the pair (a, b), or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b)
{
	if (a - HANGUL_L < 19 && b - HANGUL_V < HANGUL_NV)
		return HANGUL_S + ((a - HANGUL_L) * HANGUL_NV + (b - HANGUL_V)) * HANGUL_NT;
	if (a - HANGUL_S < HANGUL_NS && (a - HANGUL_S) % HANGUL_NT == 0 && b - HANGUL_T - 1 < HANGUL_NT - 1)
		return a + (b - HANGUL_T);
	uint64_t key = (uint64_t)a << 21 | b;
	int lo = 0, hi = ZP_UC_NCOMP;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (zp_uc_comp_key[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < ZP_UC_NCOMP && zp_uc_comp_key[lo] == key ? zp_uc_comp_cp[lo] : 0;
}

/* The canonical decomposition of p[0..n) into d, in canonical order: how many
   code points. */
static size_t nfc_decompose(uint32_t *d, size_t cap, const uint8_t *p, size_t n)
{
	size_t m = 0;
	for (size_t i = 0; i < n;) {
		uint32_t c = utf8_next(p, &i), one[3];
		const uint32_t *seq = one;
		int len = 1;
		one[0] = c;
		if (c - HANGUL_S < HANGUL_NS) {
			uint32_t si = c - HANGUL_S;
			one[0] = HANGUL_L + si / (HANGUL_NV * HANGUL_NT);
			one[1] = HANGUL_V + si % (HANGUL_NV * HANGUL_NT) / HANGUL_NT;
			one[2] = HANGUL_T + si % HANGUL_NT;
			len = one[2] == HANGUL_T ? 2 : 3;
		} else if (c >= 0x80) { /* a composite that is quick-check Yes decomposes too:
					  a mark after it may sort before its own */
			int k = zp_uc_decomp(c, &seq);
			len = k ? k : 1;
			if (!k)
				seq = one;
		}
		ZP_ASSERT(m + (size_t)len <= cap);
		for (int q = 0; q < len; q++) { /* stable insertion by combining class */
			uint32_t x = seq[q];
			unsigned cc = zp_uc_ccc(x);
			size_t j = m++;
			while (cc && j > 0 && zp_uc_ccc(d[j - 1]) > cc) {
				d[j] = d[j - 1];
				j--;
			}
			d[j] = x;
		}
	}
	return m;
}

/* Canonical composition of d[0..m) in place: how many code points remain. A
   mark composes with the last starter unless something between blocks it
   (class 0, or a class not below its own). */
static size_t nfc_compose(uint32_t *d, size_t m)
{
	size_t o = 0, st = SIZE_MAX;
	unsigned last = 0;
	for (size_t i = 0; i < m; i++) {
		uint32_t c = d[i], x;
		unsigned cc = zp_uc_ccc(c);
		if (st != SIZE_MAX && (o == st + 1 || (last && last < cc)) && (x = compose_pair(d[st], c))) {
			d[st] = x;
			continue;
		}
		if (!cc)
			st = o;
		last = cc;
		d[o++] = c;
	}
	return o;
}

/* d[0..m) as UTF-8 over d itself (code point i is read before bytes up to
   4(i+1) are written): its length in bytes. */
static size_t utf8_write_over(uint32_t *d, size_t m)
{
	uint8_t *o = (uint8_t *)d;
	size_t w = 0;
	for (size_t i = 0; i < m; i++) {
		uint32_t c = d[i];
		if (c < 0x80) {
			o[w++] = (uint8_t)c;
		} else if (c < 0x800) {
			o[w++] = (uint8_t)(0xc0 | c >> 6);
			o[w++] = (uint8_t)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			o[w++] = (uint8_t)(0xe0 | c >> 12);
			o[w++] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
			o[w++] = (uint8_t)(0x80 | (c & 0x3f));
		} else {
			o[w++] = (uint8_t)(0xf0 | c >> 18);
			o[w++] = (uint8_t)(0x80 | (c >> 12 & 0x3f));
			o[w++] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
			o[w++] = (uint8_t)(0x80 | (c & 0x3f));
		}
	}
	return w;
}

/* Whether p[0..n) may change under NFC: some code point is not quick-check
   Yes with class 0 (none in ASCII). */
static bool nfc_needed(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if (zp_uc_prop(utf8_next(p, &i)) & ZP_UC_NFC)
			return true;
	}
	return false;
}

/* The segment's ids after ids[0..k): the new count, or -1 when its NFC form
   does not fit the state's text_max. */
static int encode_segment(zp_tok_state *s, const char *p, size_t n, int32_t *ids, int max, int k)
{
	if (!s->t->nfc || !nfc_needed((const uint8_t *)p, n))
		return encode_plain(s, p, n, ids, max, k);
	size_t m = nfc_decompose(s->nfc, s->nfc_cap, (const uint8_t *)p, n);
	m = utf8_write_over(s->nfc, nfc_compose(s->nfc, m));
	if (m > s->text_max)
		return -1;
	return encode_plain(s, (const char *)s->nfc, m, ids, max, k);
}

/* The leftmost-longest added token starting at p[i], or -1. */
static int added_at(const zp_tok *t, const char *p, size_t n, size_t i, size_t *len)
{
	int best = -1;
	*len = 0;
	for (int a = 0; a < t->nadd; a++) {
		span sp = t->add[a].s;
		if (sp.len > *len && sp.len <= n - i && memcmp(p + i, t->bytes + sp.off, sp.len) == 0) {
			best = a;
			*len = sp.len;
		}
	}
	return best;
}

int zp_tok_encode(zp_tok_state *s, const char *text, size_t len, int32_t *ids, int max)
{
	const zp_tok *t = s->t;
	size_t seg = 0;
	int k = 0;
	if (len > s->text_max)
		return -1;
	for (size_t i = 0; i < len && k >= 0; i++) {
		size_t alen;
		int a;
		if (!t->add_first[(uint8_t)text[i]] || (a = added_at(t, text, len, i, &alen)) < 0)
			continue;
		if (i > seg && (k = encode_segment(s, text + seg, i - seg, ids, max, k)) < 0)
			break;
		if (k < max)
			ids[k] = t->add[a].id;
		k++;
		seg = i + alen;
		i = seg - 1;
	}
	if (len > seg && k >= 0)
		k = encode_segment(s, text + seg, len - seg, ids, max, k);
	return k;
}

/* ---- decode ---- */

/* Length of the valid UTF-8 sequence at p[0..n); 0 when it is invalid (the
   maximal invalid prefix to replace is then *bad bytes), as Rust's
   from_utf8_lossy; -1 when p ends inside a sequence that is valid so far and
   more bytes may follow (!final). */
static int utf8_seq(const uint8_t *p, size_t n, bool final, size_t *bad)
{
	uint8_t c = p[0];
	int need;
	uint8_t lo = 0x80, hi = 0xbf;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else {
		*bad = 1;
		return 0;
	}
	for (size_t i = 1; i < (size_t)need; i++) {
		if (i >= n && !final)
			return -1;
		if (i >= n || p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xbf)) {
			*bad = i;
			return 0;
		}
	}
	return need;
}

/* The decoded text of the bytes p[0..n): valid sequences as they are, each
   invalid prefix as U+FFFD. Returns how many bytes it took: all but an
   unfinished sequence at the end, which waits for the next token's bytes
   (unless final). */
static size_t put_lossy(zp_buf *out, const uint8_t *p, size_t n, bool final)
{
	size_t i = 0, run = 0;
	while (i < n) {
		size_t bad = 0;
		int ok = utf8_seq(p + i, n - i, final, &bad);
		if (ok < 0)
			break;
		if (ok > 0) {
			i += (size_t)ok;
			continue;
		}
		zp_buf_put(out, p + run, i - run);
		zp_buf_put(out, "\xef\xbf\xbd", 3);
		i += bad;
		run = i;
	}
	zp_buf_put(out, p + run, i - run);
	return i;
}

/* Token by token, with the (at most 3) bytes of a sequence that spans tokens
   carried in pend: no copy of the whole text. */
const char *zp_tok_piece(const zp_tok *t, int32_t id, size_t *len)
{
	if (id < 0 || id >= t->nvocab || !t->tok[id].len)
		return NULL;
	*len = t->tok[id].len;
	return t->bytes + t->tok[id].off;
}

bool zp_tok_is_special(const zp_tok *t, int32_t id)
{
	for (int i = 0; i < t->nadd; i++) /* a few dozen: no index kept */
		if (t->add[i].id == id)
			return t->add[i].special;
	return false;
}

/* The ids' bytes joined, then read as UTF-8 with U+FFFD for what is not (as
   tokenizers' ByteLevel decoder joins and from_utf8_lossy's); skip: special
   added tokens left out first, as its decode(skip_special_tokens) does. */
static int decode(const zp_tok *t, const int32_t *ids, int n, bool skip, zp_buf *out)
{
	uint8_t pend[4];
	size_t np = 0;
	for (int k = 0; k < n; k++)
		if (ids[k] < 0 || ids[k] >= t->nvocab || !t->tok[ids[k]].len)
			return -1;
	for (int k = 0; k < n; k++) {
		if (skip && zp_tok_is_special(t, ids[k]))
			continue;
		span sp = t->tok[ids[k]];
		const uint8_t *p = (const uint8_t *)t->bytes + sp.off;
		size_t i = 0;
		while (np && i < sp.len) { /* finish the carried sequence first */
			pend[np++] = p[i++];
			size_t used = put_lossy(out, pend, np, false);
			memmove(pend, pend + used, np - used);
			np -= used;
		}
		if (np)
			continue;
		i += put_lossy(out, p + i, sp.len - i, false);
		np = sp.len - i;
		ZP_ASSERT(np < sizeof pend);
		memcpy(pend, p + i, np);
	}
	put_lossy(out, pend, np, true);
	return 0;
}

int zp_tok_decode(const zp_tok *t, const int32_t *ids, int n, zp_buf *out)
{
	return decode(t, ids, n, false, out);
}

int zp_tok_decode_skip_special(const zp_tok *t, const int32_t *ids, int n, zp_buf *out)
{
	return decode(t, ids, n, true, out);
}

/* test_tokenizer.c -- our tokenizer against goldens from the HF `tokenizers`
   library (tools/tok_golden.py): encode ids and decode text must be identical
   on every corpus line. Always on the small tokenizer tools/train_tokenizer.py
   trained (committed), and on the real Qwen3 tokenizer.json the repository
   carries (models/default/, the unmodified file; ZP_QWEN_TOKENIZER names
   another). A missing file fails the test, never skips it. The corpus covers the Unicode edges
   (blocks since 13.0, NUL and control characters, NFC cases), so the tables
   of unicode_tables.c are checked against the library itself. Also: the
   snprintf contract of zp_tok_encode, refusals of unsupported files, lossy
   decode, decode skipping the added tokens marked special
   (tools/decode_golden.py), and texts holding NUL through zp_json_parse_text. */
#include <cjson/cJSON.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "json.h"
#include "tokenizer.h"

#define IDS_MAX 65536

static int32_t ids[IDS_MAX];

static int run_golden(const char *tok_path, const char *golden)
{
	zp_err e;
	zp_tok *t = zp_tok_load(tok_path, &e);
	CHECK(t, "load %s: %s", tok_path, e.msg);
	if (!t)
		return 0;
	zp_tok_state *s = zp_tok_state_new(t);
	FILE *f = fopen(golden, "r");
	CHECK(f, "open %s", golden);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lines = 0, enc_ok = 0, dec_ok = 0, nul = 0;
	while (f && (n = getline(&line, &cap, f)) > 0) {
		cJSON *o = zp_json_parse_text(line, (size_t)n);
		const cJSON *text = cJSON_GetObjectItem(o, "text"), *want = cJSON_GetObjectItem(o, "ids");
		const cJSON *dec = cJSON_GetObjectItem(o, "decoded");
		if (cJSON_GetObjectItem(o, "tool")) { /* the header line */
			cJSON_Delete(o);
			continue;
		}
		lines++;
		CHECK(cJSON_IsString(text) && cJSON_IsArray(want) && cJSON_IsString(dec),
		      "%s line %d is not {text, ids, decoded}", golden, lines);
		if (!cJSON_IsString(text) || !cJSON_IsArray(want) || !cJSON_IsString(dec)) {
			cJSON_Delete(o);
			continue;
		}
		size_t len = zp_json_strlen(text); /* \u0000 gives NUL bytes */
		nul += len != strlen(text->valuestring);
		int k = zp_tok_encode(s, text->valuestring, len, ids, IDS_MAX);
		int nw = cJSON_GetArraySize(want), same = k == nw;
		for (int i = 0; same && i < k; i++)
			same = ids[i] == cJSON_GetArrayItem(want, i)->valueint;
		CHECK(same, "%s line %d: encode gives %d ids, want %d (first diff shown by index)",
		      golden, lines, k, nw);
		if (!same) {
			for (int i = 0; i < k && i < nw; i++)
				if (ids[i] != cJSON_GetArrayItem(want, i)->valueint) {
					fprintf(stderr, "  at %d: %d vs %d\n", i, ids[i],
						cJSON_GetArrayItem(want, i)->valueint);
					break;
				}
		}
		enc_ok += same;
		zp_buf b;
		zp_buf_init(&b, 64);
		for (int i = 0; i < nw; i++)
			ids[i] = cJSON_GetArrayItem(want, i)->valueint;
		CHECK(zp_tok_decode(t, ids, nw, &b) == 0, "decode failed");
		int dsame = b.len == zp_json_strlen(dec) && memcmp(b.p, dec->valuestring, b.len) == 0;
		CHECK(dsame, "%s line %d: decode differs", golden, lines);
		dec_ok += dsame;
		zp_buf_free(&b);
		cJSON_Delete(o);
	}
	printf("%s: %d lines (%d with NUL), encode %d/%d, decode %d/%d identical\n", golden, lines,
	       nul, enc_ok, lines, dec_ok, lines);
	CHECK(lines > 1000 && nul >= 10, "%s: only %d lines, %d with NUL", golden, lines, nul);
	free(line);
	if (f)
		fclose(f);
	zp_tok_state_free(s);
	zp_tok_free(t);
	return 1;
}

/* tests/data/small-tokenizer.json with GPT-2's pre-tokenizer, as
   tools/tok_golden.py --gpt2 makes it, into path (a mkstemp template). */
static int write_gpt2_variant(char *path)
{
	FILE *f = fopen("tests/data/small-tokenizer.json", "rb");
	char *buf = zp_xmalloc(1 << 24);
	size_t n = f ? fread(buf, 1, 1 << 24, f) : 0;
	cJSON *root = zp_json_parse(buf, n);
	CHECK(f && root, "read the small tokenizer");
	if (f)
		fclose(f);
	free(buf);
	if (!root)
		return -1;
	cJSON_ReplaceItemInObject(root, "pre_tokenizer",
				  cJSON_Parse("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
					      "\"trim_offsets\":true,\"use_regex\":true}"));
	char *text = cJSON_PrintUnformatted(root);
	int fd = mkstemp(path);
	int ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	CHECK(ok, "write %s", path);
	if (fd >= 0)
		close(fd);
	free(text);
	cJSON_Delete(root);
	return ok ? 0 : -1;
}

/* Texts holding NUL through the JSON layer: zp_json_parse refuses \u0000,
   zp_json_parse_text keeps it in values with their length, never in keys. */
static void test_nul_json(void)
{
	static const char doc[] = "{\"a\":\"x\\u0000y\\u00e9\\ud83d\\ude00\\n\",\"b\":[\"\\u0000\",\"plain\"],"
				  "\"c\":{\"d\":\"\\u0000\\u0000\"}}";
	cJSON *o = zp_json_parse(doc, sizeof doc - 1);
	CHECK(!o, "zp_json_parse refuses \\u0000");
	cJSON_Delete(o);
	o = zp_json_parse_text(doc, sizeof doc - 1);
	CHECK(o, "zp_json_parse_text takes \\u0000 in values");
	if (!o)
		return;
	const cJSON *a = cJSON_GetObjectItem(o, "a"), *b = cJSON_GetObjectItem(o, "b");
	CHECK(zp_json_strlen(a) == 10 && memcmp(a->valuestring, "x\0y\xc3\xa9\xf0\x9f\x98\x80\n", 11) == 0,
	      "a: %zu bytes", zp_json_strlen(a));
	CHECK(zp_json_strlen(cJSON_GetArrayItem(b, 0)) == 1 && zp_json_strlen(cJSON_GetArrayItem(b, 1)) == 5,
	      "b's lengths");
	CHECK(zp_json_strlen(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "c"), "d")) == 2, "c.d: 2 NULs");
	CHECK(zp_json_nul_outside(o, (const char *const[]){ "a", "b", NULL }), "c holds NUL");
	CHECK(!zp_json_nul_outside(o, (const char *const[]){ "a", "b", "c", NULL }), "only a, b, c do");
	CHECK(zp_json_nul_outside(o, (const char *const[]){ "a", "c", NULL }), "b[0] holds NUL");
	cJSON_Delete(o);
	static const char key[] = "{\"k\\u0000\":\"v\"}";
	o = zp_json_parse_text(key, sizeof key - 1);
	CHECK(!o, "\\u0000 in a key refused");
	cJSON_Delete(o);
	static const char esc[] = "{\"k\":\"\\\\u0000\"}"; /* an escaped backslash, then u0000 */
	o = zp_json_parse(esc, sizeof esc - 1);
	CHECK(o && zp_json_strlen(cJSON_GetObjectItem(o, "k")) == 6, "\\\\u0000 is six characters");
	cJSON_Delete(o);
}

static void test_contract(void)
{
	zp_err e;
	zp_tok *t = zp_tok_load("tests/data/small-tokenizer.json", &e);
	zp_tok_state *s = zp_tok_state_new(t);
	const char *txt = "The quick brown fox<|im_end|> jumps.";
	int32_t few[3] = { -7, -7, -7 };
	int all = zp_tok_encode(s, txt, strlen(txt), ids, IDS_MAX);
	int k = zp_tok_encode(s, txt, strlen(txt), few, 2);
	CHECK(all > 2 && k == all, "encode returns the full count (%d vs %d)", k, all);
	CHECK(few[0] == ids[0] && few[1] == ids[1] && few[2] == -7, "encode writes at most max");
	CHECK(zp_tok_encode(s, "", 0, ids, IDS_MAX) == 0, "empty text has no ids");
	CHECK(zp_tok_find(t, "<|im_end|>", 10) == 2, "added token found");
	CHECK(zp_tok_find(t, " yes", 4) >= 0, "vocab token found");
	CHECK(zp_tok_find(t, "no such token at all", 20) < 0, "missing token not found");
	int32_t bad[2] = { 5, zp_tok_vocab_size(t) };
	zp_buf b;
	zp_buf_init(&b, 16);
	CHECK(zp_tok_decode(t, bad, 2, &b) == -1, "out-of-range id refused");
	bad[1] = -1;
	CHECK(zp_tok_decode(t, bad, 2, &b) == -1, "negative id refused");
	/* half of a multi-byte character decodes to U+FFFD */
	int n = zp_tok_encode(s, "\xe4\xbd\xa0", 3, ids, IDS_MAX);
	b.len = 0;
	CHECK(n >= 1 && zp_tok_decode(t, ids, 1, &b) == 0, "decode part");
	CHECK(n == 1 || strcmp(b.p, "\xef\xbf\xbd") == 0, "partial char is U+FFFD: %s", b.p);
	zp_buf_free(&b);
	zp_tok_state_free(s);
	zp_tok_free(t);
}

static void test_refusals(void)
{
	static const char *bad[] = {
		"{}",
		"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}},\"decoder\":{\"type\":\"ByteLevel\"},"
		"\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"use_regex\":true}}",
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":{\"type\":"
		"\"ByteLevel\"},\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"use_regex\":true}}",
		"{\"normalizer\":{\"type\":\"NFKC\"}}",
		/* a pattern other than the two matched by hand (Llama 3's digits) */
		"{\"decoder\":{\"type\":\"ByteLevel\"},\"pre_tokenizer\":{\"type\":\"Sequence\","
		"\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{N}{1,3}\"},"
		"\"behavior\":\"Isolated\"},{\"type\":\"ByteLevel\",\"use_regex\":false}]}}",
		"not json",
	};
	char path[] = "/tmp/zp-tok-XXXXXX";
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		int fd = mkstemp(path);
		CHECK(write(fd, bad[i], strlen(bad[i])) == (ssize_t)strlen(bad[i]), "write");
		close(fd);
		zp_err e = { { 0 } };
		zp_tok *t = zp_tok_load(path, &e);
		CHECK(!t && strncmp(e.msg, "tokenizer:", 10) == 0, "bad file %zu refused: %s", i, e.msg);
		zp_tok_free(t);
		unlink(path);
		strcpy(path, "/tmp/zp-tok-XXXXXX");
	}
	zp_err e;
	CHECK(!zp_tok_load("/nonexistent/tokenizer.json", &e), "missing file refused");
}

/* tests/golden/decode-qwen3.jsonl (tools/decode_golden.py): decode with and
   without skip_special_tokens, byte-level pieces that are not UTF-8 alone
   among them, identical to tokenizers' decode. */
static void run_decode_golden(const char *tok_path, const char *golden)
{
	zp_err e;
	zp_tok *t = zp_tok_load(tok_path, &e);
	FILE *f = fopen(golden, "r");
	CHECK(t && f, "load %s, open %s", tok_path, golden);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lines = 0, same_n = 0, skips = 0;
	while (t && f && (n = getline(&line, &cap, f)) > 0) {
		cJSON *o = zp_json_parse_text(line, (size_t)n);
		const cJSON *id = cJSON_GetObjectItem(o, "ids"), *it;
		const cJSON *dec = cJSON_GetObjectItem(o, "decoded");
		if (cJSON_GetObjectItem(o, "tool")) {
			cJSON_Delete(o);
			continue;
		}
		bool skip = cJSON_IsTrue(cJSON_GetObjectItem(o, "skip_special_tokens"));
		int k = 0;
		cJSON_ArrayForEach(it, id)
			ids[k++] = it->valueint;
		zp_buf b;
		zp_buf_init(&b, 64);
		int rc = skip ? zp_tok_decode_skip_special(t, ids, k, &b) : zp_tok_decode(t, ids, k, &b);
		int same = rc == 0 && cJSON_IsString(dec) && b.len == zp_json_strlen(dec) &&
			   memcmp(b.p, dec->valuestring, b.len) == 0;
		lines++;
		skips += skip;
		same_n += same;
		CHECK(same, "%s line %d (skip %d): \"%.*s\" vs \"%s\"", golden, lines + 1, skip,
		      (int)b.len, b.p, cJSON_IsString(dec) ? dec->valuestring : "?");
		zp_buf_free(&b);
		cJSON_Delete(o);
	}
	printf("%s: decode %d/%d identical (%d skipping special tokens)\n", golden, same_n, lines,
	       skips);
	CHECK(lines >= 100 && skips * 2 == lines, "%s: %d lines", golden, lines);
	/* the flag as tokenizer.json gives it */
	CHECK(t && zp_tok_is_special(t, 151645) && !zp_tok_is_special(t, 151667) &&
	      !zp_tok_is_special(t, 9707), "<|im_end|> special, <think> and a word not");
	free(line);
	if (f)
		fclose(f);
	if (t)
		zp_tok_free(t);
}

int main(void)
{
	const char *qwen = getenv("ZP_QWEN_TOKENIZER");
	if (!qwen)
		qwen = "models/default/tokenizer.json";
	run_golden("tests/data/small-tokenizer.json", "tests/golden/tok-small.jsonl");
	char gpt2[] = "/tmp/zp-tok-gpt2-XXXXXX";
	if (write_gpt2_variant(gpt2) == 0) {
		run_golden(gpt2, "tests/golden/tok-small-gpt2.jsonl");
		unlink(gpt2);
	}
	CHECK(access(qwen, R_OK) == 0, "the Qwen3 tokenizer.json is not at %s", qwen);
	run_golden(qwen, "tests/golden/tok-qwen3.jsonl");
	run_decode_golden(qwen, "tests/golden/decode-qwen3.jsonl");
	test_contract();
	test_refusals();
	test_nul_json();
	return check_exit("test_tokenizer");
}

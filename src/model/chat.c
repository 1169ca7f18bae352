/* chat.c -- see chat.h. The Qwen3 template below is the spec this file
   renders by hand: render() follows it statement by statement, with Python's
   string methods (split, strip, lstrip, startswith) as Jinja calls them.
   Goldens: tests/golden/chat-qwen3.jsonl (tools/chat_golden.py, transformers'
   apply_chat_template); test: tests/test_chat.c. */
#include "chat.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_BYTES_MAX (16u << 20)	/* a tokenizer_config.json larger than this is refused */

/* Qwen3's chat_template (Qwen3-0.6B ... 235B-A22B and the MoE models, as
   first released), byte for byte. Later Qwen3 templates (the 2507 Instruct
   and Thinking ones, which read reasoning_content "is string" and drop
   enable_thinking) render differently and are refused until goldened. */
static const char qwen3_template[] =
	"{%- if tools %}\n"
	"    {{- '<|im_start|>system\\n' }}\n"
	"    {%- if messages[0].role == 'system' %}\n"
	"        {{- messages[0].content + '\\n\\n' }}\n"
	"    {%- endif %}\n"
	"    {{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
	"    {%- for tool in tools %}\n"
	"        {{- \"\\n\" }}\n"
	"        {{- tool | tojson }}\n"
	"    {%- endfor %}\n"
	"    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
	"{%- else %}\n"
	"    {%- if messages[0].role == 'system' %}\n"
	"        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n"
	"    {%- endif %}\n"
	"{%- endif %}\n"
	"{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
	"{%- for message in messages[::-1] %}\n"
	"    {%- set index = (messages|length - 1) - loop.index0 %}\n"
	"    {%- if ns.multi_step_tool and message.role == \"user\" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}\n"
	"        {%- set ns.multi_step_tool = false %}\n"
	"        {%- set ns.last_query_index = index %}\n"
	"    {%- endif %}\n"
	"{%- endfor %}\n"
	"{%- for message in messages %}\n"
	"    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
	"        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
	"    {%- elif message.role == \"assistant\" %}\n"
	"        {%- set content = message.content %}\n"
	"        {%- set reasoning_content = '' %}\n"
	"        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}\n"
	"            {%- set reasoning_content = message.reasoning_content %}\n"
	"        {%- else %}\n"
	"            {%- if '</think>' in message.content %}\n"
	"                {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}\n"
	"                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}\n"
	"            {%- endif %}\n"
	"        {%- endif %}\n"
	"        {%- if loop.index0 > ns.last_query_index %}\n"
	"            {%- if loop.last or (not loop.last and reasoning_content) %}\n"
	"                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}\n"
	"            {%- else %}\n"
	"                {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
	"            {%- endif %}\n"
	"        {%- else %}\n"
	"            {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
	"        {%- endif %}\n"
	"        {%- if message.tool_calls %}\n"
	"            {%- for tool_call in message.tool_calls %}\n"
	"                {%- if (loop.first and content) or (not loop.first) %}\n"
	"                    {{- '\\n' }}\n"
	"                {%- endif %}\n"
	"                {%- if tool_call.function %}\n"
	"                    {%- set tool_call = tool_call.function %}\n"
	"                {%- endif %}\n"
	"                {{- '<tool_call>\\n{\"name\": \"' }}\n"
	"                {{- tool_call.name }}\n"
	"                {{- '\", \"arguments\": ' }}\n"
	"                {%- if tool_call.arguments is string %}\n"
	"                    {{- tool_call.arguments }}\n"
	"                {%- else %}\n"
	"                    {{- tool_call.arguments | tojson }}\n"
	"                {%- endif %}\n"
	"                {{- '}\\n</tool_call>' }}\n"
	"            {%- endfor %}\n"
	"        {%- endif %}\n"
	"        {{- '<|im_end|>\\n' }}\n"
	"    {%- elif message.role == \"tool\" %}\n"
	"        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
	"            {{- '<|im_start|>user' }}\n"
	"        {%- endif %}\n"
	"        {{- '\\n<tool_response>\\n' }}\n"
	"        {{- message.content }}\n"
	"        {{- '\\n</tool_response>' }}\n"
	"        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
	"            {{- '<|im_end|>\\n' }}\n"
	"        {%- endif %}\n"
	"    {%- endif %}\n"
	"{%- endfor %}\n"
	"{%- if add_generation_prompt %}\n"
	"    {{- '<|im_start|>assistant\\n' }}\n"
	"    {%- if enable_thinking is defined and enable_thinking is false %}\n"
	"        {{- '<think>\\n\\n</think>\\n\\n' }}\n"
	"    {%- endif %}\n"
	"{%- endif %}";

/* The file, NUL-terminated, in a heap buffer (start-up only); NULL with
   *missing when it does not exist. */
static char *read_all(const char *path, bool *missing, zp_err *e)
{
	FILE *f = fopen(path, "rb");
	*missing = !f && errno == ENOENT;
	if (!f) {
		if (!*missing)
			zp_errf(e, "%s: %s", path, strerror(errno));
		return NULL;
	}
	char *buf = zp_xmalloc(CONFIG_BYTES_MAX + 1);
	size_t n = fread(buf, 1, CONFIG_BYTES_MAX + 1, f);
	bool bad = ferror(f);
	fclose(f);
	if (bad || n > CONFIG_BYTES_MAX) {
		zp_errf(e, "%s: %s", path, bad ? "read error" : "larger than 16 MiB");
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static cJSON *load_json(const char *path, bool *missing, zp_err *e)
{
	char *buf = read_all(path, missing, e);
	if (!buf)
		return NULL;
	cJSON *root = cJSON_Parse(buf);
	free(buf);
	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		zp_errf(e, "%s: not a JSON object", path);
		return NULL;
	}
	return root;
}

static void add_eos(zp_chat *c, double id)
{
	if (id < 0 || id > INT32_MAX || id != (int32_t)id || c->neos == ZP_CHAT_EOS_MAX ||
	    zp_chat_is_eos(c, (int32_t)id))
		return;
	c->eos[c->neos++] = (int32_t)id;
}

/* added_tokens_decoder: {"id": {"content", "special"}}; eos_token names one
   of them (a string, or an object with content). */
static void read_tokens(zp_chat *c, const cJSON *cfg)
{
	const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
	const cJSON *eos = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token"), *t;
	if (cJSON_IsObject(eos))
		eos = cJSON_GetObjectItemCaseSensitive(eos, "content");
	cJSON_ArrayForEach(t, dec) {
		char *end;
		long id = strtol(t->string, &end, 10);
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(t, "content");
		if (*end || id < 0 || id > INT32_MAX || !cJSON_IsString(content))
			continue;
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "special")) &&
		    c->nspecial < ZP_CHAT_SPECIAL_MAX)
			c->special[c->nspecial++] = (int32_t)id;
		if (cJSON_IsString(eos) && !strcmp(eos->valuestring, content->valuestring))
			add_eos(c, (double)id);
	}
}

/* generation_config.json's eos_token_id (an id or a list), as vLLM stops on. */
static int read_generation(zp_chat *c, const char *dir, zp_err *e)
{
	char path[4096];
	bool missing;
	snprintf(path, sizeof path, "%s/generation_config.json", dir);
	cJSON *g = load_json(path, &missing, e), *t;
	if (!g)
		return missing ? 0 : -1;
	cJSON *ids = cJSON_GetObjectItemCaseSensitive(g, "eos_token_id");
	if (cJSON_IsNumber(ids))
		add_eos(c, ids->valuedouble);
	else if (cJSON_IsArray(ids))
		cJSON_ArrayForEach(t, ids)
			if (cJSON_IsNumber(t))
				add_eos(c, t->valuedouble);
	cJSON_Delete(g);
	return 0;
}

/* Names a refused template in the log, so that it can be told apart. */
static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

int zp_chat_load(zp_chat *c, const char *dir, zp_err *e)
{
	char path[4096];
	bool missing;
	memset(c, 0, sizeof *c);
	snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
	cJSON *cfg = load_json(path, &missing, e);
	if (!cfg && !missing)
		return -1;
	if (!cfg) {
		snprintf(c->why, sizeof c->why, "the model directory has no tokenizer_config.json "
			 "(its chat_template)");
		return 0;
	}
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
	read_tokens(c, cfg);
	if (!cJSON_IsString(t)) {
		snprintf(c->why, sizeof c->why, "tokenizer_config.json has no chat_template string%s",
			 cJSON_IsArray(t) ? " (a list of named templates is not read)" : "");
	} else if (strcmp(t->valuestring, qwen3_template)) {
		c->kind = ZP_CHAT_OTHER;
		snprintf(c->why, sizeof c->why, "tokenizer_config.json's chat_template (%zu bytes, "
			 "FNV-1a %016llx) is not Qwen3's: zprefill renders that one template by hand "
			 "(no Jinja engine), and would render any other wrong",
			 strlen(t->valuestring), (unsigned long long)fnv1a(t->valuestring));
	} else {
		c->kind = ZP_CHAT_QWEN3;
	}
	cJSON_Delete(cfg);
	return read_generation(c, dir, e);
}

bool zp_chat_is_special(const zp_chat *c, int32_t id)
{
	for (int i = 0; i < c->nspecial; i++)
		if (c->special[i] == id)
			return true;
	return false;
}

bool zp_chat_is_eos(const zp_chat *c, int32_t id)
{
	for (int i = 0; i < c->neos; i++)
		if (c->eos[i] == id)
			return true;
	return false;
}

/* ---- Python's str methods on (p, n) spans, as the template calls them ---- */

typedef struct {
	const char *p;
	size_t n;
} span;

static span sp(const char *s)
{
	return (span){ s, strlen(s) };
}

static const char *find_first(span s, const char *w)
{
	size_t k = strlen(w);
	for (size_t i = 0; i + k <= s.n; i++)
		if (!memcmp(s.p + i, w, k))
			return s.p + i;
	return NULL;
}

static const char *find_last(span s, const char *w)
{
	size_t k = strlen(w);
	for (size_t i = s.n + 1; i-- > 0;)
		if (i + k <= s.n && !memcmp(s.p + i, w, k))
			return s.p + i;
	return NULL;
}

/* s.split(w)[0] and s.split(w)[-1] */
static span split_first(span s, const char *w)
{
	const char *at = find_first(s, w);
	return at ? (span){ s.p, (size_t)(at - s.p) } : s;
}

static span split_last(span s, const char *w)
{
	const char *at = find_last(s, w);
	if (!at)
		return s;
	at += strlen(w);
	return (span){ at, s.n - (size_t)(at - s.p) };
}

static span lstrip_nl(span s)
{
	while (s.n && *s.p == '\n')
		s.p++, s.n--;
	return s;
}

static span rstrip_nl(span s)
{
	while (s.n && s.p[s.n - 1] == '\n')
		s.n--;
	return s;
}

static bool starts(span s, const char *w)
{
	size_t k = strlen(w);
	return s.n >= k && !memcmp(s.p, w, k);
}

static bool ends(span s, const char *w)
{
	size_t k = strlen(w);
	return s.n >= k && !memcmp(s.p + s.n - k, w, k);
}

static void put(zp_buf *out, span s)
{
	zp_buf_put(out, s.p, s.n);
}

static const char *role_name(enum zp_chat_role r)
{
	static const char *const names[] = { "system", "user", "assistant", "tool" };
	return names[r];
}

/* Python's str.isspace on one code point. */
static bool py_space(uint32_t u)
{
	return (u >= 0x09 && u <= 0x0d) || (u >= 0x1c && u <= 0x20) || u == 0x85 || u == 0xa0 ||
	       u == 0x1680 || (u >= 0x2000 && u <= 0x200a) || u == 0x2028 || u == 0x2029 ||
	       u == 0x202f || u == 0x205f || u == 0x3000;
}

/* The code point at p (valid UTF-8, as every text here is) and its length. */
static uint32_t utf8_at(const char *p, size_t *len)
{
	const unsigned char *u = (const unsigned char *)p;
	if (u[0] < 0x80)
		return *len = 1, u[0];
	if (u[0] < 0xe0)
		return *len = 2, (uint32_t)(u[0] & 0x1f) << 6 | (u[1] & 0x3f);
	if (u[0] < 0xf0)
		return *len = 3, (uint32_t)(u[0] & 0x0f) << 12 | (uint32_t)(u[1] & 0x3f) << 6 | (u[2] & 0x3f);
	return *len = 4, (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3f) << 12 |
			 (uint32_t)(u[2] & 0x3f) << 6 | (u[3] & 0x3f);
}

/* s.rstrip() and s.strip() */
static span py_rstrip(span s)
{
	while (s.n) {
		size_t k = s.n - 1, len;
		while (k && ((unsigned char)s.p[k] & 0xc0) == 0x80)
			k--;
		if (!py_space(utf8_at(s.p + k, &len)))
			break;
		s.n = k;
	}
	return s;
}

static span py_strip(span s)
{
	size_t len;
	while (s.n && py_space(utf8_at(s.p, &len)))
		s.p += len, s.n -= len;
	return py_rstrip(s);
}

int zp_chat_continue_cut(zp_buf *out, size_t from, const char *final)
{
	span all = { out->p + from, out->len - from }, f = py_strip(sp(final));
	const char *tag = find_last(all, "CONTINUE_FINAL_MESSAGE_TAG");
	bool found = false;
	for (size_t i = 0; i + f.n <= all.n && !found; i++)
		found = !memcmp(all.p + i, f.p, f.n);
	if (out->overflow || !tag || !found)
		return -1;
	span keep = { all.p, (size_t)(tag - all.p) };
	if (!starts((span){ tag, all.n - keep.n }, ZP_CHAT_CONTINUE_TAG))
		keep = py_rstrip(keep); /* the template trimmed the tag's space */
	out->len = from + keep.n;
	out->p[out->len] = '\0';
	return 0;
}

/* ---- the template ---- */

/* ns.last_query_index: the last user message that is not a tool response
   wrapped as one (messages|length - 1 when there is none). */
static int last_query(const zp_chat_msg *m, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		span s = sp(m[i].content);
		if (m[i].role == ZP_CHAT_USER &&
		    !(starts(s, "<tool_response>") && ends(s, "</tool_response>")))
			return i;
	}
	return n - 1;
}

static void assistant(const zp_chat_msg *m, bool after_query, bool last, zp_buf *out)
{
	span content = sp(m->content), reasoning = sp("");
	if (m->reasoning) {
		reasoning = sp(m->reasoning);
	} else if (find_first(content, "</think>")) {
		span all = content;
		content = lstrip_nl(split_last(all, "</think>"));
		reasoning = lstrip_nl(split_last(rstrip_nl(split_first(all, "</think>")), "<think>"));
	}
	zp_buf_puts(out, "<|im_start|>assistant\n");
	if (after_query && (last || reasoning.n)) {
		zp_buf_puts(out, "<think>\n");
		put(out, rstrip_nl(lstrip_nl(reasoning)));
		zp_buf_puts(out, "\n</think>\n\n");
		put(out, lstrip_nl(content));
	} else {
		put(out, content);
	}
	for (int k = 0; k < m->ncalls; k++) {
		if ((k == 0 && content.n) || k > 0)
			zp_buf_puts(out, "\n");
		zp_buf_puts(out, "<tool_call>\n{\"name\": \"");
		zp_buf_puts(out, m->calls[k].name);
		zp_buf_puts(out, "\", \"arguments\": ");
		zp_buf_puts(out, m->calls[k].args);
		zp_buf_puts(out, "}\n</tool_call>");
	}
	zp_buf_puts(out, "<|im_end|>\n");
}

int zp_chat_render(const zp_chat *c, const zp_chat_msg *m, int n, bool add_gen, int thinking,
		   zp_buf *out)
{
	ZP_ASSERT(c->kind == ZP_CHAT_QWEN3 && n >= 1);
	int lq = last_query(m, n);
	if (m[0].role == ZP_CHAT_SYSTEM) {
		zp_buf_puts(out, "<|im_start|>system\n");
		zp_buf_puts(out, m[0].content);
		zp_buf_puts(out, "<|im_end|>\n");
	}
	for (int i = 0; i < n; i++) {
		switch (m[i].role) {
		case ZP_CHAT_SYSTEM:
			if (i == 0)
				break;
			/* a later system message is a turn of its own */
			__attribute__((fallthrough));
		case ZP_CHAT_USER:
			zp_buf_printf(out, "<|im_start|>%s\n", role_name(m[i].role));
			zp_buf_puts(out, m[i].content);
			zp_buf_puts(out, "<|im_end|>\n");
			break;
		case ZP_CHAT_ASSISTANT:
			assistant(&m[i], i > lq, i == n - 1, out);
			break;
		case ZP_CHAT_TOOL:
			if (i == 0 || m[i - 1].role != ZP_CHAT_TOOL)
				zp_buf_puts(out, "<|im_start|>user");
			zp_buf_puts(out, "\n<tool_response>\n");
			zp_buf_puts(out, m[i].content);
			zp_buf_puts(out, "\n</tool_response>");
			if (i == n - 1 || m[i + 1].role != ZP_CHAT_TOOL)
				zp_buf_puts(out, "<|im_end|>\n");
			break;
		}
	}
	if (add_gen) {
		zp_buf_puts(out, "<|im_start|>assistant\n");
		if (thinking == 0)
			zp_buf_puts(out, "<think>\n\n</think>\n\n");
	}
	return out->overflow ? -1 : 0;
}

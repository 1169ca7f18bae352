/* metrics.c -- see metrics.h. Plain counters, no atomics: the reactor
   thread alone writes and reads them (executors' figures arrive in the
   batches it reaps). Histogram buckets are fixed at start. */
#include "metrics.h"

#include <math.h>
#include <string.h>

#include "util.h"

static const int status_codes[ZP_STATUS_SLOTS - 1] = { 200, 400, 403, 404, 405, 408, 411, 413,
						       414, 431, 500, 503, 505, 422, 415 };
static const double le_tokens[] = { 16, 64, 256, 1024, 4096, 16384, 65536, 262144 };
static const double le_seconds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
				     0.25,  0.5,    1,     2.5,  5,     10,   30 };

static void hist_init(zp_hist *h, const double *le, int nb)
{
	ZP_ASSERT(nb < ZP_HIST_MAX);
	memset(h, 0, sizeof *h);
	h->le = le;
	h->nb = nb;
}

void zp_metrics_init(zp_metrics *m, double now)
{
	memset(m, 0, sizeof *m);
	hist_init(&m->batch_tokens, le_tokens, sizeof le_tokens / sizeof *le_tokens);
	hist_init(&m->lat_queue_s, le_seconds, sizeof le_seconds / sizeof *le_seconds);
	hist_init(&m->lat_forward_s, le_seconds, sizeof le_seconds / sizeof *le_seconds);
	hist_init(&m->lat_total_s, le_seconds, sizeof le_seconds / sizeof *le_seconds);
	m->t_start = now;
}

void zp_metrics_status(zp_metrics *m, enum zp_route ep, int status)
{
	int i = 0;
	while (i < ZP_STATUS_SLOTS - 1 && status_codes[i] != status)
		i++;
	m->requests[ep][i]++;
}

void zp_metrics_hist(zp_hist *h, double v)
{
	int i = 0;
	while (i < h->nb && v > h->le[i])
		i++;
	h->count[i]++;
	h->n++;
	h->sum += v;
}

void zp_metrics_batch(zp_metrics *m, const zp_batch *b, double now)
{
	long sec = (long)now;
	int slot = (int)(sec % ZP_RATE_WINDOW_S);
	if (m->rate_stamp[slot] != sec) {
		m->rate_stamp[slot] = sec;
		m->rate_tokens[slot] = 0;
	}
	m->rate_tokens[slot] += (uint64_t)b->tokens;
	m->tokens_total += (uint64_t)b->tokens;
	m->seqs_total += (uint64_t)b->n;
	m->batches_total++;
	m->forward_s_total += b->fwd_s;
	m->prompt_tokens += (uint64_t)b->stats.prompt_tokens;
	m->computed_tokens += (uint64_t)b->stats.computed_tokens;
	m->cache_hit_tokens += (uint64_t)b->stats.cache_hit_tokens;
	m->sibling_tokens += (uint64_t)b->stats.sibling_tokens;
	m->evictions += (uint64_t)b->stats.kv_evictions;
	if (b->exec >= 0 && b->exec < ZP_EXECUTORS_MAX)
		m->kv_blocks[b->exec] = b->stats.kv_blocks;
	zp_metrics_hist(&m->batch_tokens, b->tokens);
	zp_metrics_hist(&m->lat_forward_s, b->fwd_s);
}

static void hist_render(zp_buf *o, const char *name, const char *help, const zp_hist *h)
{
	uint64_t cum = 0;
	zp_buf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (int i = 0; i < h->nb; i++) {
		cum += h->count[i];
		zp_buf_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], (unsigned long long)cum);
	}
	zp_buf_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
		      (unsigned long long)h->n, name, h->sum, name, (unsigned long long)h->n);
}

static void counter(zp_buf *o, const char *name, const char *help, const char *type, double v)
{
	zp_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

void zp_metrics_render(const zp_metrics *m, const zp_sched *s, int executors_busy,
		       int executors, zp_buf *o, double now)
{
	static const zp_sched loading = { .threshold = HUGE_VAL }; /* as zp_sched_init leaves it */
	if (!s)
		s = &loading;
	o->len = 0;
	zp_buf_puts(o, "# HELP zprefill_requests_total HTTP requests answered, by endpoint and "
		    "status.\n# TYPE zprefill_requests_total counter\n");
	for (int e = 0; e < ZP_ROUTE_COUNT; e++)
		for (int i = 0; i < ZP_STATUS_SLOTS; i++)
			if (m->requests[e][i])
				zp_buf_printf(o, "zprefill_requests_total{endpoint=\"%s\",status=\"%s%d\"} "
					      "%llu\n", zp_route_name(e), i < ZP_STATUS_SLOTS - 1 ? "" : "other",
					      i < ZP_STATUS_SLOTS - 1 ? status_codes[i] : 0,
					      (unsigned long long)m->requests[e][i]);
	uint64_t win = 0;
	for (int i = 0; i < ZP_RATE_WINDOW_S; i++)
		if (m->rate_stamp[i] > (long)now - ZP_RATE_WINDOW_S)
			win += m->rate_tokens[i];
	counter(o, "zprefill_queue_requests", "Requests admitted and not yet answered.", "gauge",
		s->requests);
	counter(o, "zprefill_queue_tokens", "Prompt tokens admitted and not yet answered.", "gauge",
		(double)s->tokens);
	counter(o, "zprefill_queue_waiting_tokens", "Prompt tokens not yet sent to an executor.",
		"gauge", (double)s->queued_tokens);
	counter(o, "zprefill_executors", "Executor threads.", "gauge", executors);
	counter(o, "zprefill_executors_busy", "Executors running a batch.", "gauge", executors_busy);
	counter(o, "zprefill_threshold_flops", "Saturation threshold T, FLOPs per layer.", "gauge",
		s->threshold);
	counter(o, "zprefill_threshold_gather_seconds", "T's input: one layer's expert gather.",
		"gauge", s->gather_s);
	counter(o, "zprefill_threshold_flop_rate", "T's input: achieved MLP FLOP/s.", "gauge",
		s->flops_per_s);
	counter(o, "zprefill_threshold_gamma", "T's input: the margin gamma.", "gauge", s->gamma);
	counter(o, "zprefill_threshold_floor_flops", "T's floor: schedule_min_tokens tokens.", "gauge",
		s->threshold_min);
	counter(o, "zprefill_schedule_aged_total", "Sequences routed first by the aging rule.",
		"counter", (double)s->aged);
	zp_buf_puts(o, "# HELP zprefill_executor_load_flops FLOPs per layer routed to an executor "
		    "and not yet back.\n# TYPE zprefill_executor_load_flops gauge\n");
	for (int x = 0; x < executors && s->ex; x++)
		zp_buf_printf(o, "zprefill_executor_load_flops{executor=\"%d\"} %.17g\n", x,
			      zp_sched_load(s, x));
	counter(o, "zprefill_prefill_tokens_total", "Prompt tokens run through a forward pass.",
		"counter", (double)m->tokens_total);
	counter(o, "zprefill_tokens_per_second", "Prompt tokens per second over the last 10 s.",
		"gauge", (double)win / ZP_RATE_WINDOW_S);
	counter(o, "zprefill_batches_total", "Forward passes run.", "counter",
		(double)m->batches_total);
	counter(o, "zprefill_forward_seconds_total", "Seconds executors spent in forward passes.",
		"counter", m->forward_s_total);
	counter(o, "zprefill_connections_open", "Open client connections.", "gauge", m->conns_open);
	counter(o, "zprefill_connections_accepted_total", "Connections accepted.", "counter",
		(double)m->conns_accepted);
	counter(o, "zprefill_connections_refused_total", "Connections refused (limit or uid).",
		"counter", (double)m->conns_refused);
	counter(o, "zprefill_timeouts_total", "Connections closed by a header, body or idle timeout.",
		"counter", (double)m->timeouts);
	counter(o, "zprefill_overload_total", "Requests refused with 503 because the queue was full.",
		"counter", (double)m->overloaded);
	counter(o, "zprefill_dropped_total", "Requests dropped because their client had gone.",
		"counter", (double)m->dropped_gone);
	int kv_blocks = 0;
	for (int x = 0; x < ZP_EXECUTORS_MAX; x++)
		kv_blocks += m->kv_blocks[x];
	counter(o, "zprefill_prompt_tokens_total", "Tokens in the sequences of finished batches.",
		"counter", (double)m->prompt_tokens);
	counter(o, "zprefill_computed_tokens_total", "Of them, tokens run through the model.",
		"counter", (double)m->computed_tokens);
	counter(o, "zprefill_prefix_cache_hit_tokens_total", "Tokens taken from a prefix cache.",
		"counter", (double)m->cache_hit_tokens);
	counter(o, "zprefill_sibling_shared_tokens_total",
		"Tokens taken from a sibling sequence of the same batch.", "counter",
		(double)m->sibling_tokens);
	counter(o, "zprefill_prefix_cache_blocks", "Prefix cache blocks resident, all executors.",
		"gauge", kv_blocks);
	counter(o, "zprefill_prefix_cache_evictions_total", "Prefix cache blocks evicted.",
		"counter", (double)m->evictions);
	counter(o, "zprefill_uptime_seconds", "Seconds since start.", "gauge", now - m->t_start);
	hist_render(o, "zprefill_batch_tokens", "Tokens per forward pass.", &m->batch_tokens);
	hist_render(o, "zprefill_queue_seconds", "Arrival to first dispatch, per request.",
		    &m->lat_queue_s);
	hist_render(o, "zprefill_forward_seconds", "Forward pass time, per batch.", &m->lat_forward_s);
	hist_render(o, "zprefill_request_seconds", "Arrival to response, per request.",
		    &m->lat_total_s);
}

void zp_metrics_layers(zp_buf *o, const zp_place_layer_stats *st, int executors, int layers)
{
	static const char *name[2] = { "zprefill_layer_seconds_total", "zprefill_layer_wait_seconds_total" };
	static const char *help[2] = { "Seconds per executor and layer, summed over forwards.",
				       "Of those, seconds waiting for the layer's expert gather." };
	for (int k = 0; k < 2; k++) {
		zp_buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n", name[k], help[k], name[k]);
		for (int x = 0; x < executors; x++)
			for (int l = 0; l < layers; l++) {
				const zp_place_layer_stats *s = &st[(size_t)x * layers + l];
				if (s->forwards)
					zp_buf_printf(o, "%s{executor=\"%d\",layer=\"%d\"} %.6f\n", name[k],
						      x, l, k ? s->wait_s : s->layer_s);
			}
	}
}

void zp_metrics_executors(zp_buf *o, const zp_engine_counts *c, const enum zp_engine_exec *state,
			  int executors)
{
	static const struct { const char *name, *help; } k[] = {
		{ "zprefill_executor_lost_total", "Executors whose device faulted and did not come back." },
		{ "zprefill_executor_rejoined_total", "Lost executors whose device came back." },
		{ "zprefill_executor_stalls_total", "Times a busy executor made no progress for stall_timeout_ms." },
		{ "zprefill_batches_lost_total", "Batches lost with their executor (their sequences ran again)." },
		{ "zprefill_sequences_requeued_total", "Sequences queued again after their executor lost them." },
		{ "zprefill_expert_replacements_total", "Times the experts were re-placed over the executors up." },
	};
	long v[] = { c->lost, c->rejoined, c->stalls, c->lost_batches, c->requeued, c->replacements };
	_Static_assert(sizeof v / sizeof *v == sizeof k / sizeof *k, "one value per counter");
	for (size_t i = 0; i < sizeof k / sizeof *k; i++)
		zp_buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s %ld\n", k[i].name, k[i].help,
			      k[i].name, k[i].name, v[i]);
	zp_buf_puts(o, "# HELP zprefill_executor_up 1 while the executor serves (not down, not "
		    "stalled).\n# TYPE zprefill_executor_up gauge\n");
	for (int x = 0; x < executors; x++)
		zp_buf_printf(o, "zprefill_executor_up{executor=\"%d\"} %d\n", x,
			      state[x] == ZP_ENGINE_EXEC_OK);
}

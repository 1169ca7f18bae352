/* metrics.h -- the server's counters and histograms, rendered as Prometheus
   text for GET /metrics. Reactor thread only (executors report through the
   batches they hand back). */
#ifndef ZP_METRICS_H
#define ZP_METRICS_H

#include <stdint.h>

#include "router.h"
#include "asyncep.h"
#include "json.h"
#include "engine.h"
#include "scheduler.h"

#define ZP_HIST_MAX 16
#define ZP_STATUS_SLOTS 16
#define ZP_RATE_WINDOW_S 10

typedef struct {
	const double *le;	/* bucket upper bounds */
	int nb;
	uint64_t count[ZP_HIST_MAX];
	uint64_t n;
	double sum;
} zp_hist;

typedef struct zp_metrics {
	uint64_t requests[ZP_ROUTE_COUNT][ZP_STATUS_SLOTS];
	uint64_t conns_accepted, conns_refused, timeouts, overloaded, dropped_gone;
	int conns_open;
	uint64_t tokens_total, batches_total, seqs_total;
	double forward_s_total;
	zp_hist batch_tokens, lat_queue_s, lat_forward_s, lat_total_s;
	uint64_t rate_tokens[ZP_RATE_WINDOW_S];	/* tokens finished per second */
	long rate_stamp[ZP_RATE_WINDOW_S];
	double t_start;
	/* prefix reuse (from each batch's forward stats) */
	uint64_t prompt_tokens, computed_tokens, cache_hit_tokens, sibling_tokens, evictions;
	int kv_blocks[ZP_EXECUTORS_MAX];	/* each executor's, after its last batch */
} zp_metrics;

void zp_metrics_init(zp_metrics *m, double now);
void zp_metrics_status(zp_metrics *m, enum zp_route ep, int status);
void zp_metrics_hist(zp_hist *h, double v);
void zp_metrics_batch(zp_metrics *m, const zp_batch *b, double now);
/* Per executor and layer (AsyncEP): layer seconds and exposed gather wait, from
   stats[executors][layers] (layers never run are left out). Appends to out. */
void zp_metrics_layers(zp_buf *out, const zp_place_layer_stats *stats, int executors, int layers);
/* Executors lost and back (engine.h's counts) and each one's state by the
   progress test: zprefill_executor_up{executor} (1: serving), the counters. */
void zp_metrics_executors(zp_buf *out, const zp_engine_counts *c,
			  const enum zp_engine_exec *state, int executors);
/* Everything into out, the queue and threshold gauges from s (NULL before the
   engine is up: an empty queue, T not known yet). */
void zp_metrics_render(const zp_metrics *m, const zp_sched *s, int executors_busy,
		       int executors, zp_buf *out, double now);

#endif

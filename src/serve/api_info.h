/* api_info.h -- the server's state as GET /health and GET /metrics report
   it: the server fills a view before building those answers (api_info.c).
   Reactor thread. */
#ifndef ZP_API_INFO_H
#define ZP_API_INFO_H

#include "api.h"
#include "asyncep.h"
#include "engine.h"
#include "metrics.h"
#include "scheduler.h"

struct zp_api_view {
	bool ready;			/* weights loaded, executors running */
	int layers_done, layers;	/* loading progress (layers 0: not known yet) */
	int model_layers;		/* the config's layer count */
	const zp_metrics *met;
	const zp_sched *sched;		/* the engine's; NULL while loading */
	int executors, executors_busy;
	const zp_place_layer_stats *lstats;	/* [executors][model_layers]; NULL while loading */
	const char *dtype_name;		/* /info: "bfloat16" or "float32" */
	int queue_requests_max, batch_tokens_max;
	double now;
	/* the executors by the progress test (engine.h), once ready */
	enum zp_engine_exec exec_state[ZP_EXECUTORS_MAX];
	double exec_still_s[ZP_EXECUTORS_MAX];	/* stalled: for how long */
	const char *exec_why[ZP_EXECUTORS_MAX];	/* down: why */
	const char *halted;			/* no batch can run: why (NULL: runs) */
	zp_engine_counts counts;
};

#endif

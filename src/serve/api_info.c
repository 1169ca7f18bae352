/* api_info.c -- the endpoints about the server itself: GET /v1/models (the
   one model served), GET /health (200 once loaded, 503 with the loading
   progress before) and GET /metrics (Prometheus text, metrics.c). They read
   a zp_api_view the server filled; none runs the model; GET /version. Reactor
   thread. */
#include "api_info.h"

#include "endpoints.h"
#include "util.h"

int zp_api_models_build(zp_api_call *c)
{
	zp_buf *out = c->out;
	zp_buf_reset(out);
	zp_buf_puts(out, "{\"object\":\"list\",\"data\":[{\"id\":");
	zp_buf_json_str(out, c->a->model_name);
	zp_buf_printf(out, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"zprefill\","
		      "\"max_model_len\":%d}]}", c->a->lim.seq_tokens_max);
	return 200;
}

/* The executors out of service, as a JSON array; how many. */
static int executors_out(const zp_api_view *v, zp_buf *out)
{
	int n = 0;
	zp_buf_puts(out, "[");
	for (int x = 0; x < v->executors; x++) {
		if (v->exec_state[x] == ZP_ENGINE_EXEC_OK)
			continue;
		zp_buf_printf(out, "%s{\"executor\":%d,\"state\":", n++ ? "," : "", x);
		if (v->exec_state[x] == ZP_ENGINE_EXEC_DOWN) {
			zp_buf_puts(out, "\"down\",\"reason\":");
			zp_buf_json_str(out, v->exec_why[x]);
		} else {
			zp_buf_printf(out, "\"stalled\",\"reason\":\"no layer finished for %.1f s\","
				      "\"stalled_s\":%.1f", v->exec_still_s[x], v->exec_still_s[x]);
		}
		zp_buf_puts(out, "}");
	}
	zp_buf_puts(out, "]");
	return n;
}

/* Loaded: ok; degraded (200) while some executors are down or stalled and
   others serve; 503 once none makes progress, or no batch can run. */
static int health_ready(zp_api_call *c, const zp_api_view *v)
{
	zp_buf tail;
	char tb[8192];
	zp_buf_init_fixed(&tail, tb, sizeof tb);
	int out = executors_out(v, &tail);
	if (!out && !v->halted) {
		zp_buf_puts(c->out, "{\"status\":\"ok\"}");
		return 200;
	}
	bool none = out == v->executors || v->halted;
	zp_buf_printf(c->out, "{\"status\":\"%s\",", none ? "unavailable" : "degraded");
	if (none) {
		zp_buf_puts(c->out, "\"reason\":");
		zp_buf_json_str(c->out, v->halted ? v->halted : "no executor is making progress");
		zp_buf_puts(c->out, ",");
		c->reply->retry_after_s = 1;
	}
	zp_buf_printf(c->out, "\"executors\":%d,\"executors_up\":%d,\"executors_out\":%.*s}",
		      v->executors, v->executors - out, (int)tail.len, tail.p);
	return none ? ZP_HTTP_ERR_UNAVAILABLE : 200;
}

int zp_api_health_build(zp_api_call *c)
{
	const zp_api_view *v = c->view;
	ZP_ASSERT(v);
	zp_buf_reset(c->out);
	if (v->ready)
		return health_ready(c, v);
	zp_buf_printf(c->out, "{\"status\":\"loading\",\"layers_loaded\":%d,\"layers\":%d,"
		      "\"progress\":%.3f}", v->layers_done, v->layers ? v->layers : v->model_layers,
		      v->layers ? (double)v->layers_done / v->layers : 0.0);
	c->reply->retry_after_s = 1;
	return ZP_HTTP_ERR_UNAVAILABLE;
}

int zp_api_metrics_build(zp_api_call *c)
{
	const zp_api_view *v = c->view;
	ZP_ASSERT(v);
	zp_buf_reset(c->out);
	zp_metrics_render(v->met, v->sched, v->executors_busy, v->executors, c->out, v->now);
	zp_metrics_layers(c->out, v->lstats, v->executors, v->model_layers);
	if (v->sched)
		zp_metrics_executors(c->out, &v->counts, v->exec_state, v->executors);
	c->reply->content_type = "text/plain; version=0.0.4";
	return 200;
}

/* vLLM's GET /version: what answers (zprefill has no release numbers: its
   version is the commit it was built from, which /info does not know either). */
int zp_api_version_build(zp_api_call *c)
{
	zp_buf_reset(c->out);
	zp_buf_puts(c->out, "{\"version\":\"zprefill\"}");
	return 200;
}

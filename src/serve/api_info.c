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

int zp_api_health_build(zp_api_call *c)
{
	const zp_api_view *v = c->view;
	ZP_ASSERT(v);
	zp_buf_reset(c->out);
	if (v->ready) {
		zp_buf_puts(c->out, "{\"status\":\"ok\"}");
		return 200;
	}
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

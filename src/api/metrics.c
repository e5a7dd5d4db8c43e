/*
 * metrics.c - GET /metrics in the Prometheus text format (version 0.0.4).
 *
 * Names follow llama-server ("llamacpp:" prefix) where it has the metric,
 * vLLM ("vllm:") for the prefix cache, and "slm_" for the rest (HTTP
 * statuses, errors, streams, connections).
 */
#include <stdio.h>

#include "api/api_int.h"
#include "core/str.h"

static const int status_codes[API_STATUS_SLOTS - 1] = { 200, 204, 400, 401, 403, 404,
                                                        405, 413, 429, 500, 503 };

/* Index of status among the counted ones; the last slot is "other". */
size_t api__status_slot(int status)
{
    size_t i;

    for (i = 0; i < API_STATUS_SLOTS - 1; i++)
        if (status_codes[i] == status) return i;
    return API_STATUS_SLOTS - 1;
}

const char *api__status_label(size_t slot)
{
    static const char *const labels[API_STATUS_SLOTS] = {
        "200", "204", "400", "401", "403", "404", "405", "413", "429", "500", "503", "other"
    };

    return slot < API_STATUS_SLOTS ? labels[slot] : "other";
}

static int metric(struct slm_buf *out, const char *name, const char *type, const char *help,
                  double v)
{
    return slm_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type,
                          name, v);
}

/* Appends every metric to out; see api_int.h. */
int api__metrics_write(struct api *a, struct slm_buf *out)
{
    struct sched_stats st;
    struct http_server_stats hs;
    double kv_total, up_s;
    int rc = 0;
    size_t i;

    sched_get_stats(a->p.sched, &st);
    http_server_get_stats(a->p.server, &hs);
    kv_total = (double)st.n_slots * (double)st.n_ctx;
    up_s = (double)(slm_now_ns() - a->t_start_ns) / 1e9;

    rc |= metric(out, "llamacpp:prompt_tokens_total", "counter",
                 "Number of prompt tokens processed.", (double)st.n_prompt_tokens);
    rc |= metric(out, "llamacpp:prompt_seconds_total", "counter", "Prompt process time",
                 (double)st.t_prompt_ns / 1e9);
    rc |= metric(out, "llamacpp:tokens_predicted_total", "counter",
                 "Number of generation tokens processed.", (double)st.n_generated_tokens);
    rc |= metric(out, "llamacpp:tokens_predicted_seconds_total", "counter", "Predict process time",
                 (double)st.t_gen_ns / 1e9);
    rc |= metric(out, "llamacpp:n_decode_total", "counter", "Total number of model_decode() calls",
                 (double)st.n_decode_steps);
    rc |= metric(
        out, "llamacpp:prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.",
        st.t_prompt_ns > 0 ? (double)st.n_prompt_tokens * 1e9 / (double)st.t_prompt_ns : 0.0);
    rc |= metric(out, "llamacpp:predicted_tokens_seconds", "gauge",
                 "Average generation throughput in tokens/s.",
                 st.t_gen_ns > 0 ? (double)st.n_generated_tokens * 1e9 / (double)st.t_gen_ns : 0.0);
    rc |= metric(out, "llamacpp:requests_processing", "gauge", "Number of requests processing.",
                 (double)st.n_slots_busy);
    rc |= metric(out, "llamacpp:requests_deferred", "gauge", "Number of requests deferred.",
                 (double)st.n_queued);
    rc |= metric(out, "llamacpp:kv_cache_usage_ratio", "gauge",
                 "KV-cache usage. 1 means 100 percent usage.",
                 kv_total > 0 ? (double)st.n_kv_used / kv_total : 0.0);
    rc |=
        metric(out, "llamacpp:kv_cache_tokens", "gauge", "KV-cache tokens.", (double)st.n_kv_used);
    rc |= metric(out, "vllm:prefix_cache_queries_total", "counter",
                 "Prompt tokens looked up in the prefix cache.", (double)st.n_prompt_tokens);
    rc |= metric(out, "vllm:prefix_cache_hits_total", "counter",
                 "Prompt tokens found in the prefix cache.", (double)st.n_prompt_cached);
    rc |= metric(out, "vllm:num_requests_running", "gauge", "Requests in model execution.",
                 (double)st.n_slots_busy);
    rc |= metric(out, "vllm:num_requests_waiting", "gauge", "Requests waiting to be processed.",
                 (double)st.n_queued);
    rc |=
        metric(out, "slm_slots", "gauge", "Parallel sequences (server slots).", (double)st.n_slots);
    rc |= metric(out, "slm_requests_done_total", "counter", "Generation requests finished.",
                 (double)st.n_requests_done);
    rc |= metric(out, "slm_completions_failed_total", "counter",
                 "Completion requests that ended with an error.", (double)a->c.completions_failed);
    rc |= metric(out, "slm_requests_canceled_total", "counter",
                 "Requests canceled by a client disconnect or shutdown.", (double)a->c.canceled);
    rc |= metric(out, "slm_context_length_exceeded_total", "counter",
                 "Requests refused because the prompt does not fit the context.",
                 (double)a->c.context_exceeded);
    rc |= metric(out, "slm_queue_full_total", "counter",
                 "Requests refused because the queue was full.", (double)a->c.queue_full);
    rc |= metric(out, "slm_auth_failures_total", "counter",
                 "Requests refused for a missing or wrong API key.", (double)a->c.auth_failed);
    rc |= metric(out, "slm_streams_active", "gauge", "Streaming responses in progress.",
                 (double)a->c.streams_active);
    rc |= metric(out, "slm_http_connections", "gauge", "Open HTTP connections.",
                 (double)http_server_n_conns(a->p.server));
    rc |= metric(out, "slm_http_connections_accepted_total", "counter", "Connections accepted.",
                 (double)hs.accepted);
    rc |= metric(out, "slm_http_connections_refused_total", "counter",
                 "Connections refused over the connection cap.", (double)hs.refused);
    rc |= metric(out, "slm_http_timeouts_total", "counter", "Connections closed by a deadline.",
                 (double)hs.timeouts);
    rc |= metric(out, "slm_tls_handshake_failures_total", "counter", "Failed TLS handshakes.",
                 (double)hs.tls_failed);
    rc |= metric(out, "slm_uptime_seconds", "gauge", "Seconds since the server started.", up_s);
    rc |= slm_buf_append_str(out, "# HELP slm_http_requests_total HTTP responses by status.\n"
                                  "# TYPE slm_http_requests_total counter\n");
    for (i = 0; i < API_STATUS_SLOTS; i++)
        rc |= slm_buf_printf(out, "slm_http_requests_total{code=\"%s\"} %llu\n",
                             api__status_label(i), (unsigned long long)a->c.requests[i]);
    return rc < 0 ? SLM_ELIMIT : 0;
}

//! Prometheus metrics (`GET /metrics`, text format), recorded with the `metrics`
//! crate and rendered by `metrics-exporter-prometheus`.
//!
//! Not public by default: served on a separate listener at `METRICS_ADDR`, or on the
//! main port behind `Authorization: Bearer <METRICS_TOKEN>`; with neither, there is
//! no `/metrics`. The recorder is process-wide (that is how the `metrics` crate
//! works): it is installed once, and recording before that is a no-op.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// GraphQL operations, by operation name and outcome code.
pub const REQUESTS: &str = "cortex_graphql_requests_total";
/// GraphQL operation duration, seconds.
pub const REQUEST_SECONDS: &str = "cortex_graphql_request_duration_seconds";
/// SQL statements per GraphQL operation.
pub const STATEMENTS: &str = "cortex_graphql_sql_statements";
/// Keys per dataloader batch, by loader.
pub const LOADER_BATCH: &str = "cortex_dataloader_batch_size";
/// Time spent waiting for a pooled connection, seconds.
pub const POOL_WAIT_SECONDS: &str = "cortex_db_pool_wait_seconds";
/// Connections in the pool, idle connections, and callers waiting for one.
pub const POOL_CONNECTIONS: &str = "cortex_db_pool_connections";
/// Idle connections in the pool.
pub const POOL_IDLE: &str = "cortex_db_pool_idle_connections";
/// Callers waiting for a connection right now.
pub const POOL_WAITERS: &str = "cortex_db_pool_waiters";
/// Database errors, by the code clients see.
pub const DB_ERRORS: &str = "cortex_db_errors_total";
/// Subscriptions open on this instance.
pub const SUBSCRIPTIONS_OPEN: &str = "cortex_subscriptions_open";
/// Subscriptions ended because their client fell behind.
pub const SUBSCRIPTIONS_LAGGED: &str = "cortex_subscriptions_lagged_total";
/// Events read from the outbox by this instance.
pub const EVENTS_READ: &str = "cortex_events_read_total";
/// Requests of queries by where they read, with replicas configured (`target`:
/// `replica`, `primary` when none qualified, `primary_retry` after a replica failed).
pub const READ_TARGET: &str = "cortex_db_read_target_total";
/// Replicas serving reads now.
pub const REPLICAS_SERVING: &str = "cortex_db_replicas_serving";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(STATEMENTS.into()),
                        &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 12.0, 20.0, 50.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(LOADER_BATCH.into()),
                        &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0],
                    )
                })
                .expect("valid buckets");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (a host embedding this
            // library): then ours only renders what it recorded, which is nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// An operation name usable as a label: GraphQL names only, at most 64
/// characters; anything else (and anonymous operations) is `-`, so clients cannot
/// create unbounded label values with junk names.
pub fn operation_label(name: Option<&str>) -> String {
    match name {
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !n.as_bytes()[0].is_ascii_digit() =>
        {
            n.to_string()
        }
        _ => "-".to_string(),
    }
}

/// Records one finished GraphQL operation.
pub fn record_operation(operation: &str, outcome: &str, duration: Duration, statements: u64) {
    let labels = [
        ("operation", operation.to_string()),
        ("outcome", outcome.to_string()),
    ];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(REQUEST_SECONDS, &labels).record(duration.as_secs_f64());
    metrics::histogram!(STATEMENTS).record(statements as f64);
}

/// Records the size of one dataloader batch.
pub fn record_batch(loader: &'static str, keys: usize) {
    metrics::histogram!(LOADER_BATCH, "loader" => loader).record(keys as f64);
}

/// Records the pool's state (at scrape time) from bb8's counters.
pub fn record_pool(state: &bb8::State) {
    metrics::gauge!(POOL_CONNECTIONS).set(f64::from(state.connections));
    metrics::gauge!(POOL_IDLE).set(f64::from(state.idle_connections));
    let s = &state.statistics;
    let finished = s.get_direct + s.get_waited + s.get_timed_out;
    metrics::gauge!(POOL_WAITERS).set(s.get_started.saturating_sub(finished) as f64);
}

/// `GET /metrics` on the main port: only with `Authorization: Bearer <METRICS_TOKEN>`.
pub async fn metrics_with_token(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let expected = state
        .config
        .metrics_token
        .as_ref()
        .map(|t| format!("Bearer {}", t.expose()));
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let allowed = match (expected, given) {
        // Compared in constant time: the token is a secret.
        (Some(expected), Some(given)) => {
            expected.len() == given.len()
                && expected
                    .bytes()
                    .zip(given.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        }
        _ => false,
    };
    if !allowed {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            "metrics need `Authorization: Bearer <METRICS_TOKEN>`\n",
        )
            .into_response();
    }
    render(&state)
}

/// `GET /metrics` on the `METRICS_ADDR` listener.
pub async fn metrics_open(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
) -> axum::response::Response {
    render(&state)
}

fn render(state: &crate::AppState) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(handle) = &state.metrics else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    record_pool(&state.db.pool().state());
    handle.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_labels_are_bounded_graphql_names() {
        assert_eq!(operation_label(Some("MyWorkspaces")), "MyWorkspaces");
        assert_eq!(operation_label(None), "-");
        assert_eq!(operation_label(Some("")), "-");
        assert_eq!(operation_label(Some("a\"b")), "-");
        assert_eq!(operation_label(Some("1abc")), "-");
        assert_eq!(operation_label(Some(&"x".repeat(65))), "-");
    }
}

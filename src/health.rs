//! `GET /health`: 200 when the database answers, 503 with the reason when not.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

/// How long the health check waits for the database.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Reports whether the server can reach its database (the primary), and how
/// many replicas serve reads when there are any (none serving is not an outage:
/// the primary answers their reads).
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (status, Json(mut body)) = primary_health(&state).await;
    if let Some(replicas) = &state.replicas {
        body["replicas"] =
            json!({"configured": replicas.configured(), "serving": replicas.serving()});
    }
    (status, Json(body))
}

async fn primary_health(state: &AppState) -> (StatusCode, Json<Value>) {
    let pool = state.db.pool().state();
    let pool_json = json!({"connections": pool.connections, "idle": pool.idle_connections});
    match tokio::time::timeout(HEALTH_TIMEOUT, state.db.check()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": "ok", "pool": pool_json})),
        ),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "unavailable", "database": e.to_string(), "code": e.code(), "pool": pool_json}),
            ),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "unavailable", "database": "the database did not answer in time", "code": "TIMEOUT", "pool": pool_json}),
            ),
        ),
    }
}

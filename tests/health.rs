//! `GET /health` over real HTTP.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{HttpServer, TestDb};

async fn get_health(state: cortex::AppState) -> (StatusCode, serde_json::Value) {
    let server = HttpServer::start(state).await;
    let (status, _, bytes) = server
        .send(Request::get("/health").body(Body::empty()).unwrap())
        .await;
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn health_is_ok_when_the_database_answers() {
    let db = TestDb::new().await;
    let (status, body) = get_health(cortex::AppState::new(
        db.pool().await,
        db.config(),
        b"test-secret",
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn health_is_503_with_a_reason_when_the_database_is_unreachable() {
    let config = cortex::config::PoolConfig {
        timeout: std::time::Duration::from_secs(1),
        ..common::test_pool_config()
    };
    let pool =
        cortex::db::Database::connect("postgresql://x@localhost/none?host=/nonexistent", &config)
            .await
            .unwrap();
    let app_config = cortex::config::Config::from_lookup(|_| None).unwrap();
    let (status, body) = get_health(cortex::AppState::new(pool, app_config, b"test-secret")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["code"], "UNAVAILABLE");
    assert!(body["database"].as_str().unwrap().contains("unavailable"));
}

//! What operators see: statements slower than `DB_SLOW_MS` are logged with their
//! duration (and without their bound values), and fast ones are not.

mod common;

use common::{metric_value as value, scrape_metrics as scrape};

use std::io::Write;
use std::sync::{Arc, Mutex};

use diesel_async::RunQueryDsl;

/// A log writer the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn statements_slower_than_db_slow_ms_are_logged_with_their_duration() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let db = common::TestDb::new().await;
    let config = cortex::config::PoolConfig {
        slow: Some(std::time::Duration::from_millis(100)),
        ..common::test_pool_config()
    };
    let pool = cortex::db::Database::connect(&db.url, &config)
        .await
        .unwrap();
    let mut conn = pool.conn(None).await.unwrap();
    diesel::sql_query("SELECT 42")
        .execute(&mut *conn)
        .await
        .unwrap();
    diesel::sql_query("SELECT pg_sleep($1), $2")
        .bind::<diesel::sql_types::Double, _>(0.2)
        .bind::<diesel::sql_types::Text, _>("private user text")
        .execute(&mut *conn)
        .await
        .unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let slow: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("slow statement"))
        .collect();
    assert_eq!(slow.len(), 1, "{log}");
    assert!(slow[0].contains("pg_sleep"), "{log}");
    assert!(slow[0].contains("duration_ms="), "{log}");
    assert!(
        !log.contains("private user text"),
        "bound values are not logged: {log}"
    );
    let ms: f64 = slow[0]
        .split("duration_ms=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a duration");
    assert!((200.0..5_000.0).contains(&ms), "{ms} ms for a 200 ms sleep");
}

#[tokio::test]
async fn metrics_are_served_only_with_the_metrics_token_and_parse_as_prometheus_text() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    let api = common::Api::with_env(&[("METRICS_TOKEN", "metrics-secret")]).await;
    api.ok(
        "alice",
        "mutation { createWorkspaceWithConversation(workspace: {name: \"w\"}, conversation: {topic: \"t\"}) { workspace { id } } }",
        serde_json::json!({}),
    )
    .await;
    for _ in 0..3 {
        api.ok(
            "alice",
            "query Mine { workspaces { nodes { conversations { nodes { messages { totalCount } } } } } }",
            serde_json::json!({}),
        )
        .await;
    }
    let get = |auth: Option<&'static str>| {
        let mut request = Request::get("/metrics");
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        request.body(Body::empty()).unwrap()
    };
    for refused in [None, Some("Bearer wrong"), Some("Bearer metrics-secre")] {
        let (status, _, _) = api.send(get(refused)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused:?}");
    }
    let (status, headers, body) = api.send(get(Some("Bearer metrics-secret"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(body).unwrap();
    let scrape = scrape(&text);
    let mine = [("operation", "Mine"), ("outcome", "OK")];
    assert!(
        value(&scrape, "cortex_graphql_requests_total", &mine) >= Some(3.0),
        "{text}"
    );
    assert!(
        value(&scrape, "cortex_graphql_request_duration_seconds", &mine) >= Some(3.0),
        "{text}"
    );
    assert!(
        value(&scrape, "cortex_graphql_sql_statements", &[]) >= Some(4.0),
        "{text}"
    );
    for loader in ["ConversationPageKey", "MessageCountKey"] {
        assert!(
            value(
                &scrape,
                "cortex_dataloader_batch_size",
                &[("loader", loader)]
            ) >= Some(3.0),
            "{loader}: {text}"
        );
    }
    assert!(
        value(&scrape, "cortex_db_pool_wait_seconds", &[]) >= Some(1.0),
        "{text}"
    );
    for gauge in [
        "cortex_db_pool_connections",
        "cortex_db_pool_idle_connections",
        "cortex_db_pool_waiters",
    ] {
        assert!(value(&scrape, gauge, &[]).is_some(), "{gauge}: {text}");
    }

    // Without METRICS_TOKEN (or METRICS_ADDR) there is no /metrics at all.
    let closed = common::Api::new().await;
    let (status, _, _) = closed.send(get(Some("Bearer metrics-secret"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_addr_serves_metrics_on_a_separate_listener() {
    let db = common::TestDb::new().await;
    let served = common::serve_until_listening(common::cortex_command(&[
        ("DATABASE_URL", db.url.as_str()),
        ("PORT", "0"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("JWT_SECRET", "metrics-addr-secret-0123456789"),
    ]));
    let metrics = served
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("Metrics: "))
        .expect("the metrics address is printed")
        .trim()
        .to_string();
    let (mut child, base) = (served.child, served.base);
    let client = reqwest::Client::new();
    let token = cortex::auth::Authenticator::new(b"metrics-addr-secret-0123456789")
        .mint("alice", None, None, 60);
    client
        .post(format!("{base}/graphql"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"query": "query Me { me { id } }", "operationName": "Me"}))
        .send()
        .await
        .unwrap();
    let text = client
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = scrape(&text);
    assert_eq!(
        value(
            &scrape,
            "cortex_graphql_requests_total",
            &[("operation", "Me"), ("outcome", "OK")]
        ),
        Some(1.0),
        "{text}"
    );
    // The main port does not serve it.
    let status = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

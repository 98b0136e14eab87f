//! Faults around the server: PostgreSQL stopped and restarted under a stream of
//! writes (fast `UNAVAILABLE`, `/health` 503, recovery without a restart, every
//! acknowledged write kept and no half-written one), and a graceful shutdown with
//! a request in flight.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{code, HttpServer, PrivateCluster};
use cortex::auth::Authenticator;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};

const SECRET: &[u8] = b"resilience-test-secret-0123456789";
const DATABASE: &str = "cortex_outage";

/// A cluster of this test's own, durable (writes must survive its stop).
fn private_cluster() -> PrivateCluster {
    PrivateCluster::new("outage-pg", &["fsync = on"])
}

#[derive(diesel::QueryableByName, Debug)]
struct WrittenWorkspace {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    conversations: i64,
}

const WRITE: &str = "mutation($n: String!) { createWorkspaceWithConversation(workspace: {name: $n}, conversation: {topic: \"first\"}) { workspace { id } conversation { id } } }";

#[derive(Debug, Clone)]
enum Outcome {
    Acknowledged,
    Failed(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_fast_then_service_resumes_with_no_lost_writes() {
    let private = private_cluster();
    let cluster = private.start().await;
    let url = PrivateCluster::fresh_database(&cluster, DATABASE).await;
    let config = cortex::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "DB_POOL_TIMEOUT" => Some("2".into()),
        "DB_POOL_SIZE" => Some("4".into()),
        _ => None,
    })
    .unwrap();
    let db = cortex::db::Database::connect(&url, &config.pool)
        .await
        .unwrap();
    let server = Arc::new(HttpServer::start(cortex::AppState::new(db, config, SECRET)).await);
    let token = Authenticator::new(SECRET).mint("writer", None, None, 3600);
    let gql = {
        let (server, token) = (server.clone(), token.clone());
        move |query: &'static str, variables: Value| {
            let (server, token) = (server.clone(), token.clone());
            async move {
                let request = common::graphql_post(
                    Some(&token),
                    &json!({"query": query, "variables": variables}),
                );
                let (status, _, body) = server.send(request).await;
                (status, serde_json::from_slice::<Value>(&body).unwrap())
            }
        }
    };
    let health = {
        let server = server.clone();
        move || {
            let server = server.clone();
            async move {
                server
                    .send(Request::get("/health").body(Body::empty()).unwrap())
                    .await
                    .0
            }
        }
    };
    assert_eq!(health().await, StatusCode::OK);

    // Two writers, each creating a workspace with its first conversation in a loop.
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<(String, Outcome)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..2 {
        let (stop, outcomes, gql) = (stop.clone(), outcomes.clone(), gql.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !AtomicBool::load(&stop, Ordering::Relaxed) {
                let name = format!("w{w}-{i}");
                let (_, r) = gql(WRITE, json!({"n": name})).await;
                let outcome = if r["data"]["createWorkspaceWithConversation"]["workspace"]["id"]
                    .is_string()
                {
                    Outcome::Acknowledged
                } else {
                    Outcome::Failed(code(&r).to_string())
                };
                outcomes.lock().unwrap().push((name, outcome));
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // PostgreSQL goes away: requests fail fast with UNAVAILABLE, /health is 503.
    PrivateCluster::stop(cluster).await;
    for _ in 0..3 {
        let started = Instant::now();
        let (_, r) = gql("{ workspaces { totalCount } }", json!({})).await;
        assert_eq!(code(&r), "UNAVAILABLE", "{r:#}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}, over DB_POOL_TIMEOUT",
            started.elapsed()
        );
        assert_eq!(health().await, StatusCode::SERVICE_UNAVAILABLE);
    }

    // It comes back: service resumes by itself within seconds.
    let cluster = private.start().await;
    let back = Instant::now();
    loop {
        let (_, r) = gql("{ workspaces { totalCount } }", json!({})).await;
        if r["data"]["workspaces"]["totalCount"].is_number() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no recovery: {r:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health().await, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    // Every acknowledged write is there, each with its conversation; a write that
    // failed left nothing half-written (it may have committed just before the
    // connection died, but then whole).
    let mut conn = cortex::db::connect_once(&url).await.unwrap();
    let written: Vec<WrittenWorkspace> = diesel::sql_query(
        "SELECT w.name, count(c.id) AS conversations FROM workspaces w
           LEFT JOIN conversations c ON c.workspace_id = w.id GROUP BY w.name",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let outcomes = outcomes.lock().unwrap().clone();
    let acknowledged: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Acknowledged))
        .map(|(n, _)| n)
        .collect();
    let failed: Vec<(&String, &String)> = outcomes
        .iter()
        .filter_map(|(n, o)| match o {
            Outcome::Failed(code) => Some((n, code)),
            Outcome::Acknowledged => None,
        })
        .collect();
    assert!(
        acknowledged.len() > 20,
        "the writers wrote before and after"
    );
    assert!(!failed.is_empty(), "the outage was seen by the writers");
    for (name, code) in &failed {
        assert!(
            ["UNAVAILABLE", "TIMEOUT"].contains(&code.as_str()),
            "{name} failed with {code}"
        );
    }
    for w in &written {
        assert_eq!(w.conversations, 1, "half-written: {w:?}");
    }
    for name in &acknowledged {
        assert!(
            written.iter().any(|w| &&w.name == name),
            "acknowledged write {name} is lost"
        );
    }
    for w in &written {
        assert!(
            acknowledged.contains(&&w.name) || failed.iter().any(|(n, _)| **n == w.name),
            "{} was never sent",
            w.name
        );
    }
    drop(conn);
    PrivateCluster::stop(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_then_stops() {
    let db = common::TestDb::new().await;
    let secret = "shutdown-test-secret-0123456789abcdef";
    let mut command = common::cortex_command(&[
        ("DATABASE_URL", db.url.as_str()),
        ("PORT", "0"),
        ("JWT_SECRET", secret),
    ]);
    command.arg("serve");
    let common::Served {
        mut child, base, ..
    } = common::serve_until_listening(command);
    let token = Authenticator::new(secret.as_bytes()).mint("alice", None, None, 3600);
    let client = reqwest::Client::new();
    let send = |query: &str| {
        client
            .post(format!("{base}/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": query }))
            .send()
    };
    send("mutation { createWorkspaceWithConversation(workspace: {name: \"w\"}, conversation: {topic: \"t\"}) { workspace { id } } }")
        .await
        .unwrap();

    // A request held in flight: its message count waits on a lock this test holds.
    let mut lock = db.conn().await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut lock,
        "BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE",
    )
    .await
    .unwrap();
    let in_flight = tokio::spawn(send(
        "{ workspaces { nodes { conversations { nodes { messages { totalCount } } } } } }",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!in_flight.is_finished(), "the request was still waiting");
    diesel_async::SimpleAsyncConnection::batch_execute(&mut lock, "COMMIT")
        .await
        .unwrap();

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["data"]["workspaces"]["nodes"][0]["conversations"]["nodes"][0]["messages"]
            ["totalCount"],
        0,
        "{body:#}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "cortex did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "cortex exited with {status}");
    assert!(send("{ me { id } }").await.is_err(), "no longer accepting");
}

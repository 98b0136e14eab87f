//! How long should a dataloader wait to collect keys? Runs the README's nested
//! query (10 workspaces × 10 conversations × last 20 messages with sender) against
//! a private PostgreSQL for several `LOADER_DELAY_US` values and prints latency,
//! throughput and SQL statements per request for each.
//!
//! `cargo bench --bench loader_delay` (results go to `bench/RESULTS.md` by hand).
//! The client runs in the same process as the server, so absolute figures are
//! pessimistic; compare the rows of one run with each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cortex::config::Config;
use cortex::db::cluster::{ClusterOptions, EmbeddedCluster};
use cortex::db::{connect_once, Database};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use serde_json::{json, Value};

const DELAYS_US: [u64; 7] = [0, 10, 50, 100, 200, 500, 1000];

const OWNERS: usize = 10;
const CONCURRENCY: usize = 32;
const CONCURRENT_REQUESTS: usize = 2000;
const SECRET: &[u8] = b"loader-delay-bench-secret-0123456789";
/// The README's nested query: 2,000 messages per response.
const NESTED: &str = "{ workspaces(first: 10) { nodes { name conversations(first: 10) { nodes { topic messages(last: 20) { nodes { content timestamp sender { name } } } } } } } }";
/// The same four levels with small pages: the delay is paid once per level, so it
/// shows most where the rest of the request is cheap.
const SMALL: &str = "{ workspaces(first: 3) { nodes { name conversations(first: 2) { nodes { topic messages(last: 2) { nodes { content sender { name } } } } } } } }";

/// 10 owners × 10 workspaces × 10 conversations × 20 messages, made in SQL.
const DATASET: &str = r#"
INSERT INTO users (user_id, name, email)
  SELECT 'owner' || o, 'Owner ' || o, 'owner' || o || '@example.com' FROM generate_series(1, 10) o;
INSERT INTO workspaces (name, owner_id, metadata, created_at)
  SELECT 'workspace ' || o || '-' || w, 'owner' || o, jsonb_build_object('tier', CASE WHEN w % 3 = 0 THEN 'gold' ELSE 'free' END),
         timestamptz '2026-01-01' + make_interval(mins => o * 100 + w)
  FROM generate_series(1, 10) o, generate_series(1, 10) w;
INSERT INTO conversations (workspace_id, topic, participant_ids, created_at)
  SELECT w.id, 'topic ' || c, ARRAY[w.owner_id], w.created_at + make_interval(secs => c)
  FROM workspaces w, generate_series(1, 10) c;
INSERT INTO messages (conversation_id, sender_id, content, "timestamp")
  SELECT c.id, c.participant_ids[1], 'message number ' || m || ' about ' || c.topic, c.created_at + make_interval(secs => m)
  FROM conversations c, generate_series(1, 20) m;
"#;

struct Figures {
    p50: Duration,
    p99: Duration,
    per_second: f64,
    db_ms: f64,
    statements: (u64, u64),
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One request: its latency, SQL statement count and database time.
async fn run(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
) -> (Duration, u64, f64) {
    let started = Instant::now();
    let response: Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON response");
    let elapsed = started.elapsed();
    assert!(response.get("errors").is_none(), "{response}");
    let workspaces = response["data"]["workspaces"]["nodes"].as_array().unwrap();
    assert!(!workspaces.is_empty(), "dataset not loaded");
    let cost = &response["extensions"]["cost"];
    let statements = cost["sqlStatements"]
        .as_u64()
        .expect("extensions.cost (embedded default)");
    (
        elapsed,
        statements,
        cost["dbTimeMs"].as_f64().unwrap_or(0.0),
    )
}

async fn measure(base: &str, tokens: &[String], query: &'static str, serial: usize) -> Figures {
    let client = reqwest::Client::new();
    for token in tokens {
        run(&client, base, token, query).await; // warm-up: users cached, pool filled
    }
    let mut latencies = Vec::with_capacity(serial);
    let mut statements = (u64::MAX, 0);
    let mut db_ms = 0.0;
    for i in 0..serial {
        let (elapsed, count, db) = run(&client, base, &tokens[i % tokens.len()], query).await;
        latencies.push(elapsed);
        db_ms += db;
        statements = (statements.0.min(count), statements.1.max(count));
    }
    latencies.sort();

    let started = Instant::now();
    let tokens = Arc::new(tokens.to_vec());
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let (client, base, tokens) = (client.clone(), base.to_string(), tokens.clone());
            tokio::spawn(async move {
                let mut range = (u64::MAX, 0);
                for i in (w..CONCURRENT_REQUESTS).step_by(CONCURRENCY) {
                    let (_, count, _) = run(&client, &base, &tokens[i % tokens.len()], query).await;
                    range = (range.0.min(count), range.1.max(count));
                }
                range
            })
        })
        .collect();
    for worker in workers {
        let range = worker.await.unwrap();
        statements = (statements.0.min(range.0), statements.1.max(range.1));
    }
    Figures {
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        per_second: CONCURRENT_REQUESTS as f64 / started.elapsed().as_secs_f64(),
        db_ms: db_ms / serial as f64,
        statements,
    }
}

fn main() -> anyhow::Result<()> {
    let mut options = ClusterOptions::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-pg"),
    );
    options.extra_settings = vec!["fsync = off".into(), "synchronous_commit = off".into()];
    let cluster = EmbeddedCluster::start(&options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut admin = connect_once(&cluster.database_url("postgres")).await?;
        diesel::sql_query("DROP DATABASE IF EXISTS cortex_bench_loader_delay WITH (FORCE)")
            .execute(&mut admin)
            .await?;
        diesel::sql_query("CREATE DATABASE cortex_bench_loader_delay")
            .execute(&mut admin)
            .await?;
        let url = cluster.database_url("cortex_bench_loader_delay");
        cortex::db::migrations::run_pending(&url).await?;
        let mut conn = connect_once(&url).await?;
        conn.batch_execute(DATASET).await?;
        conn.batch_execute("VACUUM ANALYZE").await?; // alone: not in the script's transaction

        let auth = cortex::auth::Authenticator::new(SECRET);
        let tokens: Vec<String> = (1..=OWNERS)
            .map(|o| auth.mint(&format!("owner{o}"), None, None, 3600))
            .collect();
        println!("{OWNERS} owners; serial: requests one at a time; concurrent: {CONCURRENT_REQUESTS} requests over {CONCURRENCY} clients");
        for (name, query, serial) in [("small (3 × 2 × 2)", SMALL, 2000), ("nested (10 × 10 × 20)", NESTED, 300)] {
            println!("\n{name}: {query}\n");
            println!("| LOADER_DELAY_US | serial p50 | serial p99 | serial DB time | concurrent req/s | SQL statements per request (min–max) |");
            println!("|---:|---:|---:|---:|---:|---:|");
            for delay in DELAYS_US {
                let mut config = Config::from_lookup(|_| None)?; // embedded: cost in extensions
                config.loader_delay = Duration::from_micros(delay);
                config.pool.size = CONCURRENCY as u32;
                let db = Database::connect(&url, &config.pool).await?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let base = format!("http://{}", listener.local_addr()?);
                let app = cortex::router(cortex::AppState::new(db, config, SECRET));
                let server = tokio::spawn(async move { axum::serve(listener, app).await });
                let f = measure(&base, &tokens, query, serial).await;
                server.abort();
                println!(
                    "| {delay} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {}–{} |",
                    f.p50.as_secs_f64() * 1e3,
                    f.p99.as_secs_f64() * 1e3,
                    f.db_ms,
                    f.per_second,
                    f.statements.0,
                    f.statements.1
                );
            }
        }
        anyhow::Ok(())
    })?;
    cluster.stop()?;
    Ok(())
}

//! Hostile documents against a running Cortex while another client measures
//! `/health`: what each one costs the server, and whether anyone else notices.
//!
//! `cargo bench --bench hostile` (results go to `bench/RESULTS.md` by hand).
//! Three tables: the catalogue at the default settings (the limits and the CPU
//! budget on), the same with the budget off and the selection limit at its
//! maximum (what the limits alone hold back), and the CPU the costliest
//! legitimate requests use (what the default budget must leave room for).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cortex::config::Config;
use cortex::db::cluster::{ClusterOptions, EmbeddedCluster};
use cortex::db::{connect_once, Database};
use diesel_async::SimpleAsyncConnection;
use serde_json::{json, Value};

#[path = "../tests/common/bombs.rs"]
mod bombs;
use bombs::{bomb, chain, inline, plain, with_directive};

const SECRET: &[u8] = b"hostile-bench-secret-0123456789abcdef";
const REPEAT: usize = 5;

/// One owner: 10 workspaces × 10 conversations × 100 messages.
const DATASET: &str = r#"
INSERT INTO users (user_id, name, email) VALUES ('owner', 'Owner', 'owner@example.com');
INSERT INTO workspaces (name, owner_id, created_at)
  SELECT 'workspace ' || w, 'owner', timestamptz '2026-01-01' + make_interval(mins => w)
  FROM generate_series(1, 10) w;
INSERT INTO conversations (workspace_id, topic, participant_ids, created_at)
  SELECT w.id, 'topic ' || c, ARRAY['owner'], w.created_at + make_interval(secs => c)
  FROM workspaces w, generate_series(1, 10) c;
INSERT INTO messages (conversation_id, sender_id, content, "timestamp")
  SELECT c.id, 'owner', 'message number ' || m || ' about ' || c.topic, c.created_at + make_interval(secs => m)
  FROM conversations c, generate_series(1, 100) m;
"#;

/// `selection` under 10 workspaces × 10 conversations × 100 messages.
fn under_messages(selection: &str, fragments: &str) -> String {
    format!(
        "{{ workspaces(first: 10) {{ nodes {{ conversations(first: 10) {{ nodes {{ messages(first: 100) {{ nodes {{ {selection} }} }} }} }} }} }} }} {fragments}"
    )
}

fn catalogue() -> Vec<(String, String)> {
    let typenames = bomb("", "Message", 10, plain, "__typename");
    let message_fragments = typenames.trim_start().trim_start_matches("{ ...F0 }");
    let aliases: Vec<String> = (0..1000).map(|i| format!("a{i}: __typename")).collect();
    let duplicates = "__typename ".repeat(3000);
    vec![
        (
            "spread bomb, 24 levels".into(),
            bomb("", "Query", 24, plain, "__typename"),
        ),
        (
            "spread bomb, 30 levels".into(),
            bomb("", "Query", 30, plain, "__typename"),
        ),
        (
            "spread bomb, 64 levels".into(),
            bomb("", "Query", 64, plain, "__typename"),
        ),
        (
            "inline-fragment bomb, 12 levels".into(),
            bomb("", "Query", 12, inline, "__typename"),
        ),
        (
            "directive bomb, 24 levels".into(),
            bomb("", "Query", 24, with_directive, "__typename"),
        ),
        (
            "field bomb (`me { userId }`), 24 levels".into(),
            bomb("", "Query", 24, plain, "me { userId }"),
        ),
        (
            "mutation-root bomb, 24 levels".into(),
            bomb("mutation", "Mutation", 24, plain, "__typename"),
        ),
        (
            "subscription-root bomb, 30 levels".into(),
            bomb("subscription", "Subscription", 30, plain, "__typename"),
        ),
        (
            "fragment cycle".into(),
            "{ ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A ...A }".into(),
        ),
        ("chain of 1,100 fragments".into(), chain(1100)),
        (
            "1,000 aliases".into(),
            format!("{{ {} }}", aliases.join(" ")),
        ),
        (
            "3,000 duplicate fields".into(),
            format!("{{ {duplicates} }}"),
        ),
        (
            "3,070 `__typename` per message × 10,000 messages".into(),
            under_messages("...F0", message_fragments),
        ),
    ]
}

fn legitimate() -> Vec<(String, String)> {
    let introspection = include_str!("../tests/fixtures/introspection.graphql").to_string();
    vec![
        ("standard introspection".into(), introspection),
        (
            "README nested (10 × 10 × 20, sender)".into(),
            "{ workspaces(first: 10) { nodes { name conversations(first: 10) { nodes { topic messages(last: 20) { nodes { content timestamp sender { name } } } } } } } }".into(),
        ),
        (
            "10,000 messages: 10 × 10 × 100 (complexity 40,110)".into(),
            under_messages("id content timestamp", ""),
        ),
    ]
}

struct Outcome {
    wall: Vec<Duration>,
    cpu_ms: Option<f64>,
    answer: String,
}

async fn post(client: &reqwest::Client, base: &str, token: &str, query: &str) -> (Duration, Value) {
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
    (started.elapsed(), response)
}

async fn run_one(client: &reqwest::Client, base: &str, token: &str, query: &str) -> Outcome {
    let mut wall = Vec::new();
    let (mut cpu_ms, mut answer) = (None, String::new());
    for _ in 0..REPEAT {
        let (took, response) = post(client, base, token, query).await;
        wall.push(took);
        cpu_ms = response["extensions"]["cost"]["cpuMs"].as_f64();
        let error = &response["errors"][0]["extensions"];
        answer = match (error["code"].as_str(), error["limit"].as_str()) {
            (None, _) => "data".into(),
            (Some(code), Some(limit)) => format!("{code} ({limit})"),
            (Some(code), None) => code.into(),
        };
        if took > Duration::from_secs(2) {
            break; // once is enough to know
        }
    }
    wall.sort();
    Outcome {
        wall,
        cpu_ms,
        answer,
    }
}

/// Polls `/health` every 2 ms until stopped: sorted latencies and failures.
fn watch_health(
    base: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<Duration>, usize)> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let (mut latencies, mut failed) = (Vec::new(), 0);
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let ok = client
                .get(format!("{base}/health"))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            latencies.push(started.elapsed());
            failed += usize::from(!ok);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.sort();
        (latencies, failed)
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn table(
    url: &str,
    token: &str,
    env: &[(&str, &str)],
    documents: &[(String, String)],
) -> anyhow::Result<()> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config =
        Config::from_lookup(move |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))?;
    let db = Database::connect(url, &config.pool).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = cortex::router(cortex::AppState::new(db, config, SECRET));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    post(&client, &base, token, "{ me { userId } }").await; // warm-up

    let stop = Arc::new(AtomicBool::new(false));
    let idle = watch_health(base.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (idle, _) = idle.await?;

    let stop = Arc::new(AtomicBool::new(false));
    let health = watch_health(base.clone(), stop.clone());
    println!("| document | bytes | answer | wall median | wall max | server CPU (`cost.cpuMs`) |");
    println!("|---|---:|---|---:|---:|---:|");
    for (name, query) in documents {
        let o = run_one(&client, &base, token, query).await;
        println!(
            "| {name} | {} | {} | {} ms | {} ms | {} |",
            query.len(),
            o.answer,
            ms(o.wall[o.wall.len() / 2]),
            ms(o.wall[o.wall.len() - 1]),
            o.cpu_ms.map_or("—".into(), |c| format!("{c:.2} ms")),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (busy, failed) = health.await?;
    println!(
        "\n`/health` meanwhile: {} probes, {failed} failed; p50 {} ms, p99 {} ms, max {} ms (idle before: p50 {} ms, max {} ms)\n",
        busy.len(),
        ms(percentile(&busy, 0.5)),
        ms(percentile(&busy, 0.99)),
        ms(busy[busy.len() - 1]),
        ms(percentile(&idle, 0.5)),
        ms(idle[idle.len() - 1]),
    );
    server.abort();
    Ok(())
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
        use diesel_async::RunQueryDsl;
        let mut admin = connect_once(&cluster.database_url("postgres")).await?;
        diesel::sql_query("DROP DATABASE IF EXISTS cortex_bench_hostile WITH (FORCE)")
            .execute(&mut admin)
            .await?;
        diesel::sql_query("CREATE DATABASE cortex_bench_hostile")
            .execute(&mut admin)
            .await?;
        let url = cluster.database_url("cortex_bench_hostile");
        cortex::db::migrations::run_pending(&url).await?;
        let mut conn = connect_once(&url).await?;
        conn.batch_execute(DATASET).await?;
        conn.batch_execute("VACUUM ANALYZE").await?;
        let token = cortex::auth::Authenticator::new(SECRET).mint("owner", None, None, 3600);

        println!("## At the default settings (limits and CPU budget on)\n");
        table(&url, &token, &[], &catalogue()).await?;
        println!("## CPU budget off, QUERY_MAX_SELECTIONS at its maximum (1,000,000)\n");
        let loose = [
            ("QUERY_CPU_BUDGET_MS", "0"),
            ("QUERY_MAX_SELECTIONS", "1000000"),
        ];
        let mut expanding = catalogue();
        expanding.insert(
            0,
            (
                "spread bomb, 18 levels (786,431 selections)".into(),
                bomb("", "Query", 18, plain, "__typename"),
            ),
        );
        table(&url, &token, &loose, &expanding).await?;
        println!(
            "## Legitimate requests (budget off): what the default budget must leave room for\n"
        );
        table(&url, &token, &[("QUERY_CPU_BUDGET_MS", "0")], &legitimate()).await?;
        anyhow::Ok(())
    })?;
    cluster.stop()?;
    Ok(())
}

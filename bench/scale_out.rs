//! The scale-out benchmark: `cargo bench --bench scale_out`.
//!
//! One mixed workload (45 % nested pages, 45 % point reads, 10 % `sendMessage`,
//! every request for one of 200 owners) from a round-robin client (each request
//! to the next instance) at a fixed concurrency, over four topologies on the same
//! data:
//!
//! 1. one `cortex serve` on the primary (the baseline);
//! 2. two instances on the primary;
//! 3. two instances reading from a streaming standby (`DATABASE_REPLICA_URLS`);
//! 4. two instances on the primary with `DB_PREPARED_STATEMENTS=false` (what the
//!    mode costs without a pooler);
//! 5. two instances through PgBouncer in transaction mode
//!    (`DB_PREPARED_STATEMENTS=false`, `DATABASE_DIRECT_URL`), when installed.
//!
//! Prints requests/s, p50/p99, errors, where reads ran (the instances' count of
//! query requests read on a replica, and the standby's share of committed
//! transactions) and whether every acknowledged write is in the database exactly
//! once. `BENCH_CONNECTIONS` (32), `BENCH_DURATION` (15,
//! seconds) and `BENCH_TOPOLOGIES` (numbers above, comma-separated) change the run.
//! Clusters live under `target/bench-scale-pg`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cortex::auth::Authenticator;
use cortex::db::cluster::{ClusterOptions, EmbeddedCluster};
use cortex::db::connect_once;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use serde_json::{json, Value};

#[path = "../tests/common/pooler.rs"]
#[allow(dead_code, reason = "the tests' helper, shared whole")]
mod pooler;
#[allow(dead_code, reason = "shared with the other benches; RSS is theirs")]
mod server;
#[path = "../tests/common/tools.rs"]
#[allow(dead_code, reason = "the tests' helper, shared whole")]
mod tools;
use server::{start_server, Server};

const DATABASE: &str = "cortex_bench_scale";
const SECRET: &str = "scale-bench-secret-0123456789abcdef";
const OWNERS: usize = 200;

/// 200 owners × 5 workspaces × 10 conversations × 20 messages.
const DATASET: &str = r#"
INSERT INTO users (user_id, name, metadata)
  SELECT 'user' || u, 'User ' || u, '{}' FROM generate_series(1, 200) u;
INSERT INTO workspaces (id, name, owner_id, metadata, created_at)
  SELECT md5('w' || w)::uuid, 'Workspace ' || w, 'user' || ((w - 1) / 5 + 1), '{}',
         timestamptz '2026-01-01' + make_interval(secs => w)
  FROM generate_series(1, 1000) w;
INSERT INTO conversations (id, workspace_id, topic, participant_ids, metadata, created_at)
  SELECT md5('c' || c)::uuid, md5('w' || ((c - 1) / 10 + 1))::uuid, 'Topic ' || c,
         ARRAY[]::text[], '{}', timestamptz '2026-01-01' + make_interval(secs => c)
  FROM generate_series(1, 10000) c;
INSERT INTO messages (id, conversation_id, sender_id, content, "timestamp", metadata)
  SELECT md5('m' || m)::uuid, md5('c' || ((m - 1) / 20 + 1))::uuid, 'user' || ((m - 1) / 1000 + 1),
         'Message ' || m, timestamptz '2026-01-01' + make_interval(secs => m), '{}'
  FROM generate_series(1, 200000) m;
"#;

const NESTED: &str = "{ workspaces(first: 5) { nodes { name conversations(first: 10) { nodes { topic messages(last: 5) { nodes { content sender { name } } } } } } } }";
const POINT: &str = "query($id: ID!) { message(id: $id) { id content timestamp } }";
const SEND: &str =
    "mutation($c: ID!, $t: String!) { sendMessage(input: {conversationId: $c, content: $t}) { id } }";

/// Per owner: a conversation to write into and messages to read.
struct Owner {
    token: String,
    conversation: String,
    messages: Vec<String>,
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    owner: i64,
    #[diesel(sql_type = Text)]
    conversation: String,
    #[diesel(sql_type = Text)]
    message: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(url: &str, sql: &str) -> Result<i64> {
    let mut conn = connect_once(url).await?;
    let row: Count = diesel::sql_query(sql).get_result(&mut conn).await?;
    Ok(row.n)
}

/// Transactions committed in the bench database so far (`pg_stat_database`).
async fn commits(url: &str) -> Result<i64> {
    count(
        url,
        &format!("SELECT xact_commit AS n FROM pg_stat_database WHERE datname = '{DATABASE}'"),
    )
    .await
}

fn cluster(name: &str, standby_of: Option<String>) -> Result<EmbeddedCluster> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-scale-pg")
        .join(name);
    if standby_of.is_some() && dir.exists() {
        // A standby copies the primary as it is now.
        if let Ok(stale) = EmbeddedCluster::start(&ClusterOptions::new(&dir)) {
            stale.stop()?;
        }
        if let Ok(relocated) = std::fs::read_link(dir.join("pgdata")) {
            let _ = std::fs::remove_dir_all(relocated);
        }
        std::fs::remove_dir_all(&dir)?;
    }
    let mut options = ClusterOptions::new(dir);
    options.standby_of = standby_of;
    options.extra_settings = vec!["max_connections = 300".into()];
    EmbeddedCluster::start(&options)
}

/// The primary with its data (loaded once).
async fn ensure_dataset(primary: &EmbeddedCluster) -> Result<String> {
    let mut admin = connect_once(&primary.database_url("postgres")).await?;
    let exists: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_database WHERE datname = '{DATABASE}'"
    ))
    .get_result(&mut admin)
    .await?;
    let url = primary.database_url(DATABASE);
    if exists.n == 0 {
        admin
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await?;
        cortex::db::migrations::run_pending(&url).await?;
        let started = Instant::now();
        let mut conn = connect_once(&url).await?;
        conn.batch_execute(DATASET).await?;
        conn.batch_execute("VACUUM ANALYZE").await?;
        println!("dataset loaded in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(url)
}

async fn owners(url: &str) -> Result<Vec<Owner>> {
    let mut conn = connect_once(url).await?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT substr(w.owner_id, 5)::bigint AS owner, c.id::text AS conversation, m.id::text AS message
           FROM workspaces w JOIN conversations c ON c.workspace_id = w.id
           JOIN messages m ON m.conversation_id = c.id
          WHERE m.content LIKE 'Message %'
          ORDER BY 1, 2, 3",
    )
    .load(&mut conn)
    .await?;
    let auth = Authenticator::new(SECRET.as_bytes());
    let mut owners: Vec<Owner> = (1..=OWNERS)
        .map(|o| Owner {
            token: auth.mint(&format!("user{o}"), None, None, 24 * 3600),
            conversation: String::new(),
            messages: Vec::new(),
        })
        .collect();
    for row in rows {
        let owner = &mut owners[row.owner as usize - 1];
        if owner.conversation.is_empty() {
            owner.conversation = row.conversation;
        }
        if owner.messages.len() < 50 {
            owner.messages.push(row.message);
        }
    }
    Ok(owners)
}

/// A topology: its name, how many instances, their settings and the pool's URL.
type Topology = (&'static str, usize, Vec<(&'static str, String)>, String);

/// What one run measured.
struct Figures {
    requests: u64,
    errors: u64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    writes: u64,
    sample_error: Option<String>,
}

/// The mixed workload against `bases`, round robin, for `duration`.
async fn drive(
    bases: &[String],
    owners: &Arc<Vec<Owner>>,
    connections: usize,
    duration: Duration,
    run: &str,
) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, next, writes) = (client.clone(), next.clone(), writes.clone());
            let (bases, owners, run) = (bases.to_vec(), owners.clone(), run.to_string());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut errors, mut sample) = (0u64, None);
                while started.elapsed() < duration {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let owner = &owners[(i as usize * 7919) % owners.len()];
                    let body = match i % 20 {
                        0 | 10 => json!({"query": SEND, "variables": {"c": owner.conversation, "t": format!("{run} {i}")}}),
                        k if k % 2 == 0 => json!({"query": NESTED}),
                        _ => json!({"query": POINT, "variables": {"id": owner.messages[i as usize % owner.messages.len()]}}),
                    };
                    let sent = Instant::now();
                    let answer = client
                        .post(format!("{}/graphql", bases[i as usize % bases.len()]))
                        .bearer_auth(&owner.token)
                        .json(&body)
                        .send()
                        .await;
                    let ok = match answer {
                        Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                            Ok(v) if v.get("errors").is_none() => true,
                            Ok(v) => {
                                sample.get_or_insert(v.to_string());
                                false
                            }
                            Err(e) => {
                                sample.get_or_insert(e.to_string());
                                false
                            }
                        },
                        Ok(r) => {
                            sample.get_or_insert(r.status().to_string());
                            false
                        }
                        Err(e) => {
                            sample.get_or_insert(e.to_string());
                            false
                        }
                    };
                    latencies.push(sent.elapsed());
                    if !ok {
                        errors += 1;
                    } else if i % 10 == 0 {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                (latencies, errors, sample)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut errors, mut sample_error) = (0, None);
    for task in tasks {
        let (l, e, s) = task.await.unwrap();
        latencies.extend(l);
        errors += e;
        sample_error = sample_error.or(s);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Figures {
        requests: latencies.len() as u64,
        errors,
        per_second: latencies.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        writes: AtomicU64::load(&writes, Ordering::Relaxed),
        sample_error,
    }
}

/// `/metrics` on every instance (bearer token for it).
const METRICS_TOKEN: &str = "scale-bench-metrics";

/// Two or one instances with `envs`, started and waited for.
fn instances(n: usize, url: &str, envs: &[(&str, String)]) -> Result<Vec<Server>> {
    let mut envs = envs.to_vec();
    envs.push(("METRICS_TOKEN", METRICS_TOKEN.into()));
    (0..n).map(|_| start_server(url, SECRET, &envs)).collect()
}

/// Requests of queries the instances sent to a replica, and in all
/// (`cortex_db_read_target_total`; zero without replicas).
async fn read_targets(bases: &[String]) -> Result<(f64, f64)> {
    let (mut replica, mut all) = (0.0, 0.0);
    for base in bases {
        let text = reqwest::Client::new()
            .get(format!("{base}/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await?
            .text()
            .await?;
        for line in text
            .lines()
            .filter(|l| l.starts_with("cortex_db_read_target_total{"))
        {
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            all += value;
            if line.contains("target=\"replica\"") {
                replica += value;
            }
        }
    }
    Ok((replica, all))
}

async fn until_replica_serves(base: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let health: Value = reqwest::get(format!("{base}/health")).await?.json().await?;
        if health["replicas"]["serving"] == 1 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the replica never served: {health}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let connections: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let duration = Duration::from_secs(
        std::env::var("BENCH_DURATION")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(15),
    );
    let primary = tokio::task::spawn_blocking(|| cluster("primary", None)).await??;
    let url = ensure_dataset(&primary).await?;
    let conninfo = format!(
        "host={} port=5432 user=cortex",
        primary.socket_dir().display()
    );
    let standby = tokio::task::spawn_blocking(move || cluster("standby", Some(conninfo))).await??;
    let standby_url = standby.database_url(DATABASE);
    let pgbouncer = pooler::PgBouncer::start(primary.socket_dir(), 20);
    let owners = Arc::new(owners(&url).await?);
    let pool = ("DB_POOL_SIZE", "16".to_string());

    let mut topologies: Vec<Topology> = vec![
        ("1 instance, primary", 1, vec![pool.clone()], url.clone()),
        ("2 instances, primary", 2, vec![pool.clone()], url.clone()),
        (
            "2 instances, reads on the standby",
            2,
            vec![pool.clone(), ("DATABASE_REPLICA_URLS", standby_url.clone())],
            url.clone(),
        ),
    ];
    // The mode without the pooler: what the mode costs, apart from PgBouncer's hop.
    topologies.push((
        "2 instances, primary, DB_PREPARED_STATEMENTS=false",
        2,
        vec![pool.clone(), ("DB_PREPARED_STATEMENTS", "false".into())],
        url.clone(),
    ));
    if let Some(pgbouncer) = &pgbouncer {
        topologies.push((
            "2 instances via PgBouncer (transaction mode)",
            2,
            vec![
                pool.clone(),
                ("DB_PREPARED_STATEMENTS", "false".into()),
                ("DATABASE_DIRECT_URL", url.clone()),
            ],
            pgbouncer.url(DATABASE),
        ));
    } else {
        println!("PgBouncer is not installed: its topology is left out");
    }

    println!(
        "\n{connections} connections, {} s each, round robin; 45 % nested, 45 % point, 10 % sendMessage\n",
        duration.as_secs()
    );
    println!("| topology | req/s | p50 ms | p99 ms | errors | query requests read on the standby | transactions on the standby | writes acknowledged / stored |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let only = std::env::var("BENCH_TOPOLOGIES").ok();
    for (index, (name, n, envs, pool_url)) in topologies.into_iter().enumerate() {
        if only
            .as_ref()
            .is_some_and(|only| !only.split(',').any(|i| i == (index + 1).to_string()))
        {
            continue;
        }
        let servers = instances(n, &pool_url, &envs).context(name)?;
        let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
        if name.contains("standby") {
            for base in &bases {
                until_replica_serves(base).await?;
            }
        }
        // Warm-up: tokens cached, pools filled.
        drive(
            &bases,
            &owners,
            connections,
            Duration::from_secs(2),
            "warm-up",
        )
        .await;
        let run = format!("run{index}-{}", std::process::id());
        let (primary_before, standby_before) = (commits(&url).await?, commits(&standby_url).await?);
        let targets_before = read_targets(&bases).await?;
        let figures = drive(&bases, &owners, connections, duration, &run).await;
        let (primary_after, standby_after) = (commits(&url).await?, commits(&standby_url).await?);
        let targets_after = read_targets(&bases).await?;
        drop(servers);
        let (replica_reads, reads) = (
            targets_after.0 - targets_before.0,
            targets_after.1 - targets_before.1,
        );
        let read_share = if reads > 0.0 {
            format!("{:.0} %", replica_reads / reads * 100.0)
        } else {
            "—".to_string()
        };
        let stored = count(
            &url,
            &format!("SELECT count(*) AS n FROM messages WHERE content LIKE '{run} %'"),
        )
        .await?;
        let distinct = count(
            &url,
            &format!(
                "SELECT count(DISTINCT content) AS n FROM messages WHERE content LIKE '{run} %'"
            ),
        )
        .await?;
        let on_standby = standby_after - standby_before;
        let share =
            on_standby as f64 / ((primary_after - primary_before) + on_standby).max(1) as f64;
        println!(
            "| {name} | {:.0} | {:.1} | {:.1} | {} | {read_share} | {:.0} % | {} / {stored}{} |",
            figures.per_second,
            figures.p50_ms,
            figures.p99_ms,
            figures.errors,
            share * 100.0,
            figures.writes,
            if distinct == stored {
                ""
            } else {
                " (DUPLICATES)"
            },
        );
        if let Some(error) = figures.sample_error {
            println!("  first error: {error}");
        }
        if figures.writes as i64 != stored || distinct != stored || figures.errors > 0 {
            bail!("{name}: {} errors, {} writes acknowledged, {stored} stored ({distinct} distinct) of {} requests", figures.errors, figures.writes, figures.requests);
        }
    }
    drop(pgbouncer);
    tokio::task::spawn_blocking(move || {
        standby.stop()?;
        primary.stop()
    })
    .await??;
    Ok(())
}

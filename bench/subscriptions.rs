//! The real-time benchmark: `cargo bench --bench subscriptions`.
//!
//! 1. Starts the benchmark PostgreSQL (`target/bench-pg`, as `--bench api`
//!    does) and makes a fresh database: one owner, 100 workspaces, and a
//!    conversation per 10 subscribers, each with its 10 subscribers as
//!    participants.
//! 2. Starts the release `cortex` (one instance, or two on the same database)
//!    and opens `N` WebSockets (`graphql-transport-ws`), each with one
//!    `messageAdded(conversationId)` subscription, spread over the instances.
//! 3. Latency: sends messages over HTTP to random conversations at a steady
//!    rate through the first instance; each message reaches its 10 subscribers.
//!    Every delivery's latency (send → receive, one clock) goes into p50/p99.
//! 4. Fan-out: sends as fast as 16 HTTP clients can, and counts deliveries per
//!    second at the subscribers.
//! 5. Prints the figures, the server's RSS before and after the subscriptions
//!    (per 1,000), and whether any delivery was lost.
//!
//! `BENCH_SUBSCRIPTIONS` (comma-separated counts, default `1000,10000`),
//! `BENCH_INSTANCES` (`1,2`), `BENCH_RATE` (messages/s, 50), `BENCH_SECONDS` (10).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

mod server;
use cortex::auth::Authenticator;
use cortex::db::cluster::{ClusterOptions, EmbeddedCluster};
use cortex::db::connect_once;
use diesel_async::SimpleAsyncConnection;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use server::{rss_mib, start_server, Server};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const DATABASE: &str = "cortex_bench_realtime";
const SECRET: &str = "realtime-bench-secret-0123456789abcdef";
const PER_CONVERSATION: usize = 10;
const SUBSCRIPTION: &str =
    "subscription($c: ID) { messageAdded(conversationId: $c) { message { id content } } }";

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A fresh database with `subscribers` users over `subscribers / 10` conversations.
async fn prepare(admin_url: &str, url: &str, subscribers: usize) -> Result<Vec<String>> {
    let mut admin = connect_once(admin_url).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await?;
    cortex::db::migrations::run_pending(url).await?;
    let conversations = subscribers / PER_CONVERSATION;
    let mut conn = connect_once(url).await?;
    conn.batch_execute(&format!(
        "INSERT INTO users (user_id, name) VALUES ('owner', 'Owner');
         INSERT INTO users (user_id, name) SELECT 's' || n, 'Subscriber ' || n FROM generate_series(0, {last}) n;
         INSERT INTO workspaces (id, name, owner_id) SELECT md5('w' || w)::uuid, 'W' || w, 'owner' FROM generate_series(0, 99) w;
         INSERT INTO conversations (id, workspace_id, topic, participant_ids)
           SELECT md5('c' || c)::uuid, md5('w' || (c % 100))::uuid, 'C' || c,
                  ARRAY(SELECT 's' || (c * {PER_CONVERSATION} + k) FROM generate_series(0, {k_last}) k)
           FROM generate_series(0, {c_last}) c;",
        last = subscribers - 1,
        k_last = PER_CONVERSATION - 1,
        c_last = conversations - 1,
    ))
    .await?;
    conn.batch_execute("VACUUM ANALYZE").await?;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let ids: Vec<Id> = diesel::sql_query(format!(
        "SELECT md5('c' || c)::uuid::text AS id FROM generate_series(0, {}) c ORDER BY c",
        conversations - 1
    ))
    .load(&mut conn)
    .await?;
    Ok(ids.into_iter().map(|i| i.id).collect())
}

/// Delivery latencies (µs) and counts, shared by every socket's task.
#[derive(Default)]
struct Deliveries {
    latencies: Mutex<Vec<u64>>,
    count: AtomicU64,
    /// Only deliveries of messages sent after this (µs since the epoch) are kept.
    since: AtomicU64,
}

/// Opens one socket and subscribes; its task records every delivery.
async fn subscriber(
    base: String,
    token: String,
    conversation: String,
    deliveries: Arc<Deliveries>,
) -> Result<()> {
    let url = format!("{}/graphql", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    socket.send(Message::Text(init.to_string().into())).await?;
    let ack = socket.next().await.context("closed before the ack")??;
    if !ack.to_text()?.contains("connection_ack") {
        bail!("no ack: {ack}");
    }
    if std::env::var_os("BENCH_SOCKETS_ONLY").is_none() {
        let subscribe = json!({"type": "subscribe", "id": "1", "payload": {"query": SUBSCRIPTION, "variables": {"c": conversation}}});
        socket
            .send(Message::Text(subscribe.to_string().into()))
            .await?;
    }
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let received = now_micros();
            let value: Value = match serde_json::from_str(text.as_str()) {
                Ok(v) => v,
                Err(_) => continue,
            };
            match value["type"].as_str() {
                Some("ping") => {
                    let _ = socket
                        .send(Message::Text(json!({"type": "pong"}).to_string().into()))
                        .await;
                }
                Some("next") => {
                    let content = value["payload"]["data"]["messageAdded"]["message"]["content"]
                        .as_str()
                        .unwrap_or_default();
                    if let Ok(sent) = content.parse::<u64>() {
                        if sent >= deliveries.since.load(Ordering::Relaxed) {
                            deliveries.count.fetch_add(1, Ordering::Relaxed);
                            deliveries
                                .latencies
                                .lock()
                                .unwrap()
                                .push(received.saturating_sub(sent));
                        }
                    }
                }
                // The server's `complete` at shutdown ends the run.
                Some("complete") => {}
                _ => eprintln!("unexpected: {text}"),
            }
        }
    });
    Ok(())
}

async fn send_message(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    conversation: &str,
) -> Result<()> {
    let body = json!({
        "query": "mutation($c: ID!, $t: String!) { sendMessage(input: {conversationId: $c, content: $t}) { id } }",
        "variables": {"c": conversation, "t": now_micros().to_string()},
    });
    let response: Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    if response.get("errors").is_some() {
        bail!("send failed: {response}");
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Waits until the deliveries stop growing (or `limit` passes).
async fn settle(deliveries: &Deliveries, expected: u64, limit: Duration) {
    let start = Instant::now();
    while deliveries.count.load(Ordering::Relaxed) < expected && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Figures {
    subscriptions: usize,
    instances: usize,
    p50: f64,
    p99: f64,
    delivered: u64,
    expected: u64,
    fanout_per_s: f64,
    rss_per_1000: f64,
}

async fn run(
    admin_url: &str,
    url: &str,
    subscriptions: usize,
    instances: usize,
    rate: u64,
    seconds: u64,
) -> Result<Figures> {
    let conversations = prepare(admin_url, url, subscriptions).await?;
    let servers: Vec<Server> = (0..instances)
        .map(|_| {
            start_server(
                url,
                SECRET,
                &[
                    ("SUBSCRIPTION_MAX_PER_INSTANCE", "100000".into()),
                    ("SHUTDOWN_TIMEOUT", "2".into()),
                ],
            )
        })
        .collect::<Result<_>>()?;
    // The servers' resident memory, summed.
    let rss = || -> f64 {
        servers
            .iter()
            .map(|s| rss_mib(s.child.id(), "VmRSS:"))
            .sum()
    };
    let rss_before = rss();
    let auth = Authenticator::new(SECRET.as_bytes());
    let deliveries = Arc::new(Deliveries::default());
    deliveries.since.store(u64::MAX, Ordering::Relaxed);
    let opening = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut opened = Vec::with_capacity(subscriptions);
    for n in 0..subscriptions {
        let base = servers[n % instances].base.clone();
        let token = auth.mint(&format!("s{n}"), None, None, 3600);
        let conversation = conversations[n / PER_CONVERSATION].clone();
        let (deliveries, gate) = (deliveries.clone(), gate.clone());
        opened.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            subscriber(base, token, conversation, deliveries).await
        }));
    }
    for task in opened {
        task.await??;
    }
    // No acknowledgement follows a subscribe: give the last ones time to start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let opened_in = opening.elapsed();
    let rss_opened = rss();
    // Steady state: the allocator returns what opening them freed (jemalloc's
    // dirty pages decay over 10 s).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let rss_after = rss();
    println!(
        "  {subscriptions} subscriptions on {instances} instance(s) open in {:.1} s; RSS {rss_before:.0} → {rss_opened:.0} MiB just after, {rss_after:.0} MiB 12 s later",
        opened_in.as_secs_f64()
    );

    // Latency at a steady rate, through the first instance.
    let owner = auth.mint("owner", None, None, 3600);
    let client = reqwest::Client::new();
    deliveries.since.store(now_micros(), Ordering::Relaxed);
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for i in 0..total {
        ticker.tick().await;
        let conversation = &conversations[(i as usize * 7919) % conversations.len()];
        send_message(&client, &servers[0].base, &owner, conversation).await?;
    }
    let expected = total * PER_CONVERSATION as u64;
    settle(&deliveries, expected, Duration::from_secs(10)).await;
    let mut latencies = std::mem::take(&mut *deliveries.latencies.lock().unwrap());
    let delivered = deliveries.count.swap(0, Ordering::Relaxed);
    latencies.sort_unstable();

    // Fan-out: as fast as 16 clients send.
    let blast = 2_000u64;
    let started = Instant::now();
    deliveries.since.store(now_micros(), Ordering::Relaxed);
    let next = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (client, base, owner, conversations, next) = (
            client.clone(),
            servers[0].base.clone(),
            owner.clone(),
            conversations.clone(),
            next.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= blast {
                    return Ok::<_, anyhow::Error>(());
                }
                let c = &conversations[(i as usize * 7919) % conversations.len()];
                send_message(&client, &base, &owner, c).await?;
            }
        }));
    }
    for s in senders {
        s.await??;
    }
    let blast_expected = blast * PER_CONVERSATION as u64;
    settle(&deliveries, blast_expected, Duration::from_secs(30)).await;
    let fanned = deliveries.count.load(Ordering::Relaxed);
    let fanout_per_s = fanned as f64 / started.elapsed().as_secs_f64();
    drop(servers);
    Ok(Figures {
        subscriptions,
        instances,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        delivered: delivered + fanned,
        expected: expected + blast_expected,
        fanout_per_s,
        rss_per_1000: (rss_after - rss_before) / (subscriptions as f64 / 1000.0),
    })
}

fn list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

fn main() -> Result<()> {
    let counts = list("BENCH_SUBSCRIPTIONS", "1000,10000");
    let instances = list("BENCH_INSTANCES", "1,2");
    let rate = list("BENCH_RATE", "50")[0] as u64;
    let seconds = list("BENCH_SECONDS", "10")[0] as u64;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let mut options = ClusterOptions::new(root.join("bench-pg"));
    options.extra_settings = vec![
        "shared_preload_libraries = 'pg_stat_statements'".into(),
        "max_connections = 200".into(),
    ];
    let cluster = EmbeddedCluster::start(&options)?;
    let (admin_url, url) = (
        cluster.database_url("postgres"),
        cluster.database_url(DATABASE),
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();
    let result = runtime.block_on(async {
        for &count in &counts {
            for &n in &instances {
                rows.push(run(&admin_url, &url, count, n, rate, seconds).await?);
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    drop(runtime);
    cluster.stop()?;
    result?;
    println!("\n{rate} messages/s for {seconds} s (each to its {PER_CONVERSATION} subscribers), then 2,000 as fast as 16 HTTP clients send");
    println!("| subscriptions | instances | p50 | p99 | delivered / expected | fan-out deliveries/s | server RSS per 1,000 subscriptions |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for f in &rows {
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {} / {} | {:.0} | {:.1} MiB |",
            f.subscriptions,
            f.instances,
            f.p50,
            f.p99,
            f.delivered,
            f.expected,
            f.fanout_per_s,
            f.rss_per_1000
        );
    }
    if rows.iter().any(|f| f.delivered != f.expected) {
        bail!("deliveries were lost");
    }
    Ok(())
}

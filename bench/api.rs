//! The API benchmark: `cargo bench --bench api`.
//!
//! 1. Starts a private PostgreSQL like the embedded default (under
//!    `target/bench-pg`), or uses `BENCH_DATABASE_URL` (with `pg_stat_statements`).
//! 2. Loads a deterministic dataset made in SQL: 1,000 users, 10,000 workspaces,
//!    100,000 conversations, 2,000,000 messages with metadata, and 100 more users
//!    whose workspaces hold 100 conversations each; then `VACUUM ANALYZE`; skipped
//!    when the data is already there. Ids are `md5`-derived so
//!    that pgbench scripts can name rows too.
//! 3. Starts the release `cortex` against it and mints tokens for every owner.
//! 4. Drives each workload with wrk at a fixed concurrency after a warm-up, every
//!    request for a different owner or id (`bench/api.lua`).
//! 5. Prints requests/s, p50/p99, errors (any error makes the run invalid), SQL
//!    statements per request (`pg_stat_statements` deltas) and the server's RSS.
//! 6. Runs each workload's hand-written SQL (one statement building the same JSON)
//!    through `pgbench -M prepared` at the same concurrency: the database's
//!    ceiling, and the ratio Cortex / ceiling.
//!
//! `BENCH_CONNECTIONS` (32), `BENCH_DURATION` (20s), `BENCH_WARMUP` (5s),
//! `BENCH_POOL_SIZE` (16) and `BENCH_WORKLOADS` (comma-separated names) change the run;
//! `BENCH_COMPARE=postgraphile` then runs the same workloads against PostGraphile
//! and its connection filter plugin (installed from npm) on the same data.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

mod server;
use cortex::auth::Authenticator;
use cortex::db::cluster::{find_bin_dir, ClusterOptions, EmbeddedCluster};
use cortex::db::connect_once;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use server::{rss_mib, start_server};

const DATABASE: &str = "cortex_bench_api";
const SECRET: &str = "api-bench-secret-0123456789abcdef";
const OWNERS: i64 = 1_000;
const MESSAGES: i64 = 2_000_000;
const CONVERSATIONS: i64 = 100_000;
/// Owners `user1001` to `user1100`, whose 10 workspaces hold 100 conversations each.
const WIDE_OWNERS: i64 = 100;
const WIDE_CONVERSATIONS: i64 = 100_000;
/// Distinct requests per workload file (each a different owner or id).
const REQUESTS_PER_FILE: i64 = 5_000;

/// 10 workspaces per owner, 10 conversations per workspace, 20 messages per
/// conversation; `labels.team` is one of 10 teams, `tier` one of 3 (on
/// workspaces and on conversations). Then 100 "wide" owners: 10 workspaces of
/// 100 conversations each, no messages, a tenth of them gold, scattered by a hash
/// (a page of 10 gold ones reads ~100 rows of its workspace): the shape where a
/// GIN scan per parent costs most (`bench/RESULTS.md`, issue 17).
const DATASET: &str = r#"
INSERT INTO users (user_id, name, email, metadata)
  SELECT 'user' || u, 'User ' || u, 'user' || u || '@example.com', jsonb_build_object('plan', (ARRAY['free','pro'])[u % 2 + 1])
  FROM generate_series(1, 1000) u;
INSERT INTO workspaces (id, name, description, owner_id, metadata, created_at)
  SELECT md5('w' || w)::uuid, 'Workspace ' || w, 'generated', 'user' || ((w - 1) / 10 + 1),
         jsonb_build_object('tier', (ARRAY['gold','silver','bronze'])[w % 3 + 1],
                            'tags', jsonb_build_array('t' || w % 7, 't' || w % 11),
                            'priority', w % 5,
                            'labels', jsonb_build_object('team', 'team' || w % 10)),
         timestamptz '2026-01-01' + make_interval(secs => w)
  FROM generate_series(1, 10000) w;
INSERT INTO conversations (id, workspace_id, topic, participant_ids, metadata, created_at)
  SELECT md5('c' || c)::uuid, md5('w' || ((c - 1) / 10 + 1))::uuid, 'Topic ' || c,
         ARRAY['user' || ((c - 1) / 100 + 1)],
         jsonb_build_object('channel', 'general', 'tier', (ARRAY['gold','silver','bronze'])[c % 3 + 1]),
         timestamptz '2026-01-01' + make_interval(secs => c)
  FROM generate_series(1, 100000) c;
INSERT INTO messages (id, conversation_id, sender_id, content, "timestamp", metadata)
  SELECT md5('m' || m)::uuid, md5('c' || ((m - 1) / 20 + 1))::uuid, 'user' || ((m - 1) / 2000 + 1),
         'Message ' || m || ' about the ' || (ARRAY['fox','dog','cat','bird','fish'])[m % 5 + 1]
           || ' in topic ' || ((m - 1) / 20 + 1),
         timestamptz '2026-01-01' + make_interval(secs => m),
         jsonb_build_object('seq', m)
  FROM generate_series(1, 2000000) m;
INSERT INTO users (user_id, name, email, metadata)
  SELECT 'user' || u, 'User ' || u, 'user' || u || '@example.com', '{"plan": "pro"}'
  FROM generate_series(1001, 1100) u;
INSERT INTO workspaces (id, name, description, owner_id, metadata, created_at)
  SELECT md5('w' || w)::uuid, 'Workspace ' || w, 'generated', 'user' || ((w - 1) / 10 + 1),
         jsonb_build_object('tier', (ARRAY['gold','silver','bronze'])[w % 3 + 1]),
         timestamptz '2026-01-01' + make_interval(secs => w)
  FROM generate_series(10001, 11000) w;
INSERT INTO conversations (id, workspace_id, topic, participant_ids, metadata, created_at)
  SELECT md5('c' || c)::uuid, md5('w' || (10000 + (c - 100001) / 100 + 1))::uuid, 'Topic ' || c,
         ARRAY['user' || (1000 + (c - 100001) / 1000 + 1)],
         jsonb_build_object('channel', 'general', 'n', c, 'tier',
           CASE abs(hashint4(c)) % 10 WHEN 0 THEN 'gold' WHEN 1 THEN 'silver' WHEN 2 THEN 'silver' ELSE 'bronze' END),
         timestamptz '2026-01-01' + make_interval(secs => c)
  FROM generate_series(100001, 200000) c;
"#;

/// One workload: the GraphQL request for request number `i`, and the pgbench
/// script of the same work.
struct Workload {
    name: &'static str,
    graphql: fn(i64) -> (i64, String),
    pgbench: &'static str,
    /// The same request to PostGraphile's generated schema (`BENCH_COMPARE`), where
    /// it has one: the metadata filter through postgraphile-plugin-connection-filter,
    /// no full-text search, no filter on workspaces' nested JSON paths.
    postgraphile: Option<fn(i64) -> String>,
}

fn owner_of(i: i64) -> i64 {
    (i * 7919) % OWNERS + 1
}

fn nested(i: i64) -> (i64, String) {
    let q = "{ workspaces(first: 10) { nodes { name conversations(first: 10) { nodes { topic messages(last: 20) { nodes { content timestamp sender { name } } } } } } } }";
    (owner_of(i), serde_json::json!({ "query": q }).to_string())
}

fn filter(i: i64) -> (i64, String) {
    let q = format!(
        "{{ workspaces(first: 50, filter: {{metadata: {{contains: {{tier: \"gold\"}}, path: [{{path: [\"labels\", \"team\"], eq: \"team{}\"}}]}}}}) {{ nodes {{ id name }} }} }}",
        i % 10
    );
    (owner_of(i), serde_json::json!({ "query": q }).to_string())
}

fn filtered_nested(i: i64) -> (i64, String) {
    let q = "{ workspaces(first: 10, orderBy: CREATED_AT_ASC) { nodes { conversations(first: 10, orderBy: CREATED_AT_ASC, filter: {metadata: {contains: {tier: \"gold\"}}}) { nodes { id topic metadata } } } } }";
    (owner_of(i), serde_json::json!({ "query": q }).to_string())
}

/// `filtered_nested` for the wide owners (100 conversations per workspace).
fn filtered_nested_wide(i: i64) -> (i64, String) {
    let (_, body) = filtered_nested(i);
    (OWNERS + (i * 7919) % WIDE_OWNERS + 1, body)
}

fn point(i: i64) -> (i64, String) {
    let m = (i * 104_729) % MESSAGES + 1;
    let q = "query($id: ID!) { message(id: $id) { id content timestamp } }";
    (
        (m - 1) / 2000 + 1,
        serde_json::json!({ "query": q, "variables": { "id": format!("@m{m}") } }).to_string(),
    )
}

fn search(i: i64) -> (i64, String) {
    let owner = owner_of(i);
    let w = (owner - 1) * 10 + i % 10 + 1;
    let q = "query($w: ID!, $q: String!) { searchMessages(query: $q, workspaceId: $w, first: 20) { edges { headline node { id content } } } }";
    let word = ["fox", "dog", "cat", "bird", "fish"][(i % 5) as usize];
    (
        owner,
        serde_json::json!({ "query": q, "variables": { "w": format!("@w{w}"), "q": word } })
            .to_string(),
    )
}

fn write(i: i64) -> (i64, String) {
    let owner = owner_of(i);
    let c = (owner - 1) * 100 + i % 100 + 1;
    let q = "mutation($c: ID!, $t: String!) { sendMessage(input: {conversationId: $c, content: $t}) { id timestamp } }";
    (
        owner,
        serde_json::json!({ "query": q, "variables": { "c": format!("@c{c}"), "t": format!("bench message {i}") } })
            .to_string(),
    )
}

/// PostGraphile v4's names for the nested workload: the owner is a condition
/// (PostGraphile is run without JWTs here, so it checks no token at all).
fn postgraphile_nested(i: i64) -> String {
    let q = format!(
        "{{ allWorkspaces(condition: {{ownerId: \"user{}\"}}, first: 10, orderBy: [CREATED_AT_DESC, ID_DESC]) {{ nodes {{ name conversationsByWorkspaceId(first: 10, orderBy: [CREATED_AT_DESC, ID_DESC]) {{ nodes {{ topic messagesByConversationId(last: 20, orderBy: [TIMESTAMP_ASC, ID_ASC]) {{ nodes {{ content timestamp userBySenderId {{ name }} }} }} }} }} }} }} }}",
        owner_of(i)
    );
    serde_json::json!({ "query": q }).to_string()
}

/// `filtered_nested` through postgraphile-plugin-connection-filter's `filter`
/// (PostGraphile has no JSONB containment filter of its own).
fn postgraphile_filtered_nested(i: i64) -> String {
    postgraphile_filtered_nested_of(owner_of(i))
}

fn postgraphile_filtered_nested_wide(i: i64) -> String {
    postgraphile_filtered_nested_of(filtered_nested_wide(i).0)
}

fn postgraphile_filtered_nested_of(owner: i64) -> String {
    let q = format!(
        "{{ allWorkspaces(condition: {{ownerId: \"user{owner}\"}}, first: 10, orderBy: [CREATED_AT_ASC, ID_ASC]) {{ nodes {{ conversationsByWorkspaceId(first: 10, orderBy: [CREATED_AT_ASC, ID_ASC], filter: {{metadata: {{contains: {{tier: \"gold\"}}}}}}) {{ nodes {{ id topic metadata }} }} }} }} }}"
    );
    serde_json::json!({ "query": q }).to_string()
}

fn postgraphile_point(i: i64) -> String {
    let m = (i * 104_729) % MESSAGES + 1;
    let q = "query($id: UUID!) { messageById(id: $id) { id content timestamp } }";
    serde_json::json!({ "query": q, "variables": { "id": format!("@m{m}") } }).to_string()
}

fn postgraphile_write(i: i64) -> String {
    let owner = owner_of(i);
    let c = (owner - 1) * 100 + i % 100 + 1;
    let q = "mutation($c: UUID!, $s: String!, $t: String!) { createMessage(input: {message: {conversationId: $c, senderId: $s, content: $t}}) { message { id timestamp } } }";
    serde_json::json!({ "query": q, "variables": { "c": format!("@c{c}"), "s": format!("user{owner}"), "t": format!("bench message {i}") } })
        .to_string()
}

/// The pgbench script of `filtered_nested` for owners drawn from `$owners` (the
/// arguments of pgbench's `random`): the narrow and the wide owners share it.
macro_rules! filtered_nested_ceiling {
    ($owners:literal) => {
        concat!(
            r"\set owner random(",
            $owners,
            r#")
SELECT json_build_object('data', json_build_object('workspaces', json_build_object('nodes', coalesce(json_agg(w), '[]'))))
FROM (
  SELECT json_build_object('nodes', (
    SELECT coalesce(json_agg(c), '[]') FROM (
      SELECT c.id, c.topic, c.metadata FROM conversations c
      WHERE c.workspace_id = w.id AND c.metadata @> '{"tier": "gold"}'
      ORDER BY c.created_at, c.id LIMIT 10) c)) AS conversations
  FROM workspaces w WHERE w.owner_id = 'user' || :owner
  ORDER BY w.created_at, w.id LIMIT 10) w;
"#
        )
    };
}

const WORKLOADS: [Workload; 7] = [
    Workload {
        name: "nested",
        graphql: nested,
        postgraphile: Some(postgraphile_nested),
        pgbench: r#"\set owner random(1, 1000)
SELECT json_build_object('data', json_build_object('workspaces', json_build_object('nodes', coalesce(json_agg(w), '[]'))))
FROM (
  SELECT w.name, json_build_object('nodes', (
    SELECT coalesce(json_agg(c), '[]') FROM (
      SELECT c.topic, json_build_object('nodes', (
        SELECT coalesce(json_agg(m ORDER BY m."timestamp", m.id), '[]') FROM (
          SELECT m.content, m."timestamp", m.id,
                 (SELECT json_build_object('name', u.name) FROM users u WHERE u.user_id = m.sender_id) AS sender
          FROM messages m WHERE m.conversation_id = c.id
          ORDER BY m."timestamp" DESC, m.id DESC LIMIT 20) m)) AS messages
      FROM conversations c WHERE c.workspace_id = w.id
      ORDER BY c.created_at DESC, c.id DESC LIMIT 10) c)) AS conversations
  FROM workspaces w WHERE w.owner_id = 'user' || :owner
  ORDER BY w.created_at DESC, w.id DESC LIMIT 10) w;
"#,
    },
    Workload {
        name: "filter",
        graphql: filter,
        postgraphile: None,
        pgbench: r#"\set owner random(1, 1000)
\set team random(0, 9)
SELECT json_build_object('data', json_build_object('workspaces', json_build_object('nodes', coalesce(json_agg(w), '[]'))))
FROM (
  SELECT w.id, w.name FROM workspaces w
  WHERE w.owner_id = 'user' || :owner
    AND w.metadata @> jsonb_build_object('tier', 'gold', 'labels', jsonb_build_object('team', 'team' || :team))
  ORDER BY w.created_at DESC, w.id DESC LIMIT 50) w;
"#,
    },
    Workload {
        name: "filtered_nested",
        graphql: filtered_nested,
        postgraphile: Some(postgraphile_filtered_nested),
        pgbench: filtered_nested_ceiling!("1, 1000"),
    },
    Workload {
        name: "filtered_nested_wide",
        graphql: filtered_nested_wide,
        postgraphile: Some(postgraphile_filtered_nested_wide),
        pgbench: filtered_nested_ceiling!("1001, 1100"),
    },
    Workload {
        name: "point",
        graphql: point,
        postgraphile: Some(postgraphile_point),
        pgbench: r#"\set m random(1, 2000000)
SELECT json_build_object('data', json_build_object('message', row_to_json(x)))
FROM (
  SELECT m.id, m.content, m."timestamp", w.owner_id FROM messages m
  JOIN conversations c ON c.id = m.conversation_id JOIN workspaces w ON w.id = c.workspace_id
  WHERE m.id = md5('m' || :m)::uuid) x;
"#,
    },
    Workload {
        name: "search",
        graphql: search,
        postgraphile: None,
        pgbench: r#"\set w random(1, 10000)
\set word random(1, 5)
SELECT json_build_object('data', json_build_object('searchMessages', json_build_object('edges', coalesce(json_agg(h), '[]'))))
FROM (
  SELECT ts_headline('english', m.content, q) AS headline, json_build_object('id', m.id, 'content', m.content) AS node
  FROM messages m JOIN conversations c ON c.id = m.conversation_id,
       websearch_to_tsquery('english', (ARRAY['fox','dog','cat','bird','fish'])[:word]) q
  WHERE c.workspace_id = md5('w' || :w)::uuid AND m.tsv @@ q
  ORDER BY ts_rank(m.tsv, q) DESC, m."timestamp" DESC, m.id DESC LIMIT 20) h;
"#,
    },
    Workload {
        name: "write",
        graphql: write,
        postgraphile: Some(postgraphile_write),
        pgbench: r#"\set c random(1, 100000)
INSERT INTO messages (conversation_id, sender_id, content)
SELECT c.id, w.owner_id, 'pgbench message' FROM conversations c JOIN workspaces w ON w.id = c.workspace_id
WHERE c.id = md5('c' || :c)::uuid
RETURNING json_build_object('data', json_build_object('sendMessage', json_build_object('id', id, 'timestamp', "timestamp")));
"#,
    },
];

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    id: String,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> Result<i64> {
    Ok(diesel::sql_query(sql).get_result::<Count>(conn).await?.n)
}

/// Loads the dataset unless it is there already.
async fn ensure_dataset(admin_url: &str, url: &str) -> Result<()> {
    if let Ok(mut conn) = connect_once(url).await {
        if count(
            &mut conn,
            "SELECT count(*) AS n FROM messages WHERE content LIKE 'Message %'",
        )
        .await
        .ok()
            == Some(MESSAGES)
            // Datasets from before conversations had a tier, or before the wide
            // owners, are made again.
            && count(
                &mut conn,
                "SELECT count(*) AS n FROM conversations WHERE metadata ? 'tier'",
            )
            .await
            .ok()
                == Some(CONVERSATIONS + WIDE_CONVERSATIONS)
        {
            println!("dataset: already loaded");
            return Ok(());
        }
    }
    let started = std::time::Instant::now();
    let mut admin = connect_once(admin_url).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    diesel::sql_query(format!("CREATE DATABASE {DATABASE}"))
        .execute(&mut admin)
        .await?;
    cortex::db::migrations::run_pending(url).await?;
    let mut conn = connect_once(url).await?;
    conn.batch_execute(DATASET).await?;
    conn.batch_execute("VACUUM ANALYZE").await?;
    println!(
        "dataset: loaded in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Replaces every `"@<key>"` placeholder (`@m17`: message 17) with the id the
/// dataset gave that row, `md5(key)` as a UUID, computed by PostgreSQL.
async fn resolve_ids(conn: &mut AsyncPgConnection, lines: &mut [String]) -> Result<()> {
    fn placeholders(line: &str) -> Vec<&str> {
        line.split("\"@")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }
    let mut keys: Vec<String> = lines
        .iter()
        .flat_map(|l| placeholders(l))
        .map(str::to_string)
        .collect();
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    let ids: Vec<Id> =
        diesel::sql_query("SELECT k AS key, md5(k)::uuid::text AS id FROM unnest($1::text[]) k")
            .bind::<diesel::sql_types::Array<Text>, _>(&keys)
            .load(conn)
            .await?;
    let map: std::collections::HashMap<String, String> =
        ids.into_iter().map(|i| (i.key, i.id)).collect();
    for line in lines.iter_mut() {
        let mut resolved = line.clone();
        for key in placeholders(line) {
            resolved = resolved.replace(&format!("\"@{key}\""), &format!("\"{}\"", map[key]));
        }
        *line = resolved;
    }
    Ok(())
}

/// wrk's figures, as bench/api.lua prints them.
#[derive(Default, Debug)]
struct Load {
    requests: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    sample: String,
}

fn wrk(base: &str, requests: &Path, connections: u32, duration: &str) -> Result<Load> {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{duration}"),
            // wrk's default 2 s timeout counts a slow answer as an error without
            // measuring it; 10 s lets the slowest server's latency show.
            "--timeout",
            "10s",
            "--latency",
            "-s",
        ])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/api.lua"))
        .arg(format!("{base}/graphql"))
        .env("BENCH_REQUESTS", requests)
        .output()
        .context("run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut load = Load::default();
    for line in text.lines() {
        let numbers: Vec<f64> = line
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|t| t.parse().ok())
            .collect();
        if line.starts_with("requests:") && numbers.len() >= 3 {
            (load.requests, load.per_second) = (numbers[0], numbers[2]);
        } else if line.starts_with("latency:") && numbers.len() >= 4 {
            // "p50 X ms, p99 Y ms": the 50 and 99 are numbers too.
            (load.p50_ms, load.p99_ms) = (numbers[1], numbers[3]);
        } else if let Some(e) = line.strip_prefix("errors: ") {
            load.errors = e.trim().parse().unwrap_or(u64::MAX);
        } else if let Some(s) = line.strip_prefix("first failure: ") {
            load.sample = s.to_string();
        }
    }
    if load.requests == 0.0 {
        bail!(
            "wrk printed no figures: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(load)
}

/// pgbench's transactions per second for `script` at `connections`.
fn pgbench(
    bin_dir: &Path,
    url: &str,
    script: &Path,
    connections: u32,
    duration_s: u32,
) -> Result<f64> {
    let output = Command::new(bin_dir.join("pgbench"))
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg(format!("-c{connections}"))
        .arg(format!("-T{duration_s}"))
        .arg("-f")
        .arg(script)
        .arg(url)
        .output()
        .context("run pgbench")?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next()?.parse().ok())
        .with_context(|| {
            format!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// Statements since the last reset, and how many of them were the authenticator's
/// caller lookups (one per owner per `CALLER_CACHE_TTL`, not part of the query).
async fn statements_since_reset(conn: &mut AsyncPgConnection) -> Result<(i64, i64)> {
    const OURS: &str = "dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND query NOT LIKE '%pg_stat_statements%' AND query <> 'SELECT $1'
            AND query NOT ILIKE 'SET %'";
    let all = count(
        conn,
        &format!(
            "SELECT coalesce(sum(calls), 0)::bigint AS n FROM pg_stat_statements WHERE {OURS}"
        ),
    )
    .await?;
    let lookups = count(
        conn,
        &format!(
            "SELECT coalesce(sum(calls), 0)::bigint AS n FROM pg_stat_statements WHERE {OURS}
               AND query LIKE '%FROM \"users\" WHERE (\"users\".\"user_id\" = $1)%'"
        ),
    )
    .await?;
    Ok((all, lookups))
}

/// What the comparison run shares with the Cortex run.
struct BenchRun<'a> {
    url: &'a str,
    work: &'a Path,
    connections: u32,
    duration: &'a str,
    warmup: &'a str,
}

/// `BENCH_COMPARE=postgraphile`: PostGraphile v4 (from npm, installed under
/// `target/bench-api/postgraphile`) on the same database, after Cortex has stopped,
/// with the same wrk settings, for the workloads its schema (with the connection
/// filter plugin) can express.
async fn compare_with_postgraphile(
    run: &BenchRun<'_>,
    meter: &mut AsyncPgConnection,
    cortex_rates: &[(&str, f64)],
    report: &mut String,
) -> Result<bool> {
    let dir = run.work.join("postgraphile");
    let bin = dir.join("node_modules/.bin/postgraphile");
    const FILTER_PLUGIN: &str = "postgraphile-plugin-connection-filter";
    if !bin.exists() || !dir.join("node_modules").join(FILTER_PLUGIN).exists() {
        println!(
            "installing postgraphile@4 and {FILTER_PLUGIN}@2 from npm into {}",
            dir.display()
        );
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .args(["postgraphile@4", &format!("{FILTER_PLUGIN}@2")])
            .status()
            .context("BENCH_COMPARE=postgraphile needs Node.js and npm")?;
        if !status.success() {
            bail!("npm install postgraphile@4 failed");
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let pool = std::env::var("BENCH_POOL_SIZE").unwrap_or("16".into());
    let mut child = Command::new(&bin)
        .args([
            "--schema",
            "public",
            "--disable-query-log",
            "--max-pool-size",
            &pool,
            // JSON in and out as JSON, as Cortex's `JSON` scalar is.
            "--dynamic-json",
            "--append-plugins",
            FILTER_PLUGIN,
        ])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--connection")
        .arg(run.url)
        .env("NODE_ENV", "production")
        .stdout(Stdio::piped())
        .spawn()
        .context("start postgraphile")?;
    let mut lines = BufReader::new(child.stdout.take().context("postgraphile stdout")?).lines();
    loop {
        let Some(line) = lines.next() else {
            let _ = child.kill();
            bail!("postgraphile exited before listening");
        };
        if line?.contains("server listening on port") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let base = format!("http://127.0.0.1:{port}");

    writeln!(report, "\nPostGraphile 4 (Node.js, `--max-pool-size {pool} --dynamic-json`, {FILTER_PLUGIN} for the metadata filter, no JWT: the owner is a query condition) on the same data, after Cortex stopped:")?;
    writeln!(
        report,
        "| workload | PostGraphile req/s | p50 | p99 | errors | Cortex / PostGraphile |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|")?;
    let mut valid = true;
    for workload in WORKLOADS.iter() {
        let (Some(request), Some((_, cortex))) = (
            workload.postgraphile,
            cortex_rates.iter().find(|(name, _)| *name == workload.name),
        ) else {
            continue;
        };
        // No token: bench/api.lua sends no Authorization header for an empty one.
        let mut lines: Vec<String> = (0..REQUESTS_PER_FILE)
            .map(|i| format!("\t{}", request(i)))
            .collect();
        resolve_ids(meter, &mut lines).await?;
        let requests = run
            .work
            .join(format!("postgraphile-{}.requests", workload.name));
        std::fs::write(&requests, lines.join("\n") + "\n")?;
        wrk(&base, &requests, run.connections, run.warmup)?;
        let load = wrk(&base, &requests, run.connections, run.duration)?;
        if load.errors > 0 {
            valid = false;
            eprintln!(
                "postgraphile {}: {} errors, e.g. {}",
                workload.name, load.errors, load.sample
            );
        }
        writeln!(
            report,
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.2}× |",
            workload.name,
            load.per_second,
            load.p50_ms,
            load.p99_ms,
            load.errors,
            cortex / load.per_second
        )?;
        println!("postgraphile {}: done", workload.name);
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(valid)
}

fn seconds(duration: &str) -> u32 {
    duration.trim_end_matches('s').parse().unwrap_or(20)
}

fn main() -> Result<()> {
    let connections: u32 = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let duration = std::env::var("BENCH_DURATION").unwrap_or_else(|_| "20s".into());
    let warmup = std::env::var("BENCH_WARMUP").unwrap_or_else(|_| "5s".into());
    let only: Option<Vec<String>> = std::env::var("BENCH_WORKLOADS")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed: apt-get install wrk");
    }
    let bin_dir = find_bin_dir()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let work = root.join("bench-api");
    std::fs::create_dir_all(&work)?;

    let mut options = ClusterOptions::new(root.join("bench-pg"));
    options.extra_settings = vec![
        "shared_preload_libraries = 'pg_stat_statements'".into(),
        "max_connections = 200".into(),
    ];
    let (cluster, admin_url, url) = match std::env::var("BENCH_DATABASE_URL") {
        Ok(url) => (None, url.clone(), url),
        Err(_) => {
            let cluster = EmbeddedCluster::start(&options)?;
            let (a, u) = (
                cluster.database_url("postgres"),
                cluster.database_url(DATABASE),
            );
            (Some(cluster), a, u)
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        ensure_dataset(&admin_url, &url).await?;
        let mut meter = connect_once(&url).await?;
        meter.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await?;
        // pgbench's write workload leaves rows behind; so does Cortex's. Both are
        // removed at the start of every run so runs stay comparable.
        meter
            .batch_execute("DELETE FROM messages WHERE content LIKE 'bench message %' OR content = 'pgbench message'")
            .await?;

        let pool_size = std::env::var("BENCH_POOL_SIZE").unwrap_or("16".into());
        let server = start_server(&url, SECRET, &[("DB_POOL_SIZE", pool_size)])?;
        let auth = Authenticator::new(SECRET.as_bytes());
        let tokens: Vec<String> = (1..=OWNERS + WIDE_OWNERS)
            .map(|u| auth.mint(&format!("user{u}"), Some(&format!("User {u}")), None, 24 * 3600))
            .collect();
        let mut report = String::new();
        writeln!(report, "\n{connections} connections, {duration} per workload after {warmup} of warm-up, pgbench -M prepared -j 2 at the same concurrency")?;
        writeln!(report, "| workload | req/s | p50 | p99 | errors | SQL statements / request (of which caller lookups) | pgbench tps (ceiling) | Cortex / ceiling |")?;
        writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
        let mut valid = true;
        let mut cortex_rates: Vec<(&str, f64)> = Vec::new();
        for workload in WORKLOADS.iter() {
            if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == workload.name)) {
                continue;
            }
            let mut lines: Vec<String> = (0..REQUESTS_PER_FILE)
                .map(|i| {
                    let (owner, body) = (workload.graphql)(i);
                    format!("{}\t{body}", tokens[(owner - 1) as usize])
                })
                .collect();
            resolve_ids(&mut meter, &mut lines).await?;
            let requests = work.join(format!("{}.requests", workload.name));
            std::fs::write(&requests, lines.join("\n") + "\n")?;
            let script = work.join(format!("{}.sql", workload.name));
            std::fs::write(&script, workload.pgbench)?;

            wrk(&server.base, &requests, connections, &warmup)?;
            meter.batch_execute("SELECT pg_stat_statements_reset()").await?;
            let load = wrk(&server.base, &requests, connections, &duration)?;
            let (statements, lookups) = statements_since_reset(&mut meter).await?;
            let (statements, lookups) =
                (statements as f64 / load.requests, lookups as f64 / load.requests);
            let ceiling = pgbench(&bin_dir, &url, &script, connections, seconds(&duration))?;
            if load.errors > 0 {
                valid = false;
                eprintln!("{}: {} errors, e.g. {}", workload.name, load.errors, load.sample);
            }
            writeln!(
                report,
                "| {} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.2} ({:.2}) | {:.0} | {:.2}× |",
                workload.name,
                load.per_second,
                load.p50_ms,
                load.p99_ms,
                load.errors,
                statements,
                lookups,
                ceiling,
                load.per_second / ceiling
            )?;
            cortex_rates.push((workload.name, load.per_second));
            println!("{}: done", workload.name);
        }
        writeln!(
            report,
            "\nserver RSS: peak {:.1} MiB, now {:.1} MiB",
            rss_mib(server.child.id(), "VmHWM:"),
            rss_mib(server.child.id(), "VmRSS:")
        )?;
        drop(server);
        if std::env::var("BENCH_COMPARE").as_deref() == Ok("postgraphile") {
            let compare = BenchRun { url: &url, work: &work, connections, duration: &duration, warmup: &warmup };
            valid &= compare_with_postgraphile(&compare, &mut meter, &cortex_rates, &mut report).await?;
        }
        meter
            .batch_execute("DELETE FROM messages WHERE content LIKE 'bench message %' OR content = 'pgbench message'")
            .await?;
        print!("{report}");
        if !valid {
            println!("INVALID RUN: some requests failed");
        }
        anyhow::Ok(valid)
    });
    if let Some(cluster) = cluster {
        cluster.stop()?;
    }
    if !result? {
        std::process::exit(1);
    }
    Ok(())
}

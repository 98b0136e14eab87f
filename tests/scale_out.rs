//! Running more than one: a streaming replica for reads (a real standby copied by
//! `pg_basebackup -R`), PgBouncer in transaction mode (Debian's `pgbouncer`), and
//! two `cortex serve` processes on one database. Subscriptions across processes
//! are in `tests/subscriptions.rs`; the API suite through PgBouncer is
//! `TEST_PGBOUNCER=1 cargo test` (README, Running more than one).

mod common;

use std::time::{Duration, Instant};

use cortex::auth::Authenticator;
use cortex::db::cluster::{ClusterOptions, EmbeddedCluster};
use cortex::db::connect_once;
use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use common::pooler::PgBouncer;
use common::PrivateCluster;

const SECRET: &str = "scale-out-test-secret-0123456789abcdef";
const DATABASE: &str = "cortex_scale";

/// A primary with a fresh migrated database, and a hot standby streaming from it.
struct Topology {
    primary: EmbeddedCluster,
    standby: EmbeddedCluster,
    primary_url: String,
    standby_url: String,
}

impl Topology {
    async fn start(name: &str) -> Self {
        let primary = PrivateCluster::new(&format!("{name}-primary-pg"), &[])
            .start()
            .await;
        let primary_url = PrivateCluster::fresh_database(&primary, DATABASE).await;
        let standby_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{name}-standby-pg"));
        let mut options = ClusterOptions::new(&standby_dir);
        options.standby_of = Some(format!(
            "host={} port=5432 user=cortex",
            primary.socket_dir().display()
        ));
        let standby = tokio::task::spawn_blocking(move || {
            // A standby left by an earlier run copied an older primary: copy afresh.
            if options.base_dir.exists() {
                let link = options.base_dir.join("pgdata");
                if let Ok(stale) = EmbeddedCluster::start(&options) {
                    stale.stop().expect("stop the stale standby");
                }
                if let Ok(relocated) = std::fs::read_link(&link) {
                    let _ = std::fs::remove_dir_all(relocated);
                }
                std::fs::remove_dir_all(&options.base_dir).expect("remove the stale standby");
            }
            EmbeddedCluster::start(&options).expect("start the standby")
        })
        .await
        .unwrap();
        let standby_url = standby.database_url(DATABASE);
        Self {
            primary,
            standby,
            primary_url,
            standby_url,
        }
    }

    /// Pauses or resumes the standby's replay (it keeps receiving WAL).
    async fn replay(&self, on: bool) {
        let mut conn = connect_once(&self.standby_url).await.unwrap();
        let statement = if on {
            "SELECT pg_wal_replay_resume()"
        } else {
            "SELECT pg_wal_replay_pause()"
        };
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }

    async fn stop(self) {
        PrivateCluster::stop(self.standby).await;
        PrivateCluster::stop(self.primary).await;
    }
}

/// A `cortex serve` process, killed when dropped.
struct Instance {
    served: common::Served,
}

impl Instance {
    fn start(envs: &[(&str, &str)]) -> Self {
        let mut all = vec![("PORT", "0"), ("JWT_SECRET", SECRET)];
        all.extend_from_slice(envs);
        let mut command = common::cortex_command(&all);
        command.arg("serve");
        Self {
            served: common::serve_until_listening(command),
        }
    }

    fn base(&self) -> &str {
        &self.served.base
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.served.child.kill();
        let _ = self.served.child.wait();
    }
}

fn token(user: &str) -> String {
    Authenticator::new(SECRET.as_bytes()).mint(user, Some(user), None, 3600)
}

/// Posts `query` as `user` with extra `headers`; returns the response's headers
/// and body.
async fn post(
    base: &str,
    user: &str,
    query: &str,
    variables: Value,
    headers: &[(&str, &str)],
) -> (HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token(user))
        .json(&json!({"query": query, "variables": variables}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let headers = response.headers().clone();
    (headers, response.json().await.unwrap())
}

/// `data` of a query that must succeed.
async fn ok(base: &str, user: &str, query: &str, variables: Value) -> Value {
    let (_, body) = post(base, user, query, variables, &[]).await;
    assert!(body.get("errors").is_none(), "{body:#}");
    body["data"].clone()
}

async fn health(base: &str) -> Value {
    reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `base` reads from `serving` replicas.
async fn until_replicas_serve(base: &str, serving: u64) {
    let started = Instant::now();
    loop {
        let health = health(base).await;
        if health["replicas"]["serving"] == serving {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "replicas serving never became {serving}: {health:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CREATE_SHARED: &str = "mutation($topic: String!, $with: [String!]!) { createWorkspaceWithConversation(workspace: {name: \"shared\"}, conversation: {topic: $topic, participantIds: $with}) { conversation { id } } }";
const PARTICIPATING: &str = "{ participatingConversations(first: 50) { nodes { topic } } }";
const SEND_MESSAGE: &str = "mutation($c: ID!, $t: String!) { sendMessage(input: {conversationId: $c, content: $t}) { id } }";
const MESSAGE_COUNT: &str = "query($c: ID!) { conversation(id: $c) { messages { totalCount } } }";

/// Carol's new workspace with a conversation `topic` that `with` take part in;
/// the conversation's id.
async fn shared_conversation(base: &str, topic: &str, with: &[&str]) -> String {
    let data = ok(
        base,
        "carol",
        CREATE_SHARED,
        json!({"topic": topic, "with": with}),
    )
    .await;
    data["createWorkspaceWithConversation"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `/metrics` of `base` (as text, and parsed), read with `token`.
async fn metrics(base: &str, token: &str) -> (String, prometheus_parse::Scrape) {
    let text = common::metrics_text(base, token).await;
    let scrape = common::scrape_metrics(&text);
    (text, scrape)
}

/// Query requests `scrape`'s instance read from `target` (0 when none).
fn reads_on(scrape: &prometheus_parse::Scrape, target: &str) -> f64 {
    common::metric_value(scrape, "cortex_db_read_target_total", &[("target", target)])
        .unwrap_or(0.0)
}

fn topics(data: &Value) -> Vec<String> {
    let mut topics: Vec<String> = data["participatingConversations"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["topic"].as_str().unwrap().to_string())
        .collect();
    topics.sort();
    topics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_read_from_the_replica_and_a_writer_reads_its_own_writes() {
    let topology = Topology::start("replica-reads").await;
    let replicas = topology.standby_url.clone();
    let a = Instance::start(&[
        ("DATABASE_URL", &topology.primary_url),
        ("DATABASE_REPLICA_URLS", &replicas),
        ("REPLICA_MAX_LAG", "60"),
    ]);
    let b = Instance::start(&[
        ("DATABASE_URL", &topology.primary_url),
        ("DATABASE_REPLICA_URLS", &replicas),
        ("REPLICA_MAX_LAG", "60"),
    ]);
    until_replicas_serve(a.base(), 1).await;
    until_replicas_serve(b.base(), 1).await;
    // Both users exist before the standby stops replaying.
    assert_eq!(
        topics(&ok(a.base(), "bo", PARTICIPATING, json!({})).await).len(),
        0
    );
    ok(a.base(), "carol", PARTICIPATING, json!({})).await;

    topology.replay(false).await;
    // Carol writes through instance A: the answer says where the primary stands.
    let (headers, body) = post(
        a.base(),
        "carol",
        CREATE_SHARED,
        json!({"topic": "planning", "with": ["bo"]}),
        &[],
    )
    .await;
    assert!(body.get("errors").is_none(), "{body:#}");
    let lsn = headers
        .get("cortex-lsn")
        .expect("a write answers with the primary's position")
        .to_str()
        .unwrap()
        .to_string();
    let cookie = headers
        .get("set-cookie")
        .expect("and sets it as a cookie")
        .to_str()
        .unwrap();
    assert!(
        cookie.starts_with(&format!("cortex_lsn={lsn};")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");

    // Carol reads her write at once on either instance with nothing but her
    // token: the one that took it remembers, and told the other (NOTIFY).
    for instance in [&a, &b] {
        assert_eq!(
            topics(&ok(instance.base(), "carol", PARTICIPATING, json!({})).await),
            ["planning"]
        );
    }
    // With the position (header or cookie), any instance sends her to a database
    // that has it.
    for header in [
        ("cortex-lsn", lsn.clone()),
        ("cookie", format!("cortex_lsn={lsn}")),
    ] {
        let (_, body) = post(
            b.base(),
            "carol",
            PARTICIPATING,
            json!({}),
            &[(header.0, &header.1)],
        )
        .await;
        assert_eq!(topics(&body["data"]), ["planning"], "{header:?}: {body:#}");
    }
    // Bo, who wrote nothing, reads from the replica, which has not replayed it...
    for instance in [&a, &b] {
        assert!(topics(&ok(instance.base(), "bo", PARTICIPATING, json!({})).await).is_empty());
    }
    // ...unless he carries the position (Carol told him), which sends him to the primary.
    let (_, body) = post(
        a.base(),
        "bo",
        PARTICIPATING,
        json!({}),
        &[("cortex-lsn", &lsn)],
    )
    .await;
    assert_eq!(topics(&body["data"]), ["planning"], "{body:#}");
    // A malformed position is ignored, not an error.
    let (_, body) = post(
        a.base(),
        "bo",
        PARTICIPATING,
        json!({}),
        &[("cortex-lsn", "x/y")],
    )
    .await;
    assert!(body.get("errors").is_none(), "{body:#}");

    // Replay resumes: the replica catches up and Bo reads the conversation from it.
    topology.replay(true).await;
    let started = Instant::now();
    while topics(&ok(b.base(), "bo", PARTICIPATING, json!({})).await).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the replica never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a, b));
    topology.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_further_behind_than_replica_max_lag_is_skipped() {
    let topology = Topology::start("replica-lag").await;
    let a = Instance::start(&[
        ("DATABASE_URL", &topology.primary_url),
        ("DATABASE_REPLICA_URLS", &topology.standby_url),
        ("REPLICA_MAX_LAG", "1"),
    ]);
    until_replicas_serve(a.base(), 1).await;
    ok(a.base(), "bo", PARTICIPATING, json!({})).await;
    topology.replay(false).await;
    shared_conversation(a.base(), "late", &["bo"]).await;
    // Past one second behind, the replica is out of service: the primary answers.
    until_replicas_serve(a.base(), 0).await;
    assert_eq!(
        topics(&ok(a.base(), "bo", PARTICIPATING, json!({})).await),
        ["late"]
    );
    // The standby has still not replayed it: that answer came from the primary.
    let mut standby = connect_once(&topology.standby_url).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Paused {
        #[diesel(sql_type = Bool)]
        paused: bool,
    }
    let paused: Paused = diesel::sql_query("SELECT pg_is_wal_replay_paused() AS paused")
        .get_result(&mut standby)
        .await
        .unwrap();
    assert!(paused.paused);
    // Caught up again, it serves again.
    topology.replay(true).await;
    until_replicas_serve(a.base(), 1).await;
    drop(a);
    topology.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_mid_run_costs_the_clients_no_errors() {
    let topology = Topology::start("replica-stop").await;
    let a = Instance::start(&[
        ("DATABASE_URL", &topology.primary_url),
        ("DATABASE_REPLICA_URLS", &topology.standby_url),
        ("METRICS_TOKEN", "scale-out-metrics"),
    ]);
    shared_conversation(a.base(), "steady", &["bo"]).await;
    until_replicas_serve(a.base(), 1).await;
    // Bo reads from the replica once it has replayed Carol's write.
    let started = Instant::now();
    while topics(&ok(a.base(), "bo", PARTICIPATING, json!({})).await).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let base = a.base().to_string();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(4) {
                    let (_, body) = post(&base, "bo", PARTICIPATING, json!({}), &[]).await;
                    answers.push(body);
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let Topology {
        primary, standby, ..
    } = topology;
    PrivateCluster::stop(standby).await;
    let mut total = 0;
    for reader in readers {
        for body in reader.await.unwrap() {
            assert!(body.get("errors").is_none(), "{body:#}");
            assert_eq!(topics(&body["data"]), ["steady"]);
            total += 1;
        }
    }
    assert!(total > 20, "only {total} reads");
    let health = health(a.base()).await;
    assert_eq!(health["status"], "ok", "{health:#}");
    assert_eq!(health["replicas"]["serving"], 0, "{health:#}");
    // The metrics say where the reads went: the replica, then the primary.
    let (text, scrape) = metrics(a.base(), "scale-out-metrics").await;
    assert!(reads_on(&scrape, "replica") > 0.0, "{text}");
    assert!(
        reads_on(&scrape, "primary") + reads_on(&scrape, "primary_retry") > 0.0,
        "{text}"
    );
    assert_eq!(
        common::metric_value(&scrape, "cortex_db_replicas_serving", &[]).unwrap_or(0.0),
        0.0,
        "{text}"
    );
    drop(a);
    PrivateCluster::stop(primary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database_without_losing_or_duplicating_anything() {
    // An empty database: both instances migrate it at once.
    let db = common::TestDb::empty().await;
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Instance::start(&[("DATABASE_URL", &db.url)]));
        let b = s.spawn(|| Instance::start(&[("DATABASE_URL", &db.url)]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut conn = db.conn().await;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let versions: Count = diesel::sql_query(
        "SELECT count(*) - count(DISTINCT version) AS n FROM __diesel_schema_migrations",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(versions.n, 0, "a migration ran twice");
    let applied: Count = diesel::sql_query("SELECT count(*) AS n FROM __diesel_schema_migrations")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(applied.n as usize, common::migration_count());

    // A round-robin client: each request to the other instance than the last.
    let instances = [a.base().to_string(), b.base().to_string()];
    let conversation = shared_conversation(&instances[0], "rr", &["bo"]).await;
    let sends: Vec<_> = (0..40)
        .map(|i| {
            let base = instances[i % 2].clone();
            let conversation = conversation.clone();
            tokio::spawn(async move {
                let user = if i % 3 == 0 { "bo" } else { "carol" };
                ok(
                    &base,
                    user,
                    SEND_MESSAGE,
                    json!({"c": conversation, "t": format!("m{i}")}),
                )
                .await
            })
        })
        .collect();
    for send in sends {
        send.await.unwrap();
    }
    // Every instance sees every write at once, each exactly once.
    for base in &instances {
        let data = ok(
            base,
            "bo",
            "query($c: ID!) { conversation(id: $c) { messages(first: 100) { totalCount nodes { content } } } }",
            json!({"c": conversation}),
        )
        .await;
        let messages = &data["conversation"]["messages"];
        assert_eq!(messages["totalCount"], 40);
        let mut contents: Vec<&str> = messages["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["content"].as_str().unwrap())
            .collect();
        contents.sort();
        contents.dedup();
        assert_eq!(contents.len(), 40);
    }

    // One token, both instances; a deactivation reaches both within the caller
    // cache's 10 seconds.
    diesel::sql_query("UPDATE users SET is_active = false WHERE user_id = 'bo'")
        .execute(&mut conn)
        .await
        .unwrap();
    let started = Instant::now();
    for base in &instances {
        loop {
            let (_, body) = post(base, "bo", PARTICIPATING, json!({}), &[]).await;
            if common::code(&body) == "UNAUTHENTICATED" {
                break;
            }
            assert!(
                started.elapsed() < cortex::auth::CALLER_CACHE_TTL + Duration::from_secs(2),
                "{base} still serves a deactivated user: {body:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A statement diesel keeps prepared on its connection (its SQL is fixed).
async fn count_users(conn: &mut diesel_async::AsyncPgConnection) -> diesel::QueryResult<i64> {
    use diesel::QueryDsl;
    cortex::db::schema::users::table
        .count()
        .get_result(conn)
        .await
}

/// Ends every server connection to the test database (not this one), and waits
/// until they are gone and PgBouncer has seen them close.
async fn end_server_connections(direct: &str) {
    let mut conn = connect_once(direct).await.unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid()"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let started = Instant::now();
    loop {
        let left = diesel::sql_query(format!(
            "SELECT 1 FROM pg_stat_activity WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid()"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{left} backends left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_pgbouncer_in_transaction_mode_prepared_statements_break_and_the_safe_mode_does_not()
{
    let cluster = PrivateCluster::new("pgbouncer-pg", &[]).start().await;
    let direct = PrivateCluster::fresh_database(&cluster, DATABASE).await;
    // One server connection: every client shares it.
    let Some(pooler) = PgBouncer::start(cluster.socket_dir(), 1) else {
        return;
    };
    let url = pooler.url(DATABASE);

    // The failure the mode exists for: a statement prepared on one server is
    // executed later on another (here the first server ended, as PgBouncer's
    // `server_lifetime` or a failover ends them).
    let prepared = cortex::config::PoolConfig {
        size: 1,
        ..common::test_pool_config()
    };
    let safe = cortex::config::PoolConfig {
        prepared_statements: false,
        statement_timeout: Duration::from_secs(1),
        ..prepared.clone()
    };
    let db = cortex::db::Database::connect(&url, &prepared)
        .await
        .unwrap();
    let mut conn = db.conn(None).await.unwrap();
    count_users(&mut conn).await.unwrap();
    end_server_connections(&direct).await;
    let error = count_users(&mut conn).await.unwrap_err().to_string();
    assert!(error.contains("does not exist"), "{error}");
    drop(conn);
    // Without prepared statements, each unit prepares what it runs, in its own
    // transaction: any server will do.
    let db = cortex::db::Database::connect(&url, &safe).await.unwrap();
    for _ in 0..2 {
        let users: Result<i64, cortex::error::AppError> =
            db.run(None, async |c| Ok(count_users(c).await?)).await;
        assert_eq!(users.unwrap(), 0);
        end_server_connections(&direct).await;
    }

    // The statement timeout travels with each transaction (`SET LOCAL`): it
    // holds on whichever server PgBouncer picks.
    let db = cortex::db::Database::connect(&url, &safe).await.unwrap();
    let started = Instant::now();
    let slow: Result<usize, cortex::error::AppError> = db
        .run(None, async |c| {
            Ok(diesel::sql_query("SELECT pg_sleep(5)").execute(c).await?)
        })
        .await;
    assert_eq!(slow.unwrap_err().code(), "TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(4));
    drop(db);

    // Two `cortex serve` through a PgBouncer of two server connections, with
    // their session work on a direct URL. Two processes number their statements
    // alike (`s0`, `s1`, …): one left on a server would collide with the other's.
    drop(pooler);
    let pooler = PgBouncer::start(cluster.socket_dir(), 2).expect("started above");
    let url = pooler.url(DATABASE);
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_DIRECT_URL", &direct),
        ("DB_PREPARED_STATEMENTS", "false"),
        ("DB_POOL_SIZE", "8"),
    ];
    let (a, b) = (Instance::start(&env), Instance::start(&env));
    let conversation = shared_conversation(a.base(), "pooled", &["bo"]).await;
    // Concurrent reads and writes, sixteen pool connections on two servers.
    let work: Vec<_> = (0..48)
        .map(|i| {
            let base = [a.base(), b.base()][(i / 2) % 2].to_string();
            let conversation = conversation.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    ok(&base, "carol", SEND_MESSAGE, json!({"c": conversation, "t": format!("m{i}")})).await
                } else {
                    ok(&base, "bo", "{ participatingConversations { nodes { topic messages(first: 5) { nodes { content sender { name } } } } } }", json!({})).await
                }
            })
        })
        .collect();
    for w in work {
        w.await.unwrap();
    }
    let data = ok(a.base(), "bo", MESSAGE_COUNT, json!({"c": conversation})).await;
    assert_eq!(data["conversation"]["messages"]["totalCount"], 24);
    drop((a, b));
    // Nothing the units (or the connections' set-up) prepared outlives them on a
    // server: two open transactions hold PgBouncer's two servers, one each.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = connect_once(&url).await.unwrap();
        diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, "BEGIN")
            .await
            .unwrap();
        let left = common::text_lines(
            &mut conn,
            "SELECT name || ': ' || statement AS line FROM pg_prepared_statements
              WHERE statement NOT LIKE '%pg_prepared_statements%'",
        )
        .await;
        assert!(left.is_empty(), "{left:#?}");
        held.push(conn);
    }
    drop(held);
    let mut conn = connect_once(&direct).await.unwrap();
    let pinned: Result<usize, _> = diesel::sql_query(
        "SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = 'cortex_scale'",
    )
    .execute(&mut conn)
    .await;
    assert_eq!(
        pinned.unwrap(),
        0,
        "a transaction was left open on a server"
    );
    drop(pooler);
    PrivateCluster::stop(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_topology_pgbouncer_a_standby_and_two_instances_under_load() {
    let topology = Topology::start("topology").await;
    let Some(pooler) = PgBouncer::start(topology.primary.socket_dir(), 4) else {
        return;
    };
    let pooled = pooler.url(DATABASE);
    let env = [
        ("DATABASE_URL", pooled.as_str()),
        ("DATABASE_DIRECT_URL", &topology.primary_url),
        ("DB_PREPARED_STATEMENTS", "false"),
        ("DATABASE_REPLICA_URLS", &topology.standby_url),
        ("METRICS_TOKEN", "topology-metrics"),
    ];
    let (a, b) = (Instance::start(&env), Instance::start(&env));
    let bases = [a.base().to_string(), b.base().to_string()];
    for base in &bases {
        until_replicas_serve(base, 1).await;
    }
    let writers: Vec<String> = (0..4).map(|k| format!("w{k}")).collect();
    let with: Vec<&str> = writers.iter().map(String::as_str).collect();
    let conversation = shared_conversation(&bases[0], "load", &with).await;

    // Writers post through one instance and read their message back at once
    // through the other, with only their token; readers read meanwhile.
    let started = Instant::now();
    let run_for = Duration::from_secs(4);
    let mut tasks = Vec::new();
    for (k, writer) in writers.into_iter().enumerate() {
        let (bases, conversation) = (bases.clone(), conversation.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while started.elapsed() < run_for {
                let text = format!("{writer} {done}");
                ok(&bases[(k + done) % 2], &writer, SEND_MESSAGE, json!({"c": conversation, "t": text})).await;
                let data = ok(
                    &bases[(k + done + 1) % 2],
                    &writer,
                    "query($c: ID!) { conversation(id: $c) { messages(last: 50) { nodes { content } } } }",
                    json!({"c": conversation}),
                )
                .await;
                let contents = data["conversation"]["messages"]["nodes"].to_string();
                assert!(contents.contains(&format!("\"{text}\"")), "{text} not read back: {contents}");
                done += 1;
            }
            done
        }));
    }
    let mut readers = Vec::new();
    for base in &bases {
        let base = base.clone();
        readers.push(tokio::spawn(async move {
            let mut done = 0;
            while started.elapsed() < run_for {
                let (_, body) = post(&base, "bo", PARTICIPATING, json!({}), &[]).await;
                assert!(body.get("errors").is_none(), "{body:#}");
                done += 1;
            }
            done
        }));
    }
    // Mid-run, the standby stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let Topology {
        primary, standby, ..
    } = topology;
    PrivateCluster::stop(standby).await;
    let mut writes = 0;
    for task in tasks {
        writes += task.await.unwrap();
    }
    let mut reads = 0;
    for task in readers {
        reads += task.await.unwrap();
    }
    assert!(writes > 8 && reads > 8, "{writes} writes, {reads} reads");
    let data = ok(
        &bases[1],
        "carol",
        MESSAGE_COUNT,
        json!({"c": conversation}),
    )
    .await;
    assert_eq!(data["conversation"]["messages"]["totalCount"], writes);
    // Reads went to the replica until it stopped.
    let mut replica_reads = 0.0;
    for base in &bases {
        replica_reads += reads_on(&metrics(base, "topology-metrics").await.1, "replica");
    }
    assert!(replica_reads > 0.0);
    drop((a, b));
    drop(pooler);
    PrivateCluster::stop(primary).await;
}

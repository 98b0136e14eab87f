//! The test harness: one throw-away PostgreSQL cluster per machine (started like the
//! embedded default, or `TEST_DATABASE_URL`), one migrated template database per
//! migration set, and a fresh database per test cloned from it, so tests run in
//! parallel and never see each other's rows.
#![allow(
    dead_code,
    reason = "each test binary uses its own part of these helpers; `expect` would fail in the binaries that use them all"
)]

pub(crate) mod bombs;
pub(crate) mod browser;
pub(crate) mod pooler;
pub(crate) mod tools;
pub(crate) mod ws;

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cortex::auth::Authenticator;
use cortex::config::{Config, PoolConfig};
use cortex::db::cluster::{ClusterOptions, EmbeddedCluster};
use cortex::db::{connect_once, Database};
use cortex::server::quote_identifier;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::{json, Value};

/// Builds the URL of a database on the test server from its name.
type UrlFor = Box<dyn Fn(&str) -> String + Send + Sync>;

struct Server {
    /// URL of the maintenance database (`postgres`) on the test server.
    admin_url: String,
    /// URL template: `{db}` is replaced by a database name.
    url_for: UrlFor,
    template: String,
    /// With `TEST_PGBOUNCER=1`: every test API's pool goes through PgBouncer in
    /// transaction mode, without prepared statements (`DB_PREPARED_STATEMENTS=false`).
    pooler: Option<pooler::PgBouncer>,
    _cluster: Option<EmbeddedCluster>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// Runs async set-up code on a private runtime (tests each have their own runtime,
/// and connections must not outlive the runtime that made them).
fn block_on<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f)
        })
        .join()
        .expect("set-up thread")
    })
}

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let (admin_url, url_for, cluster): (String, UrlFor, _) =
            match std::env::var("TEST_DATABASE_URL")
                .ok()
                .filter(|v| !v.is_empty())
            {
                Some(url) => {
                    let base = url.clone();
                    (
                        replace_db(&url, "postgres"),
                        Box::new(move |db: &str| replace_db(&base, db)),
                        None,
                    )
                }
                None => {
                    let mut options = ClusterOptions::new(test_cluster_dir());
                    options.keep_running = true;
                    options.extra_settings = vec![
                        // Throw-away data: trade durability for speed.
                        "fsync = off".into(),
                        "synchronous_commit = off".into(),
                        "full_page_writes = off".into(),
                        "pg_stat_statements.track = all".into(),
                    ];
                    let cluster = EmbeddedCluster::start(&options).expect("start the test cluster");
                    let admin = cluster.database_url("postgres");
                    let template = cluster.database_url("{db}");
                    (
                        admin,
                        Box::new(move |db: &str| template.replace("%7Bdb%7D", db)),
                        Some(cluster),
                    )
                }
            };
        let template = block_on(ensure_template(&admin_url, &url_for));
        let pooler = std::env::var("TEST_PGBOUNCER")
            .is_ok_and(|v| v == "1")
            .then(|| {
                let cluster = cluster.as_ref().expect(
                    "TEST_PGBOUNCER=1 needs the harness's own cluster, not TEST_DATABASE_URL",
                );
                // Two server connections for a pool of five: clients share servers.
                pooler::PgBouncer::start(cluster.socket_dir(), 2)
                    .expect("TEST_PGBOUNCER=1 needs pgbouncer installed")
            });
        Server {
            admin_url,
            url_for,
            template,
            pooler,
            _cluster: cluster,
        }
    })
}

/// Where the test cluster lives: beside the build, reused across runs.
pub(crate) fn test_cluster_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cortex-test-pg")
}

fn replace_db(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let cut = head.rfind('/').expect("URL with a database");
    let mut out = format!("{}/{db}", &head[..cut]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A name that changes whenever a migration file changes.
fn template_name() -> String {
    let mut files: Vec<_> = walk(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations"
    )));
    files.sort();
    let mut hash: u64 = 0xcbf29ce484222325;
    for path in files {
        for byte in path
            .to_string_lossy()
            .bytes()
            .chain(std::fs::read(&path).unwrap_or_default())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x100000001b3);
        }
    }
    format!("cortex_template_{hash:016x}")
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("migrations dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Builds the migrated template once per migration set, under an advisory lock so
/// concurrent test processes wait for one builder.
async fn ensure_template(
    admin_url: &str,
    url_for: &(dyn Fn(&str) -> String + Send + Sync),
) -> String {
    let name = template_name();
    let mut admin = connect_once(admin_url)
        .await
        .expect("connect to the test server");
    diesel::sql_query("SELECT pg_advisory_lock(7270001)")
        .execute(&mut admin)
        .await
        .expect("lock");
    let exists: Count =
        diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(&name)
            .get_result(&mut admin)
            .await
            .expect("look up template");
    if exists.n == 0 {
        let building = format!("{name}_building");
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(&building)
        ))
        .execute(&mut admin)
        .await
        .expect("drop half-built template");
        diesel::sql_query(format!("CREATE DATABASE {}", quote_identifier(&building)))
            .execute(&mut admin)
            .await
            .expect("create template");
        cortex::db::migrations::run_pending(&url_for(&building))
            .await
            .expect("migrate template");
        diesel::sql_query("SELECT pg_stat_statements_reset()")
            .execute(&mut admin)
            .await
            .ok();
        diesel::sql_query(format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_identifier(&building),
            quote_identifier(&name)
        ))
        .execute(&mut admin)
        .await
        .expect("publish template");
    }
    diesel::sql_query("SELECT pg_advisory_unlock(7270001)")
        .execute(&mut admin)
        .await
        .expect("unlock");
    name
}

/// A fresh, migrated database for one test; dropped when the value is dropped.
pub(crate) struct TestDb {
    /// Its name.
    pub(crate) name: String,
    /// Its connection URL.
    pub(crate) url: String,
}

impl TestDb {
    /// Clones the migrated template into a new database.
    pub(crate) async fn new() -> Self {
        Self::create(true).await
    }

    /// An empty database (no migrations) for migration tests.
    pub(crate) async fn empty() -> Self {
        Self::create(false).await
    }

    async fn create(migrated: bool) -> Self {
        let server = server();
        let name = format!("cortex_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = connect_once(&server.admin_url).await.expect("connect");
        let statement = if migrated {
            format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote_identifier(&name),
                quote_identifier(&server.template)
            )
        } else {
            format!("CREATE DATABASE {}", quote_identifier(&name))
        };
        diesel::sql_query(statement)
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = (server.url_for)(&name);
        Self { name, url }
    }

    /// A pool over this database (through PgBouncer with `TEST_PGBOUNCER=1`).
    pub(crate) async fn pool(&self) -> Database {
        let (url, config) = match &server().pooler {
            Some(pooler) => (
                pooler.url(&self.name),
                PoolConfig {
                    prepared_statements: false,
                    ..test_pool_config()
                },
            ),
            None => (self.url.clone(), test_pool_config()),
        };
        Database::connect(&url, &config).await.expect("pool")
    }

    /// One plain connection.
    pub(crate) async fn conn(&self) -> AsyncPgConnection {
        connect_once(&self.url).await.expect("connect")
    }

    /// A configuration that points at this database.
    pub(crate) fn config(&self) -> Config {
        self.config_with(&[])
    }

    /// The configuration with extra variables (which win).
    pub(crate) fn config_with(&self, env: &[(&str, &str)]) -> Config {
        let url = self.url.clone();
        Config::from_lookup(move |k| {
            if let Some((_, v)) = env.iter().find(|(name, _)| *name == k) {
                return Some(v.to_string());
            }
            match k {
                "DATABASE_URL" => Some(url.clone()),
                "DB_POOL_TIMEOUT" => Some("5".into()),
                _ => None,
            }
        })
        .expect("config")
    }
}

/// Pool settings for tests: small and quick to give up.
pub(crate) fn test_pool_config() -> PoolConfig {
    PoolConfig {
        size: 5,
        timeout: std::time::Duration::from_secs(5),
        recycle: std::time::Duration::from_secs(600),
        echo: false,
        statement_timeout: std::time::Duration::from_secs(10),
        slow: None,
        prepared_statements: true,
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = server().admin_url.clone();
        let statement = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(&self.name)
        );
        block_on(async move {
            if let Ok(mut admin) = connect_once(&admin_url).await {
                let _ = diesel::sql_query(statement).execute(&mut admin).await;
            }
        });
    }
}

/// A cluster of one test's own under `target/tmp/<name>`, for tests that stop and
/// start PostgreSQL (the shared test cluster must not be).
pub(crate) struct PrivateCluster {
    options: ClusterOptions,
}

impl PrivateCluster {
    /// The cluster in `target/tmp/<name>`, with `settings` in its configuration.
    pub(crate) fn new(name: &str, settings: &[&str]) -> Self {
        let mut options =
            ClusterOptions::new(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name));
        options.extra_settings = settings.iter().map(|s| s.to_string()).collect();
        Self { options }
    }

    /// Starts it (or attaches).
    pub(crate) async fn start(&self) -> EmbeddedCluster {
        let options = self.options.clone();
        tokio::task::spawn_blocking(move || EmbeddedCluster::start(&options))
            .await
            .unwrap()
            .expect("start the private cluster")
    }

    /// Stops it.
    pub(crate) async fn stop(cluster: EmbeddedCluster) {
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .unwrap()
            .expect("stop the private cluster");
    }

    /// `database` on `cluster`, made afresh and migrated; its URL.
    pub(crate) async fn fresh_database(cluster: &EmbeddedCluster, database: &str) -> String {
        let mut conn = connect_once(&cluster.database_url("postgres"))
            .await
            .unwrap();
        let name = quote_identifier(database);
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = cluster.database_url(database);
        cortex::db::migrations::run_pending(&url).await.unwrap();
        url
    }
}

/// The real router served on a loopback TCP port, so tests talk HTTP the way
/// clients do (headers, body limits and status lines all go over the wire).
pub(crate) struct HttpServer {
    pub(crate) base: String,
    client: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    pub(crate) async fn start(state: cortex::AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = cortex::router(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base,
            client: reqwest::Client::new(),
            _task: task,
        }
    }

    /// Sends `request` (its URI is a path) and returns status, headers and body.
    pub(crate) async fn send(
        &self,
        request: axum::http::Request<axum::body::Body>,
    ) -> (axum::http::StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let response = self
            .client
            .request(parts.method, format!("{}{}", self.base, parts.uri))
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .expect("request over loopback");
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, response.bytes().await.unwrap().to_vec())
    }
}

/// The `cortex` binary with a clean environment (only `PATH`, quiet logs, and
/// `envs`), so a developer's own settings never leak into a test.
pub(crate) fn cortex_command(envs: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    for (k, v) in envs {
        command.env(k, v);
    }
    command
}

/// A `cortex serve` started by a test.
pub(crate) struct Served {
    /// The process.
    pub(crate) child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// What it printed before it listened (tokens, the metrics address, ...).
    pub(crate) banner: Vec<String>,
}

/// Spawns `command` (a `cortex serve`) with stdout piped and waits for its
/// "listening" line; stdout keeps being drained so the child never blocks.
pub(crate) fn serve_until_listening(mut command: std::process::Command) -> Served {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cortex");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let base = loop {
        let line = lines
            .next()
            .expect("cortex exited before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("Cortex is listening on ") {
            break url.trim().to_string();
        }
        banner.push(line);
    };
    std::thread::spawn(move || for _ in lines {});
    Served {
        child,
        base,
        banner,
    }
}

/// `POST /graphql` with a JSON `body`, as `token`'s bearer when given.
pub(crate) fn graphql_post(token: Option<&str>, body: &Value) -> Request<Body> {
    let mut request = Request::post("/graphql").header("content-type", "application/json");
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

/// The HS256 secret of the test API's tokens.
pub(crate) const SECRET: &[u8] = b"graphql-api-test-secret-0123456789";

/// The router on a loopback port over a fresh database, with a token minter.
pub(crate) struct Api {
    pub(crate) db: TestDb,
    pub(crate) http: HttpServer,
    pub(crate) auth: Authenticator,
}

impl Api {
    pub(crate) async fn new() -> Self {
        Self::with_env(&[]).await
    }

    /// The API with extra environment settings (limits, production mode, ...).
    pub(crate) async fn with_env(env: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let state = cortex::AppState::new(db.pool().await, db.config_with(env), SECRET);
        Self {
            http: HttpServer::start(state).await,
            db,
            auth: Authenticator::new(SECRET),
        }
    }

    pub(crate) fn token(&self, user: &str) -> String {
        self.auth
            .mint(user, Some(&format!("{user} name")), None, 3600)
    }

    pub(crate) async fn send(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        self.http.send(request).await
    }

    pub(crate) async fn raw(&self, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let (status, _, bytes) = self.send(graphql_post(token, &body)).await;
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Runs a query as `user`; returns the whole response.
    pub(crate) async fn gql(&self, user: &str, query: &str, variables: Value) -> Value {
        self.raw(
            Some(&self.token(user)),
            json!({"query": query, "variables": variables}),
        )
        .await
        .1
    }

    /// Runs a query that must succeed; returns `data`.
    pub(crate) async fn ok(&self, user: &str, query: &str, variables: Value) -> Value {
        let response = self.gql(user, query, variables).await;
        assert!(
            response.get("errors").is_none(),
            "unexpected errors: {response:#}"
        );
        response["data"].clone()
    }
}

/// The first error's `extensions.code`.
pub(crate) fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

#[derive(diesel::QueryableByName)]
pub(crate) struct Calls {
    #[diesel(sql_type = BigInt)]
    pub(crate) calls: i64,
}

/// A connection for reading `pg_stat_statements` in this test's database.
pub(crate) async fn statement_meter(db: &TestDb) -> diesel_async::AsyncPgConnection {
    let mut conn = db.conn().await;
    diesel::sql_query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// The standard output of a `cortex` run that must have succeeded (its standard
/// error is the failure message).
pub(crate) fn stdout_of_success(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "cortex failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many migrations the binary carries (so tests need no edit when one is added).
pub(crate) fn migration_count() -> usize {
    use diesel::migration::MigrationSource;
    MigrationSource::<diesel::pg::Pg>::migrations(&cortex::db::migrations::MIGRATIONS)
        .expect("embedded migrations")
        .len()
}

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = diesel::sql_types::Text)]
    line: String,
}

/// The `line` column of every row `sql` returns, in its order: tables as text, to
/// compare two states of a database exactly.
pub(crate) async fn text_lines(
    conn: &mut diesel_async::AsyncPgConnection,
    sql: &str,
) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(sql)
        .load::<Line>(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect()
}

/// Statements the server sent to this test's database, from pg_stat_statements
/// (top-level only: an insert's foreign-key checks run inside it; excluding the
/// session settings of a newly opened pool connection and this query itself).
/// Through PgBouncer (`TEST_PGBOUNCER=1`) each unit of work is also wrapped in
/// `BEGIN … COMMIT` (`DB_PREPARED_STATEMENTS=false`): that wrapping is not counted.
pub(crate) async fn statements_run(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
    let wrapping = match server().pooler {
        Some(_) => "AND query NOT IN ('BEGIN', 'COMMIT', 'ROLLBACK')",
        None => "",
    };
    let row: Calls = diesel::sql_query(format!(
        "SELECT coalesce(sum(calls), 0)::bigint AS calls FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND toplevel AND query NOT LIKE '%pg_stat_statements%' AND query <> 'SELECT $1'
            AND query NOT LIKE 'SET %' {wrapping}"
    ))
    .get_result(conn)
    .await
    .expect("pg_stat_statements (the test cluster preloads it)");
    row.calls
}

/// The `/metrics` text of the `cortex serve` at `base`, read with `token`.
pub(crate) async fn metrics_text(base: &str, token: &str) -> String {
    reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `/metrics` text parsed as Prometheus reads it.
pub(crate) fn scrape_metrics(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text")
}

/// The value of metric `name` with `labels` (a histogram's count), if present.
pub(crate) fn metric_value(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => {
                buckets.last().map_or(0.0, |b| b.count)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        })
}

//! Configuration from the environment (and an optional `.env` file), one
//! concern per file: [`database`] (where the database is, the pool), the embedded
//! cluster, HTTP, GraphQL limits, modes and secrets, all read through one table of
//! variables, [`vars`], which also writes the README's table.

pub mod database;
mod env;
pub mod vars;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use database::{redact_url, DatabaseSource, DatabaseUrl, PoolConfig, ReplicaConfig};
use env::Env;
use vars::*;

/// Default `BACKUP_DIR`.
pub const DEFAULT_BACKUP_DIR: &str = "backups";
/// Default `DB_POOL_SIZE`: throughput was flat from 4 to 32 connections on the
/// benchmark machine, tail latency fell up to 16 (`bench/RESULTS.md`).
pub const DEFAULT_POOL_SIZE: u32 = 16;
/// Default `DB_POOL_TIMEOUT`, in seconds.
pub const DEFAULT_POOL_TIMEOUT_SECS: u64 = 5;
/// Default `DB_SLOW_MS`: statements at least this slow are logged (the seed's
/// `log_min_duration_statement` advice, on our side).
pub const DEFAULT_DB_SLOW_MS: u64 = 500;
/// How far behind the primary a replica may be and still serve reads.
pub const DEFAULT_REPLICA_MAX_LAG_SECS: u64 = 5;
/// Default `DB_STATEMENT_TIMEOUT`, in seconds.
pub const DEFAULT_DB_STATEMENT_TIMEOUT_SECS: u64 = 10;
/// Default `REQUEST_TIMEOUT`, in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Default `MAX_BODY_BYTES`: 100 KiB, ten times the largest real query plus variables.
pub const DEFAULT_MAX_BODY_BYTES: usize = 100 * 1024;
/// Default `BATCH_MAX_OPERATIONS` (Apollo Client's `BatchHttpLink` sends at most 10).
pub const DEFAULT_BATCH_MAX_OPERATIONS: usize = 10;
/// Default `QUERY_MAX_DEPTH`: the README's deepest query written Relay-style
/// (`edges { cursor node { … } }` at every level, down to `sender { name }`) is 11
/// levels; depth only stops runaway nesting, complexity is what bounds the work.
pub const DEFAULT_QUERY_MAX_DEPTH: usize = 15;
/// Default `QUERY_MAX_COMPLEXITY`: the README's nested example (10 workspaces × 10
/// conversations × 20 messages with sender) costs 10,230; five times it does not pass.
pub const DEFAULT_QUERY_MAX_COMPLEXITY: usize = 50_000;
/// Default `QUERY_MAX_ALIASES`.
pub const DEFAULT_QUERY_MAX_ALIASES: usize = 15;
/// Default `QUERY_MAX_DIRECTIVES`.
pub const DEFAULT_QUERY_MAX_DIRECTIVES: usize = 50;
/// Default `QUERY_MAX_TOKENS`.
pub const DEFAULT_QUERY_MAX_TOKENS: usize = 10_000;
/// Default `QUERY_MAX_SELECTIONS`: the standard introspection query expands to
/// 239 selections, the README's nested example to 12; a 24-level fragment bomb
/// (each fragment spreading the next twice) would expand to 50,331,647.
pub const DEFAULT_QUERY_MAX_SELECTIONS: usize = 5_000;
/// Default `QUERY_CPU_BUDGET_MS`: the README's nested query spends 2–3 ms of CPU
/// in the GraphQL layer, 10,000 messages in one response 6–7 ms (release build,
/// `bench/RESULTS.md`); a stopped request answered in 70–80 ms.
pub const DEFAULT_QUERY_CPU_BUDGET_MS: u64 = 50;
/// Default `DB_POOL_RECYCLE`, in seconds.
pub const DEFAULT_POOL_RECYCLE_SECS: u64 = 1800;
/// Default `HOST`.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default `PORT`.
pub const DEFAULT_PORT: u16 = 8000;
/// Default `CORTEX_DATA_DIR`.
pub const DEFAULT_DATA_DIR: &str = ".cortex";
/// Default `SHUTDOWN_TIMEOUT`, in seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;
/// Default `SUBSCRIPTION_INIT_TIMEOUT`, in seconds (graphql-ws's own server waits 3 s;
/// a phone on a slow network needs more).
pub const DEFAULT_SUBSCRIPTION_INIT_TIMEOUT_SECS: u64 = 10;
/// Default `SUBSCRIPTION_KEEPALIVE`, in seconds: under the 30–60 s idle timeouts of
/// common load balancers and proxies.
pub const DEFAULT_SUBSCRIPTION_KEEPALIVE_SECS: u64 = 15;
/// Default `SUBSCRIPTION_BUFFER`: events waiting per subscription.
pub const DEFAULT_SUBSCRIPTION_BUFFER: usize = 256;
/// Default `SUBSCRIPTION_MAX_PER_CONNECTION`.
pub const DEFAULT_SUBSCRIPTION_MAX_PER_CONNECTION: usize = 100;
/// Default `SUBSCRIPTION_MAX_PER_INSTANCE` (`bench/RESULTS.md` measures memory per
/// 1,000 subscriptions).
pub const DEFAULT_SUBSCRIPTION_MAX_PER_INSTANCE: usize = 20_000;
/// Default `EVENT_RETENTION`, in seconds: long enough for a reconnect, a tunnel or
/// a laptop lid; a client away longer refetches.
pub const DEFAULT_EVENT_RETENTION_SECS: u64 = 3600;
/// Default `POSTGRES_PORT`.
pub const DEFAULT_POSTGRES_PORT: u16 = 5432;

/// A configuration value that cannot be used; start-up stops with this message.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {variable}={value:?}: expected {expected}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What it was set to (masked for secrets and URLs with a password).
    pub value: String,
    /// What it accepts.
    pub expected: String,
}

/// A value never printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The embedded cluster's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Folder of the embedded cluster and local secrets.
    pub data_dir: PathBuf,
    /// Folder of `initdb`, `pg_ctl` and `postgres`, when set (else searched for).
    pub pg_bin: Option<PathBuf>,
    /// Account PostgreSQL runs as when Cortex runs as root.
    pub pg_user: String,
}

impl EmbeddedConfig {
    /// The embedded cluster's settings from the environment (tools and tests that
    /// start a cluster without a whole configuration).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&Env::process())
    }

    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            data_dir: PathBuf::from(env.text_or_default(&CORTEX_DATA_DIR)),
            pg_bin: env.text(&CORTEX_PG_BIN).map(PathBuf::from),
            pg_user: env.text_or_default(&CORTEX_PG_USER),
        })
    }
}

/// How logs are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// One JSON object per line (`LOG_FORMAT=json`).
    pub json: bool,
    /// The `RUST_LOG` filter.
    pub filter: String,
}

impl LogConfig {
    /// The log settings from the environment (read before anything else starts).
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = Env::process();
        Ok(Self {
            json: env.choice(&LOG_FORMAT)? == "json",
            filter: env.text_or_default(&RUST_LOG),
        })
    }
}

/// Everything Cortex reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database to use.
    pub database: DatabaseSource,
    /// Pool settings.
    pub pool: PoolConfig,
    /// A session connection to the primary, when `database` is a pooler's.
    pub database_direct: Option<DatabaseUrl>,
    /// Read replicas and how far behind they may be.
    pub replicas: ReplicaConfig,
    /// HTTP bind address.
    pub host: IpAddr,
    /// HTTP port.
    pub port: u16,
    /// The embedded cluster's settings: its folder (which also holds the local
    /// secret), binaries and account.
    pub embedded: EmbeddedConfig,
    /// `JWT_SECRET`, when set.
    pub jwt_secret: Option<Secret>,
    /// `CORS_ORIGINS`, when set.
    pub cors_origins: Vec<String>,
    /// Bound on finishing in-flight requests at shutdown.
    pub shutdown_timeout: Duration,
    /// Bound on one HTTP request.
    pub request_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most operations in one batched request.
    pub max_batch: usize,
    /// The query limits.
    pub limits: crate::graphql::limits::QueryLimits,
    /// CPU one HTTP request may spend in the GraphQL layer (`None`: unbounded).
    pub cpu_budget: Option<Duration>,
    /// Production mode: `JWT_SECRET` set and `CORTEX_DEV` not.
    pub production: bool,
    /// Where backups go.
    pub backup_dir: PathBuf,
    /// A separate listener serving `/metrics` (unauthenticated: bind it privately).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `/metrics` on the main port for `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    /// Answer introspection and serve GraphiQL.
    pub introspection: bool,
    /// Add `extensions.cost` (statements, database and CPU time) to every response.
    pub cost_extension: bool,
    /// Trusted documents: the manifest file of registered operations (`PERSISTED_DOCUMENTS`).
    pub persisted_documents: Option<PathBuf>,
    /// Run registered operations only (`PERSISTED_ONLY`).
    pub persisted_only: bool,
    /// Subscriptions: WebSocket timing, buffers, bounds, event retention.
    pub subscriptions: SubscriptionConfig,
}

/// How subscriptions behave (`SUBSCRIPTION_*`, `EVENT_RETENTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// Time a WebSocket gets to send `connection_init`.
    pub init_timeout: Duration,
    /// Interval of the server's pings (`None`: none).
    pub keepalive: Option<Duration>,
    /// Events buffered per subscription.
    pub buffer: usize,
    /// Subscriptions per WebSocket.
    pub max_per_connection: usize,
    /// Subscriptions per instance.
    pub max_per_instance: usize,
    /// How long events are kept for resuming.
    pub retention: Duration,
}

impl Config {
    /// Reads `.env` (when present; real environment variables win) and the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable source (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&get);
        let jwt_secret = env.secret(&JWT_SECRET);
        let production = jwt_secret.is_some() && !env.flag(&CORTEX_DEV)?;
        let introspection = env.flag_or(&INTROSPECTION, !production)?;
        let embedded = EmbeddedConfig::read(&env)?;
        Ok(Self {
            database: database::database(&env)?,
            pool: database::pool(&env)?,
            database_direct: database::direct(&env)?,
            replicas: database::replicas(&env)?,
            host: env.parsed(&HOST)?.expect("HOST has a default"),
            port: env.count(&PORT)?,
            embedded,
            jwt_secret,
            cors_origins: env
                .text(&CORS_ORIGINS)
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().to_string())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            shutdown_timeout: env.seconds(&SHUTDOWN_TIMEOUT)?,
            request_timeout: env.seconds(&REQUEST_TIMEOUT)?,
            max_body_bytes: env.count(&MAX_BODY_BYTES)?,
            max_batch: env.count(&BATCH_MAX_OPERATIONS)?,
            limits: crate::graphql::limits::QueryLimits {
                max_depth: env.count(&QUERY_MAX_DEPTH)?,
                max_complexity: env.count(&QUERY_MAX_COMPLEXITY)?,
                max_aliases: env.count(&QUERY_MAX_ALIASES)?,
                max_directives: env.count(&QUERY_MAX_DIRECTIVES)?,
                max_tokens: env.count(&QUERY_MAX_TOKENS)?,
                max_selections: env.count(&QUERY_MAX_SELECTIONS)?,
                introspection,
            },
            cpu_budget: env.millis_or_off(&QUERY_CPU_BUDGET_MS)?,
            production,
            introspection,
            cost_extension: env.flag_or(&COST_EXTENSION, !production)?,
            persisted_documents: env.text(&PERSISTED_DOCUMENTS).map(PathBuf::from),
            persisted_only: env.flag(&PERSISTED_ONLY)?,
            backup_dir: PathBuf::from(env.text_or_default(&BACKUP_DIR)),
            metrics_addr: env.parsed(&METRICS_ADDR)?,
            metrics_token: env.secret(&METRICS_TOKEN),
            subscriptions: SubscriptionConfig {
                init_timeout: env.seconds(&SUBSCRIPTION_INIT_TIMEOUT)?,
                keepalive: match env.seconds(&SUBSCRIPTION_KEEPALIVE)? {
                    Duration::ZERO => None,
                    every => Some(every),
                },
                buffer: env.count(&SUBSCRIPTION_BUFFER)?,
                max_per_connection: env.count(&SUBSCRIPTION_MAX_PER_CONNECTION)?,
                max_per_instance: env.count(&SUBSCRIPTION_MAX_PER_INSTANCE)?,
                retention: env.seconds(&EVENT_RETENTION)?,
            },
        })
    }

    /// Whether Cortex runs its own cluster (the zero-configuration default).
    pub fn is_embedded(&self) -> bool {
        self.database == DatabaseSource::Embedded
    }
}

#[cfg(test)]
mod tests;

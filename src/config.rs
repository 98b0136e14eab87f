//! Configuration from the environment (and an optional `.env` file).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | — | PostgreSQL URL; when unset (and no `POSTGRES_*`), Cortex runs its embedded cluster |
//! | `POSTGRES_USER` / `POSTGRES_PASSWORD` / `POSTGRES_DB` / `POSTGRES_HOST` / `POSTGRES_PORT` | `postgres` / none / user name / `localhost` / `5432` | the URL in parts, used when `DATABASE_URL` is unset |
//! | `DB_POOL_SIZE` | 16 | connections in the pool (measured: `bench/RESULTS.md`) |
//! | `DB_POOL_TIMEOUT` | 5 | seconds to wait for a pooled connection (and to connect) before `UNAVAILABLE` |
//! | `DB_SLOW_MS` | 500 | log statements at least this slow, with their duration (0: off) |
//! | `DB_STATEMENT_TIMEOUT` | 10 | seconds one SQL statement may run (`statement_timeout`) before `TIMEOUT` |
//! | `DB_POOL_RECYCLE` | 1800 | seconds a connection lives before it is replaced |
//! | `DB_ECHO` | false | log every SQL statement |
//! | `HOST` / `PORT` | `127.0.0.1` / `8000` | address the HTTP server binds |
//! | `CORTEX_DATA_DIR` | `./.cortex` | where the embedded cluster (and local secret) live |
//! | `JWT_SECRET` | — | HS256 secret for bearer tokens; unset on the embedded default → a local one is generated |
//! | `CORS_ORIGINS` | — | comma-separated allowed origins (permissive on the embedded default) |
//! | `SHUTDOWN_TIMEOUT` | 30 | seconds in-flight requests get to finish on SIGTERM/Ctrl-C |
//! | `REQUEST_TIMEOUT` | 30 | seconds one HTTP request may take before `TIMEOUT` |
//! | `MAX_BODY_BYTES` | 102400 | largest request body; larger → 413 |
//! | `BATCH_MAX_OPERATIONS` | 10 | operations in one batched request |
//! | `QUERY_MAX_DEPTH` / `QUERY_MAX_COMPLEXITY` / `QUERY_MAX_ALIASES` / `QUERY_MAX_DIRECTIVES` / `QUERY_MAX_TOKENS` | 10 / 50000 / 15 / 50 / 10000 | query limits (`src/graphql/limits.rs`) |
//! | `QUERY_MAX_SELECTIONS` | 5000 | selections a document may expand to, fragments counted where spread (`src/graphql/limits.rs`) |
//! | `QUERY_CPU_BUDGET_MS` | 50 | milliseconds of CPU one HTTP request may spend in the GraphQL layer before `TIMEOUT` (0: off; `src/graphql/budget.rs`) |
//! | `CORTEX_DEV` | false | development mode even with `JWT_SECRET` set (production mode is `JWT_SECRET` set and no `CORTEX_DEV`) |
//! | `INTROSPECTION` | true in development, false in production | answer introspection (and serve GraphiQL) |
//! | `BACKUP_DIR` | `./backups` | where `cortex backup` writes and `cortex backups` lists |
//! | `METRICS_ADDR` | — | serve Prometheus `/metrics` on this separate address (unauthenticated: keep it private) |
//! | `METRICS_TOKEN` | — | serve `/metrics` on the main port to `Authorization: Bearer <token>` |

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

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
/// Default `DB_STATEMENT_TIMEOUT`, in seconds.
pub const DEFAULT_DB_STATEMENT_TIMEOUT_SECS: u64 = 10;
/// Default `REQUEST_TIMEOUT`, in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Default `MAX_BODY_BYTES`: 100 KiB, ten times the largest real query plus variables.
pub const DEFAULT_MAX_BODY_BYTES: usize = 100 * 1024;
/// Default `BATCH_MAX_OPERATIONS` (Apollo Client's `BatchHttpLink` sends at most 10).
pub const DEFAULT_BATCH_MAX_OPERATIONS: usize = 10;
/// Default `QUERY_MAX_DEPTH`.
pub const DEFAULT_QUERY_MAX_DEPTH: usize = 10;
/// Default `QUERY_MAX_COMPLEXITY`: the README's nested example (10 workspaces × 10
/// conversations × 20 messages with sender) costs 10,220; ten times it does not pass.
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
/// Default `POSTGRES_PORT`.
pub const DEFAULT_POSTGRES_PORT: u16 = 5432;

/// A configuration value that cannot be used; start-up stops with this message.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {variable}={value:?}: expected {expected}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What it was set to.
    pub value: String,
    /// What it accepts.
    pub expected: &'static str,
}

/// Where the database comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSource {
    /// A server given by `DATABASE_URL` or the `POSTGRES_*` parts.
    Url(String),
    /// Cortex's own cluster under the data folder.
    Embedded,
}

/// Connection pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Maximum connections.
    pub size: u32,
    /// Wait for a connection (and for connecting) at most this long.
    pub timeout: Duration,
    /// Replace connections older than this.
    pub recycle: Duration,
    /// Log every SQL statement.
    pub echo: bool,
    /// Bound on one SQL statement (`statement_timeout`), and on a transaction
    /// left idle (`idle_in_transaction_session_timeout`).
    pub statement_timeout: Duration,
    /// Log statements at least this slow (`None`: off).
    pub slow: Option<Duration>,
}

/// Everything Cortex reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database to use.
    pub database: DatabaseSource,
    /// Pool settings.
    pub pool: PoolConfig,
    /// HTTP bind address.
    pub host: IpAddr,
    /// HTTP port.
    pub port: u16,
    /// Folder of the embedded cluster and local secrets.
    pub data_dir: PathBuf,
    /// `JWT_SECRET`, when set.
    pub jwt_secret: Option<String>,
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
    pub metrics_token: Option<String>,
    /// Answer introspection and serve GraphiQL.
    pub introspection: bool,
}

impl Config {
    /// Reads `.env` (when present; real environment variables win) and the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable source (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let database = match get("DATABASE_URL") {
            Some(url) => DatabaseSource::Url(normalize_url(&url).ok_or(ConfigError {
                variable: "DATABASE_URL",
                value: redact_url(&url),
                expected: "a postgres:// or postgresql:// URL",
            })?),
            None => database_from_parts(&get)?,
        };
        let production = get("JWT_SECRET").is_some() && !parse_bool(&get, "CORTEX_DEV", false)?;
        let introspection = parse_bool(&get, "INTROSPECTION", !production)?;
        Ok(Self {
            database,
            pool: PoolConfig {
                size: parse_in(
                    &get,
                    "DB_POOL_SIZE",
                    DEFAULT_POOL_SIZE,
                    1..=1000,
                    "an integer from 1 to 1000",
                )?,
                timeout: Duration::from_secs(parse_in(
                    &get,
                    "DB_POOL_TIMEOUT",
                    DEFAULT_POOL_TIMEOUT_SECS,
                    1..=3600,
                    "a number of seconds from 1 to 3600",
                )?),
                recycle: Duration::from_secs(parse_in(
                    &get,
                    "DB_POOL_RECYCLE",
                    DEFAULT_POOL_RECYCLE_SECS,
                    1..=86_400 * 7,
                    "a number of seconds from 1 to 604800",
                )?),
                echo: parse_bool(&get, "DB_ECHO", false)?,
                statement_timeout: Duration::from_secs(parse_in(
                    &get,
                    "DB_STATEMENT_TIMEOUT",
                    DEFAULT_DB_STATEMENT_TIMEOUT_SECS,
                    1..=3600,
                    "a number of seconds from 1 to 3600",
                )?),
                slow: match parse_in(
                    &get,
                    "DB_SLOW_MS",
                    DEFAULT_DB_SLOW_MS,
                    0..=3_600_000,
                    "a number of milliseconds from 0 (off) to 3600000",
                )? {
                    0 => None,
                    ms => Some(Duration::from_millis(ms)),
                },
            },
            host: match get("HOST") {
                None => DEFAULT_HOST.parse().expect("valid default host"),
                Some(v) => v.trim().parse().map_err(|_| ConfigError {
                    variable: "HOST",
                    value: v,
                    expected: "an IP address such as 127.0.0.1 or 0.0.0.0",
                })?,
            },
            port: parse_in(
                &get,
                "PORT",
                DEFAULT_PORT,
                0..=u16::MAX,
                "a port number from 0 to 65535",
            )?,
            data_dir: get("CORTEX_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            jwt_secret: get("JWT_SECRET"),
            cors_origins: get("CORS_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().to_string())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            shutdown_timeout: Duration::from_secs(parse_in(
                &get,
                "SHUTDOWN_TIMEOUT",
                DEFAULT_SHUTDOWN_TIMEOUT_SECS,
                0..=3600,
                "a number of seconds from 0 to 3600",
            )?),
            request_timeout: Duration::from_secs(parse_in(
                &get,
                "REQUEST_TIMEOUT",
                DEFAULT_REQUEST_TIMEOUT_SECS,
                1..=3600,
                "a number of seconds from 1 to 3600",
            )?),
            max_body_bytes: parse_in(
                &get,
                "MAX_BODY_BYTES",
                DEFAULT_MAX_BODY_BYTES,
                1024..=64 * 1024 * 1024,
                "a number of bytes from 1024 to 67108864",
            )?,
            max_batch: parse_in(
                &get,
                "BATCH_MAX_OPERATIONS",
                DEFAULT_BATCH_MAX_OPERATIONS,
                1..=1000,
                "an integer from 1 to 1000",
            )?,
            limits: crate::graphql::limits::QueryLimits {
                max_depth: parse_in(
                    &get,
                    "QUERY_MAX_DEPTH",
                    DEFAULT_QUERY_MAX_DEPTH,
                    2..=100,
                    "an integer from 2 to 100",
                )?,
                max_complexity: parse_in(
                    &get,
                    "QUERY_MAX_COMPLEXITY",
                    DEFAULT_QUERY_MAX_COMPLEXITY,
                    1..=100_000_000,
                    "an integer from 1 to 100000000",
                )?,
                max_aliases: parse_in(
                    &get,
                    "QUERY_MAX_ALIASES",
                    DEFAULT_QUERY_MAX_ALIASES,
                    0..=10_000,
                    "an integer from 0 to 10000",
                )?,
                max_directives: parse_in(
                    &get,
                    "QUERY_MAX_DIRECTIVES",
                    DEFAULT_QUERY_MAX_DIRECTIVES,
                    0..=10_000,
                    "an integer from 0 to 10000",
                )?,
                max_tokens: parse_in(
                    &get,
                    "QUERY_MAX_TOKENS",
                    DEFAULT_QUERY_MAX_TOKENS,
                    100..=1_000_000,
                    "an integer from 100 to 1000000",
                )?,
                max_selections: parse_in(
                    &get,
                    "QUERY_MAX_SELECTIONS",
                    DEFAULT_QUERY_MAX_SELECTIONS,
                    10..=1_000_000,
                    "an integer from 10 to 1000000",
                )?,
                introspection,
            },
            cpu_budget: match parse_in(
                &get,
                "QUERY_CPU_BUDGET_MS",
                DEFAULT_QUERY_CPU_BUDGET_MS,
                0..=600_000,
                "a number of milliseconds from 0 (off) to 600000",
            )? {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            production,
            introspection,
            backup_dir: get("BACKUP_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_BACKUP_DIR)),
            metrics_addr: match get("METRICS_ADDR") {
                None => None,
                Some(v) => Some(v.trim().parse().map_err(|_| ConfigError {
                    variable: "METRICS_ADDR",
                    value: v,
                    expected: "an address and port such as 127.0.0.1:9100",
                })?),
            },
            metrics_token: get("METRICS_TOKEN"),
        })
    }

    /// Whether Cortex runs its own cluster (the zero-configuration default).
    pub fn is_embedded(&self) -> bool {
        self.database == DatabaseSource::Embedded
    }
}

fn database_from_parts(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<DatabaseSource, ConfigError> {
    let parts = [
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
        "POSTGRES_HOST",
        "POSTGRES_PORT",
    ];
    if parts.iter().all(|p| get(p).is_none()) {
        return Ok(DatabaseSource::Embedded);
    }
    let user = get("POSTGRES_USER").unwrap_or_else(|| "postgres".into());
    let host = get("POSTGRES_HOST").unwrap_or_else(|| "localhost".into());
    let port: u16 = parse_in(
        get,
        "POSTGRES_PORT",
        DEFAULT_POSTGRES_PORT,
        1..=u16::MAX,
        "a port number from 1 to 65535",
    )?;
    let db = get("POSTGRES_DB").unwrap_or_else(|| user.clone());
    let auth = match get("POSTGRES_PASSWORD") {
        Some(pw) => format!("{}:{}", url_part(&user), url_part(&pw)),
        None => url_part(&user),
    };
    Ok(DatabaseSource::Url(format!(
        "postgresql://{auth}@{}:{port}/{}",
        url_part(&host),
        url_part(&db)
    )))
}

fn url_part(text: &str) -> String {
    crate::db::cluster::percent_encode(text).replace('/', "%2F")
}

/// Accepts `postgres://`, `postgresql://` and the seed's SQLAlchemy form
/// `postgresql+asyncpg://`, which names the same server.
fn normalize_url(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    match scheme {
        "postgres" | "postgresql" => Some(url.to_string()),
        s if s.starts_with("postgresql+") || s.starts_with("postgres+") => {
            Some(format!("postgresql://{rest}"))
        }
        _ => None,
    }
}

/// The URL with any password masked, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn parse_in<T>(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    expected: &'static str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd,
{
    match get(variable) {
        None => Ok(default),
        Some(value) => match value.trim().parse::<T>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(ConfigError {
                variable,
                value,
                expected,
            }),
        },
    }
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(variable) {
        None => Ok(default),
        Some(value) => match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError {
                variable,
                value,
                expected: "true or false",
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn production_mode_is_a_jwt_secret_without_cortex_dev() {
        let prod = config(&[("JWT_SECRET", "s")]).unwrap();
        assert!(prod.production && !prod.introspection && !prod.limits.introspection);
        let opted_in = config(&[("JWT_SECRET", "s"), ("INTROSPECTION", "true")]).unwrap();
        assert!(opted_in.production && opted_in.introspection);
        let dev = config(&[("JWT_SECRET", "s"), ("CORTEX_DEV", "1")]).unwrap();
        assert!(!dev.production && dev.introspection);
        assert!(config(&[("QUERY_MAX_DEPTH", "1")]).is_err());
    }

    #[test]
    fn the_cpu_budget_is_milliseconds_and_zero_turns_it_off() {
        let c = config(&[("QUERY_CPU_BUDGET_MS", "250")]).unwrap();
        assert_eq!(c.cpu_budget, Some(Duration::from_millis(250)));
        assert_eq!(
            config(&[("QUERY_CPU_BUDGET_MS", "0")]).unwrap().cpu_budget,
            None
        );
        assert!(config(&[("QUERY_CPU_BUDGET_MS", "soon")]).is_err());
        assert!(config(&[("QUERY_MAX_SELECTIONS", "5")]).is_err());
        let c = config(&[("QUERY_MAX_SELECTIONS", "200")]).unwrap();
        assert_eq!(c.limits.max_selections, 200);
    }

    #[test]
    fn nothing_configured_means_embedded_defaults() {
        let c = config(&[]).unwrap();
        assert!(c.is_embedded());
        assert_eq!(c.pool.size, DEFAULT_POOL_SIZE);
        assert_eq!(c.pool.timeout, Duration::from_secs(5));
        assert_eq!(c.pool.statement_timeout, Duration::from_secs(10));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(
            c.cpu_budget,
            Some(Duration::from_millis(DEFAULT_QUERY_CPU_BUDGET_MS))
        );
        assert_eq!(c.max_body_bytes, 100 * 1024);
        assert_eq!(c.limits, crate::graphql::limits::QueryLimits::default());
        assert!(!c.production && c.introspection);
        assert_eq!(c.pool.recycle, Duration::from_secs(1800));
        assert!(!c.pool.echo);
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert_eq!(c.port, 8000);
        assert_eq!(c.data_dir, PathBuf::from(".cortex"));
    }

    #[test]
    fn database_url_wins_and_sqlalchemy_scheme_is_accepted() {
        let c = config(&[
            ("DATABASE_URL", "postgresql+asyncpg://u:p@h:5433/d"),
            ("POSTGRES_HOST", "x"),
        ])
        .unwrap();
        assert_eq!(
            c.database,
            DatabaseSource::Url("postgresql://u:p@h:5433/d".into())
        );
    }

    #[test]
    fn url_is_built_from_parts() {
        let c = config(&[
            ("POSTGRES_USER", "cortex"),
            ("POSTGRES_PASSWORD", "p@ss"),
            ("POSTGRES_DB", "cortexcore"),
            ("POSTGRES_HOST", "db"),
        ])
        .unwrap();
        assert_eq!(
            c.database,
            DatabaseSource::Url("postgresql://cortex:p%40ss@db:5432/cortexcore".into())
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_what_it_accepts() {
        let e = config(&[("DB_POOL_SIZE", "lots")]).unwrap_err();
        assert_eq!(e.variable, "DB_POOL_SIZE");
        assert!(e.to_string().contains("DB_POOL_SIZE") && e.to_string().contains("integer"));
        assert_eq!(
            config(&[("DB_POOL_SIZE", "0")]).unwrap_err().variable,
            "DB_POOL_SIZE"
        );
        assert_eq!(
            config(&[("DB_ECHO", "maybe")]).unwrap_err().variable,
            "DB_ECHO"
        );
        assert_eq!(config(&[("PORT", "70000")]).unwrap_err().variable, "PORT");
        assert_eq!(
            config(&[("HOST", "not a host")]).unwrap_err().variable,
            "HOST"
        );
        assert_eq!(
            config(&[("DB_POOL_TIMEOUT", "-1")]).unwrap_err().variable,
            "DB_POOL_TIMEOUT"
        );
        assert_eq!(
            config(&[("DATABASE_URL", "mysql://x")])
                .unwrap_err()
                .variable,
            "DATABASE_URL"
        );
        assert_eq!(
            config(&[("POSTGRES_PORT", "x")]).unwrap_err().variable,
            "POSTGRES_PORT"
        );
    }

    #[test]
    fn passwords_never_appear_in_errors() {
        let e = config(&[("DATABASE_URL", "mysql://me:secret@h/db")]).unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }
}

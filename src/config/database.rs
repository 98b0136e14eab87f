//! Where the database is and how the pool uses it.

use std::time::Duration;

use super::vars::*;
use super::{ConfigError, Env};

/// Where the database comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSource {
    /// A server given by `DATABASE_URL` or the `POSTGRES_*` parts.
    Url(DatabaseUrl),
    /// Cortex's own cluster under the data folder.
    Embedded,
}

/// A PostgreSQL URL; `Debug` and `Display` mask its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?})", redact_url(&self.0))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
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
    /// Keep statements prepared per connection, and session settings; off for a
    /// transaction-mode pooler (`DB_PREPARED_STATEMENTS`).
    pub prepared_statements: bool,
}

/// `DATABASE_URL`, else the `POSTGRES_*` parts, else the embedded cluster.
pub(super) fn database(env: &Env<'_>) -> Result<DatabaseSource, ConfigError> {
    if let Some(url) = env.text(&DATABASE_URL) {
        let normalized = normalize_url(&url).ok_or_else(|| DATABASE_URL.error(&url))?;
        return Ok(DatabaseSource::Url(DatabaseUrl(normalized)));
    }
    let parts = [
        POSTGRES_USER,
        POSTGRES_PASSWORD,
        POSTGRES_DB,
        POSTGRES_HOST,
        POSTGRES_PORT,
    ];
    if parts.iter().all(|p| env.text(p).is_none()) {
        return Ok(DatabaseSource::Embedded);
    }
    let user = env.text_or_default(&POSTGRES_USER);
    let host = env.text_or_default(&POSTGRES_HOST);
    let port: u16 = env.count(&POSTGRES_PORT)?;
    let db = env.text(&POSTGRES_DB).unwrap_or_else(|| user.clone());
    let auth = match env.secret(&POSTGRES_PASSWORD) {
        Some(pw) => format!("{}:{}", url_part(&user), url_part(pw.expose())),
        None => url_part(&user),
    };
    Ok(DatabaseSource::Url(DatabaseUrl(format!(
        "postgresql://{auth}@{}:{port}/{}",
        url_part(&host),
        url_part(&db)
    ))))
}

/// Streaming replicas for reads (`DATABASE_REPLICA_URLS`, `REPLICA_MAX_LAG`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaConfig {
    /// The replicas, in the order given.
    pub urls: Vec<DatabaseUrl>,
    /// How far behind the primary a replica may be and still serve reads.
    pub max_lag: Duration,
}

/// `DATABASE_DIRECT_URL`, when set.
pub(super) fn direct(env: &Env<'_>) -> Result<Option<DatabaseUrl>, ConfigError> {
    env.text(&DATABASE_DIRECT_URL)
        .map(|url| {
            normalize_url(&url)
                .map(DatabaseUrl)
                .ok_or_else(|| DATABASE_DIRECT_URL.error(&url))
        })
        .transpose()
}

/// `DATABASE_REPLICA_URLS` (comma-separated) and `REPLICA_MAX_LAG`.
pub(super) fn replicas(env: &Env<'_>) -> Result<ReplicaConfig, ConfigError> {
    let max_lag = env.seconds(&REPLICA_MAX_LAG)?;
    let Some(list) = env.text(&DATABASE_REPLICA_URLS) else {
        return Ok(ReplicaConfig {
            urls: Vec::new(),
            max_lag,
        });
    };
    let urls = list
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| normalize_url(url).map(DatabaseUrl))
        .collect::<Option<Vec<_>>>()
        .filter(|urls| !urls.is_empty())
        .ok_or_else(|| DATABASE_REPLICA_URLS.error(&list))?;
    Ok(ReplicaConfig { urls, max_lag })
}

/// The pool settings.
pub(super) fn pool(env: &Env<'_>) -> Result<PoolConfig, ConfigError> {
    Ok(PoolConfig {
        size: env.count(&DB_POOL_SIZE)?,
        timeout: env.seconds(&DB_POOL_TIMEOUT)?,
        recycle: env.seconds(&DB_POOL_RECYCLE)?,
        echo: env.flag(&DB_ECHO)?,
        statement_timeout: env.seconds(&DB_STATEMENT_TIMEOUT)?,
        slow: env.millis_or_off(&DB_SLOW_MS)?,
        prepared_statements: env.flag(&DB_PREPARED_STATEMENTS)?,
    })
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

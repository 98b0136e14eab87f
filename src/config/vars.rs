//! The table of every environment variable Cortex reads: its name, what it
//! accepts, its default and what it means. The same entry parses the value, words
//! the error when the value is bad, and writes the README's configuration table
//! ([`markdown_table`], kept equal to the README by a test). Long because it is a
//! table: one entry per variable.

use super::*;

/// One environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    /// Its name.
    pub name: &'static str,
    /// What it accepts, and its default.
    pub kind: Kind,
    /// The default as the README shows it, where the kind's own is not the whole story.
    pub default_text: Option<&'static str>,
    /// What it means (Markdown).
    pub meaning: &'static str,
}

/// What a variable accepts.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A whole number within bounds.
    Count {
        /// When unset.
        default: u64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
        /// What the number counts.
        unit: Unit,
    },
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Flag {
        /// When unset.
        default: bool,
    },
    /// One of a few words.
    Choice {
        /// When unset.
        default: &'static str,
        /// The words accepted.
        options: &'static [&'static str],
    },
    /// Free text (a name, a folder, a filter).
    Text {
        /// When unset (`None`: nothing).
        default: Option<&'static str>,
    },
    /// A value that is never printed (a password, a key, a token).
    Secret,
    /// Something parsed by its type (an address), described by `expected`.
    Parsed {
        /// When unset (`None`: nothing).
        default: Option<&'static str>,
        /// What it accepts, for the error.
        expected: &'static str,
    },
}

/// What a [`Kind::Count`] counts, for its error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A plain number.
    Number,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Bytes.
    Bytes,
    /// A TCP port.
    Port,
}

impl Var {
    /// What the variable accepts, as the start-up error says it.
    pub fn expected(&self) -> String {
        match self.kind {
            Kind::Count { min, max, unit, .. } => {
                let from = if min == 0 && matches!(unit, Unit::Millis) {
                    "0 (off)".to_string()
                } else {
                    min.to_string()
                };
                match unit {
                    Unit::Number => format!("an integer from {from} to {max}"),
                    Unit::Seconds => format!("a number of seconds from {from} to {max}"),
                    Unit::Millis => format!("a number of milliseconds from {from} to {max}"),
                    Unit::Bytes => format!("a number of bytes from {from} to {max}"),
                    Unit::Port => format!("a port number from {from} to {max}"),
                }
            }
            Kind::Flag { .. } => "true or false".to_string(),
            Kind::Choice { options, .. } => format!("one of {}", options.join(", ")),
            Kind::Text { .. } | Kind::Secret => "text".to_string(),
            Kind::Parsed { expected, .. } => expected.to_string(),
        }
    }

    /// The default, as the README shows it.
    pub fn default_shown(&self) -> String {
        if let Some(text) = self.default_text {
            return text.to_string();
        }
        match self.kind {
            Kind::Count { default, .. } => format!("`{default}`"),
            Kind::Flag { default } => format!("`{default}`"),
            Kind::Choice { default, .. } => format!("`{default}`"),
            Kind::Text { default: Some(d) }
            | Kind::Parsed {
                default: Some(d), ..
            } => {
                format!("`{d}`")
            }
            Kind::Text { default: None } | Kind::Parsed { default: None, .. } | Kind::Secret => {
                "—".to_string()
            }
        }
    }

    pub(super) fn error(&self, value: &str) -> ConfigError {
        ConfigError {
            variable: self.name,
            value: match self.kind {
                Kind::Secret => "***".to_string(),
                _ if [DATABASE_URL.name, DATABASE_DIRECT_URL.name].contains(&self.name) => {
                    redact_url(value)
                }
                _ if self.name == DATABASE_REPLICA_URLS.name => value
                    .split(',')
                    .map(redact_url)
                    .collect::<Vec<_>>()
                    .join(","),
                _ => value.to_string(),
            },
            expected: self.expected(),
        }
    }
}

/// The configuration table, as the README's "Configuration" section holds it.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for var in ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            var.name,
            var.default_shown(),
            var.meaning
        ));
    }
    out
}

const fn count(default: u64, min: u64, max: u64, unit: Unit) -> Kind {
    Kind::Count {
        default,
        min,
        max,
        unit,
    }
}

const fn var(name: &'static str, kind: Kind, meaning: &'static str) -> Var {
    Var {
        name,
        kind,
        default_text: None,
        meaning,
    }
}

const fn var_shown(
    name: &'static str,
    kind: Kind,
    shown: &'static str,
    meaning: &'static str,
) -> Var {
    Var {
        name,
        kind,
        default_text: Some(shown),
        meaning,
    }
}

// --- The database -----------------------------------------------------------------

/// `DATABASE_URL`.
pub const DATABASE_URL: Var = var(
    "DATABASE_URL",
    Kind::Parsed {
        default: None,
        expected: "a postgres:// or postgresql:// URL",
    },
    "PostgreSQL URL (`postgres://`, `postgresql://`, or the seed's `postgresql+asyncpg://`); unset → embedded cluster. `sslmode=require`/`verify-ca`/`verify-full` and `sslrootcert` ask for TLS",
);
/// `DATABASE_DIRECT_URL`.
pub const DATABASE_DIRECT_URL: Var = var_shown(
    "DATABASE_DIRECT_URL",
    Kind::Parsed {
        default: None,
        expected: "a postgres:// or postgresql:// URL",
    },
    "`DATABASE_URL`",
    "a session (not pooled) connection to the primary, for what needs one: migrations and their lock, the subscriptions' `LISTEN`, imports, backups. Set it when `DATABASE_URL` goes through a transaction-mode pooler (README, Running more than one)",
);
/// `DATABASE_REPLICA_URLS`.
pub const DATABASE_REPLICA_URLS: Var = var(
    "DATABASE_REPLICA_URLS",
    Kind::Parsed {
        default: None,
        expected: "postgres:// or postgresql:// URLs separated by commas",
    },
    "streaming replicas (hot standbys) of the primary: queries read from them, mutations and a caller's reads after its own writes go to the primary (README, Running more than one)",
);
/// `REPLICA_MAX_LAG`.
pub const REPLICA_MAX_LAG: Var = var(
    "REPLICA_MAX_LAG",
    count(DEFAULT_REPLICA_MAX_LAG_SECS, 0, 3600, Unit::Seconds),
    "seconds a replica may be behind the primary and still serve reads; a replica further behind, or down, is skipped until it catches up",
);
/// `POSTGRES_USER`.
pub const POSTGRES_USER: Var = var(
    "POSTGRES_USER",
    Kind::Text {
        default: Some("postgres"),
    },
    "user of the URL built from the `POSTGRES_*` parts when `DATABASE_URL` is unset",
);
/// `POSTGRES_PASSWORD`.
pub const POSTGRES_PASSWORD: Var = var("POSTGRES_PASSWORD", Kind::Secret, "its password");
/// `POSTGRES_DB`.
pub const POSTGRES_DB: Var = var_shown(
    "POSTGRES_DB",
    Kind::Text { default: None },
    "the user name",
    "its database",
);
/// `POSTGRES_HOST`.
pub const POSTGRES_HOST: Var = var(
    "POSTGRES_HOST",
    Kind::Text {
        default: Some("localhost"),
    },
    "its host",
);
/// `POSTGRES_PORT`.
pub const POSTGRES_PORT: Var = var(
    "POSTGRES_PORT",
    count(DEFAULT_POSTGRES_PORT as u64, 1, 65_535, Unit::Port),
    "its port",
);
/// `DB_POOL_SIZE`.
pub const DB_POOL_SIZE: Var = var(
    "DB_POOL_SIZE",
    count(DEFAULT_POOL_SIZE as u64, 1, 1000, Unit::Number),
    "connections in the pool (measured: `bench/RESULTS.md`)",
);
/// `DB_POOL_TIMEOUT`.
pub const DB_POOL_TIMEOUT: Var = var(
    "DB_POOL_TIMEOUT",
    count(DEFAULT_POOL_TIMEOUT_SECS, 1, 3600, Unit::Seconds),
    "seconds to wait for a pooled connection, and to connect (then `UNAVAILABLE`)",
);
/// `DB_POOL_RECYCLE`.
pub const DB_POOL_RECYCLE: Var = var(
    "DB_POOL_RECYCLE",
    count(DEFAULT_POOL_RECYCLE_SECS, 1, 604_800, Unit::Seconds),
    "seconds a connection lives before it is replaced",
);
/// `DB_STATEMENT_TIMEOUT`.
pub const DB_STATEMENT_TIMEOUT: Var = var(
    "DB_STATEMENT_TIMEOUT",
    count(DEFAULT_DB_STATEMENT_TIMEOUT_SECS, 1, 3600, Unit::Seconds),
    "seconds one SQL statement may run (then `TIMEOUT`); also ends a transaction left idle",
);
/// `DB_SLOW_MS`.
pub const DB_SLOW_MS: Var = var(
    "DB_SLOW_MS",
    count(DEFAULT_DB_SLOW_MS, 0, 3_600_000, Unit::Millis),
    "log statements at least this slow, with their duration and without their values (`0`: off)",
);
/// `DB_ECHO`.
pub const DB_ECHO: Var = var(
    "DB_ECHO",
    Kind::Flag { default: false },
    "log every SQL statement (target `cortex::sql`)",
);
/// `DB_PREPARED_STATEMENTS`.
pub const DB_PREPARED_STATEMENTS: Var = var(
    "DB_PREPARED_STATEMENTS",
    Kind::Flag { default: true },
    "keep statements prepared per connection. `false` behind a transaction-mode pooler (PgBouncer before 1.21): each checkout's work runs in one transaction with its timeouts as `SET LOCAL`, and nothing outlives it on the server",
);

// --- The embedded cluster -----------------------------------------------------------

/// `CORTEX_DATA_DIR`.
pub const CORTEX_DATA_DIR: Var = var_shown(
    "CORTEX_DATA_DIR",
    Kind::Text {
        default: Some(DEFAULT_DATA_DIR),
    },
    "`./.cortex`",
    "folder of the embedded cluster (and of the local secret)",
);
/// `CORTEX_PG_BIN`.
pub const CORTEX_PG_BIN: Var = var_shown(
    "CORTEX_PG_BIN",
    Kind::Text { default: None },
    "found on `PATH`, via `pg_config --bindir`, or `/usr/lib/postgresql/*/bin`",
    "PostgreSQL server binaries",
);
/// `CORTEX_PG_USER`.
pub const CORTEX_PG_USER: Var = var(
    "CORTEX_PG_USER",
    Kind::Text {
        default: Some(crate::db::cluster::DEFAULT_PG_USER),
    },
    "account the embedded cluster runs as when Cortex runs as root",
);

// --- HTTP -------------------------------------------------------------------------

/// `HOST`.
pub const HOST: Var = var(
    "HOST",
    Kind::Parsed {
        default: Some(DEFAULT_HOST),
        expected: "an IP address such as 127.0.0.1 or 0.0.0.0",
    },
    "HTTP bind address",
);
/// `PORT`.
pub const PORT: Var = var(
    "PORT",
    count(DEFAULT_PORT as u64, 0, 65_535, Unit::Port),
    "HTTP port (`0` picks a free port)",
);
/// `CORS_ORIGINS`.
pub const CORS_ORIGINS: Var = var(
    "CORS_ORIGINS",
    Kind::Text { default: None },
    "comma-separated allowed origins; unset → any origin in development on the embedded default, none otherwise",
);
/// `SHUTDOWN_TIMEOUT`.
pub const SHUTDOWN_TIMEOUT: Var = var(
    "SHUTDOWN_TIMEOUT",
    count(DEFAULT_SHUTDOWN_TIMEOUT_SECS, 0, 3600, Unit::Seconds),
    "seconds in-flight requests get to finish at shutdown",
);
/// `REQUEST_TIMEOUT`.
pub const REQUEST_TIMEOUT: Var = var(
    "REQUEST_TIMEOUT",
    count(DEFAULT_REQUEST_TIMEOUT_SECS, 1, 3600, Unit::Seconds),
    "seconds one HTTP request may take (then 504, `TIMEOUT`)",
);
/// `MAX_BODY_BYTES`.
pub const MAX_BODY_BYTES: Var = var(
    "MAX_BODY_BYTES",
    count(DEFAULT_MAX_BODY_BYTES as u64, 1024, 67_108_864, Unit::Bytes),
    "largest request body (then 413)",
);
/// `BATCH_MAX_OPERATIONS`.
pub const BATCH_MAX_OPERATIONS: Var = var(
    "BATCH_MAX_OPERATIONS",
    count(DEFAULT_BATCH_MAX_OPERATIONS as u64, 1, 1000, Unit::Number),
    "operations in one batched request",
);

// --- GraphQL ----------------------------------------------------------------------

/// `QUERY_MAX_DEPTH`.
pub const QUERY_MAX_DEPTH: Var = var(
    "QUERY_MAX_DEPTH",
    count(DEFAULT_QUERY_MAX_DEPTH as u64, 2, 100, Unit::Number),
    "deepest field nesting (query limits, below)",
);
/// `QUERY_MAX_COMPLEXITY`.
pub const QUERY_MAX_COMPLEXITY: Var = var(
    "QUERY_MAX_COMPLEXITY",
    count(
        DEFAULT_QUERY_MAX_COMPLEXITY as u64,
        1,
        100_000_000,
        Unit::Number,
    ),
    "largest cost, page sizes multiplied down the nesting",
);
/// `QUERY_MAX_ALIASES`.
pub const QUERY_MAX_ALIASES: Var = var(
    "QUERY_MAX_ALIASES",
    count(DEFAULT_QUERY_MAX_ALIASES as u64, 0, 10_000, Unit::Number),
    "aliases in one document",
);
/// `QUERY_MAX_DIRECTIVES`.
pub const QUERY_MAX_DIRECTIVES: Var = var(
    "QUERY_MAX_DIRECTIVES",
    count(DEFAULT_QUERY_MAX_DIRECTIVES as u64, 0, 10_000, Unit::Number),
    "directives in one document",
);
/// `QUERY_MAX_TOKENS`.
pub const QUERY_MAX_TOKENS: Var = var(
    "QUERY_MAX_TOKENS",
    count(
        DEFAULT_QUERY_MAX_TOKENS as u64,
        100,
        1_000_000,
        Unit::Number,
    ),
    "tokens in one document",
);
/// `QUERY_MAX_SELECTIONS`.
pub const QUERY_MAX_SELECTIONS: Var = var(
    "QUERY_MAX_SELECTIONS",
    count(
        DEFAULT_QUERY_MAX_SELECTIONS as u64,
        10,
        1_000_000,
        Unit::Number,
    ),
    "selections a document may expand to, fragments counted where spread",
);
/// `QUERY_CPU_BUDGET_MS`.
pub const QUERY_CPU_BUDGET_MS: Var = var(
    "QUERY_CPU_BUDGET_MS",
    count(DEFAULT_QUERY_CPU_BUDGET_MS, 0, 600_000, Unit::Millis),
    "milliseconds of CPU one HTTP request may spend in the GraphQL layer (then 504, `TIMEOUT`, `extensions.limit = \"cpu\"`; `0`: off)",
);

// --- Subscriptions (real time) ----------------------------------------------------

/// `SUBSCRIPTION_INIT_TIMEOUT`.
pub const SUBSCRIPTION_INIT_TIMEOUT: Var = var(
    "SUBSCRIPTION_INIT_TIMEOUT",
    count(
        DEFAULT_SUBSCRIPTION_INIT_TIMEOUT_SECS,
        1,
        3600,
        Unit::Seconds,
    ),
    "seconds a WebSocket gets to send `connection_init` (then closed with `4408`)",
);
/// `SUBSCRIPTION_KEEPALIVE`.
pub const SUBSCRIPTION_KEEPALIVE: Var = var(
    "SUBSCRIPTION_KEEPALIVE",
    count(DEFAULT_SUBSCRIPTION_KEEPALIVE_SECS, 0, 3600, Unit::Seconds),
    "seconds between the server's `ping` messages on an idle WebSocket (`0`: none)",
);
/// `SUBSCRIPTION_BUFFER`.
pub const SUBSCRIPTION_BUFFER: Var = var(
    "SUBSCRIPTION_BUFFER",
    count(DEFAULT_SUBSCRIPTION_BUFFER as u64, 1, 100_000, Unit::Number),
    "events waiting per subscription; a client further behind is closed with `1013` and resumes with `after`",
);
/// `SUBSCRIPTION_MAX_PER_CONNECTION`.
pub const SUBSCRIPTION_MAX_PER_CONNECTION: Var = var(
    "SUBSCRIPTION_MAX_PER_CONNECTION",
    count(
        DEFAULT_SUBSCRIPTION_MAX_PER_CONNECTION as u64,
        1,
        100_000,
        Unit::Number,
    ),
    "subscriptions open at once on one WebSocket (then `LIMIT_EXCEEDED`)",
);
/// `SUBSCRIPTION_MAX_PER_INSTANCE`.
pub const SUBSCRIPTION_MAX_PER_INSTANCE: Var = var(
    "SUBSCRIPTION_MAX_PER_INSTANCE",
    count(
        DEFAULT_SUBSCRIPTION_MAX_PER_INSTANCE as u64,
        1,
        10_000_000,
        Unit::Number,
    ),
    "subscriptions open at once on this instance (then `LIMIT_EXCEEDED`)",
);
/// `EVENT_RETENTION`.
pub const EVENT_RETENTION: Var = var(
    "EVENT_RETENTION",
    count(DEFAULT_EVENT_RETENTION_SECS, 60, 604_800, Unit::Seconds),
    "seconds events are kept for subscriptions resuming with `after` (an older cursor gets `CURSOR_EXPIRED`)",
);

// --- Modes, secrets, tools --------------------------------------------------------

/// `JWT_SECRET`.
pub const JWT_SECRET: Var = var(
    "JWT_SECRET",
    Kind::Secret,
    "HS256 secret for bearer tokens; unset → a random local secret kept in `CORTEX_DATA_DIR/jwt_secret` (and, on the embedded default, a seeded demo user with a printed token)",
);
/// `CORTEX_DEV`.
pub const CORTEX_DEV: Var = var(
    "CORTEX_DEV",
    Kind::Flag { default: false },
    "development mode even with `JWT_SECRET` set (production mode is `JWT_SECRET` set and no `CORTEX_DEV`)",
);
/// `INTROSPECTION`.
pub const INTROSPECTION: Var = var_shown(
    "INTROSPECTION",
    Kind::Flag { default: true },
    "on in development, off in production",
    "answer introspection and serve GraphiQL",
);
/// `COST_EXTENSION`.
pub const COST_EXTENSION: Var = var_shown(
    "COST_EXTENSION",
    Kind::Flag { default: true },
    "on in development, off in production",
    "add `extensions.cost` (SQL statements, database and CPU ms) to every response",
);
/// `PERSISTED_DOCUMENTS`.
pub const PERSISTED_DOCUMENTS: Var = var(
    "PERSISTED_DOCUMENTS",
    Kind::Text { default: None },
    "trusted documents: a JSON manifest of registered operations (Apollo's persisted-query manifest, or the `{id: text}` map `relay-compiler` and GraphQL Codegen write)",
);
/// `PERSISTED_ONLY`.
pub const PERSISTED_ONLY: Var = var(
    "PERSISTED_ONLY",
    Kind::Flag { default: false },
    "run only the operations of `PERSISTED_DOCUMENTS`, by id or hash (freeform text and automatic persisted queries are refused)",
);
/// `BACKUP_DIR`.
pub const BACKUP_DIR: Var = var_shown(
    "BACKUP_DIR",
    Kind::Text {
        default: Some(DEFAULT_BACKUP_DIR),
    },
    "`./backups`",
    "where `cortex backup` writes and `cortex backups` lists",
);
/// `METRICS_ADDR`.
pub const METRICS_ADDR: Var = var(
    "METRICS_ADDR",
    Kind::Parsed {
        default: None,
        expected: "an address and port such as 127.0.0.1:9100",
    },
    "serve Prometheus `/metrics` on this separate address (no auth: keep it private)",
);
/// `METRICS_TOKEN`.
pub const METRICS_TOKEN: Var = var(
    "METRICS_TOKEN",
    Kind::Secret,
    "serve `/metrics` on the main port to `Authorization: Bearer <token>`",
);
/// `LOG_FORMAT`.
pub const LOG_FORMAT: Var = var(
    "LOG_FORMAT",
    Kind::Choice {
        default: "text",
        options: &["text", "json"],
    },
    "`json`: one JSON object per log line",
);
/// `RUST_LOG`.
pub const RUST_LOG: Var = var(
    "RUST_LOG",
    Kind::Text {
        default: Some("info"),
    },
    "log filter (`tracing-subscriber`'s `EnvFilter` syntax)",
);

/// Every variable, in the README's order.
pub const ALL: &[Var] = &[
    DATABASE_URL,
    DATABASE_DIRECT_URL,
    DATABASE_REPLICA_URLS,
    REPLICA_MAX_LAG,
    POSTGRES_USER,
    POSTGRES_PASSWORD,
    POSTGRES_DB,
    POSTGRES_HOST,
    POSTGRES_PORT,
    DB_POOL_SIZE,
    DB_POOL_TIMEOUT,
    DB_POOL_RECYCLE,
    DB_STATEMENT_TIMEOUT,
    DB_SLOW_MS,
    DB_ECHO,
    DB_PREPARED_STATEMENTS,
    CORTEX_DATA_DIR,
    CORTEX_PG_BIN,
    CORTEX_PG_USER,
    HOST,
    PORT,
    CORS_ORIGINS,
    SHUTDOWN_TIMEOUT,
    REQUEST_TIMEOUT,
    MAX_BODY_BYTES,
    BATCH_MAX_OPERATIONS,
    QUERY_MAX_DEPTH,
    QUERY_MAX_COMPLEXITY,
    QUERY_MAX_ALIASES,
    QUERY_MAX_DIRECTIVES,
    QUERY_MAX_TOKENS,
    QUERY_MAX_SELECTIONS,
    QUERY_CPU_BUDGET_MS,
    SUBSCRIPTION_INIT_TIMEOUT,
    SUBSCRIPTION_KEEPALIVE,
    SUBSCRIPTION_BUFFER,
    SUBSCRIPTION_MAX_PER_CONNECTION,
    SUBSCRIPTION_MAX_PER_INSTANCE,
    EVENT_RETENTION,
    JWT_SECRET,
    CORTEX_DEV,
    INTROSPECTION,
    COST_EXTENSION,
    PERSISTED_DOCUMENTS,
    PERSISTED_ONLY,
    BACKUP_DIR,
    METRICS_ADDR,
    METRICS_TOKEN,
    LOG_FORMAT,
    RUST_LOG,
];

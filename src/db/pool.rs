//! The connection pool and what every checkout carries: statement counting into
//! the request's [`QueryStats`], statement logging, session timeouts, TLS.
//!
//! With `DB_PREPARED_STATEMENTS=false` (a transaction-mode pooler such as PgBouncer
//! in front), a connection keeps no prepared statement and no session setting:
//! [`Database::run`] does each checkout's work inside one transaction, which opens
//! with the timeouts as `SET LOCAL`. The pooler then keeps one server for the
//! whole unit, and each statement's prepare and execute (two round trips in
//! diesel-async) reach the same server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::ConnectionResult;
use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
};
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncPgConnection, TransactionManager,
};
use futures_util::FutureExt;

use crate::config::PoolConfig;
use crate::db::tls;

/// The connection pool.
pub type DbPool = Pool<AsyncPgConnection>;
/// A failure to get a pooled connection.
pub type PoolError = diesel_async::pooled_connection::bb8::RunError;

/// Statement count and database time of one unit of work (a GraphQL request).
#[derive(Debug, Default)]
pub struct QueryStats {
    statements: AtomicU64,
    db_micros: AtomicU64,
}

impl QueryStats {
    /// Statements sent to PostgreSQL so far.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Time spent waiting on PostgreSQL so far.
    pub fn db_time(&self) -> Duration {
        Duration::from_micros(self.db_micros.load(Ordering::Relaxed))
    }
}

/// What is logged of each statement.
#[derive(Debug, Clone, Copy, Default)]
struct StatementLogging {
    /// Every statement (`DB_ECHO`).
    echo: bool,
    /// Statements slower than this, with their duration (`DB_SLOW_MS`).
    slow: Option<Duration>,
}

/// Counts statements into the current request's [`QueryStats`], logs each one
/// with `DB_ECHO`, and the slow ones past `DB_SLOW_MS`.
struct StatementObserver {
    logging: StatementLogging,
    stats: Option<Arc<QueryStats>>,
    started: Option<Instant>,
}

impl StatementObserver {
    fn new(logging: StatementLogging, stats: Option<Arc<QueryStats>>) -> Self {
        Self {
            logging,
            stats,
            started: None,
        }
    }
}

impl Instrumentation for StatementObserver {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                if self.logging.echo {
                    tracing::info!(target: "cortex::sql", "{query}");
                }
                self.started = Some(Instant::now());
            }
            InstrumentationEvent::FinishQuery { query, .. } => {
                let Some(elapsed) = self.started.take().map(|s| s.elapsed()) else {
                    return;
                };
                if let Some(stats) = &self.stats {
                    stats.statements.fetch_add(1, Ordering::Relaxed);
                    stats
                        .db_micros
                        .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
                }
                if self.logging.slow.is_some_and(|slow| elapsed >= slow) {
                    // The statement without its bound values: those are user data.
                    let text = query.to_string();
                    let statement = text.split(" -- binds:").next().unwrap_or_default();
                    tracing::warn!(
                        target: "cortex::sql::slow",
                        duration_ms = elapsed.as_secs_f64() * 1000.0,
                        "slow statement: {statement}"
                    );
                }
            }
            _ => {}
        }
    }
}

/// The pool plus what every checkout needs.
#[derive(Clone)]
pub struct Database {
    pool: DbPool,
    logging: StatementLogging,
    shapes: Arc<crate::db::metadata::PreparedShapes>,
    /// `None`: connections keep prepared statements and session settings. `Some`:
    /// the statement that opens each unit of work's transaction (PgBouncer-safe).
    unit_begin: Option<Arc<str>>,
}

/// An async closure over a connection whose future is `Send` (what async-graphql
/// needs of a resolver), spelt as diesel-async spells its transaction callbacks.
pub trait ConnWork<T, R>: AsyncFnOnce(T) -> R + FnOnce(T) -> <Self as ConnWork<T, R>>::Fut {
    /// The closure's future.
    type Fut: std::future::Future<Output = R>;
}

impl<F, T, Fut, R> ConnWork<T, R> for F
where
    F: AsyncFnOnce(T) -> R + FnOnce(T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    type Fut = Fut;
}

/// A pooled connection that counts its statements for one request; on release it
/// stops counting, so the pool's own health checks are not billed to anyone.
pub struct DbConn<'a> {
    conn: PooledConnection<'a, AsyncPgConnection>,
    logging: StatementLogging,
}

impl std::ops::Deref for DbConn<'_> {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for DbConn<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl Drop for DbConn<'_> {
    fn drop(&mut self) {
        self.conn
            .set_instrumentation(StatementObserver::new(self.logging, None));
    }
}

impl Database {
    /// The metadata-filter shapes this pool's connections keep prepared.
    pub fn prepared_shapes(&self) -> &crate::db::metadata::PreparedShapes {
        &self.shapes
    }

    /// Builds the pool (connections are made lazily; see [`Database::check`]).
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<Self, PoolError> {
        let logging = StatementLogging {
            echo: config.echo,
            slow: config.slow,
        };
        let connect_timeout = config.timeout;
        // A runaway statement ends with `TIMEOUT` instead of holding a connection,
        // and a transaction left open by a cancelled request is ended by the server.
        let timeouts = format!(
            "statement_timeout = {ms}; SET {local}idle_in_transaction_session_timeout = {ms}",
            ms = config.statement_timeout.as_millis(),
            local = if config.prepared_statements {
                ""
            } else {
                "LOCAL "
            },
        );
        let (session, unit_begin) = if config.prepared_statements {
            (Some(format!("SET {timeouts}")), None)
        } else {
            // Behind a transaction-mode pooler a session setting stays on whichever
            // server the pooler picked: the timeouts travel with each transaction.
            (
                None,
                Some(Arc::from(format!("BEGIN; SET LOCAL {timeouts}"))),
            )
        };
        let prepared = config.prepared_statements;
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        manager_config.custom_setup = Box::new(move |url| {
            let url = url.to_string();
            let session = session.clone();
            async move {
                let mut conn = establish(&url, connect_timeout, logging, !prepared).await?;
                if !prepared {
                    conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
                }
                if let Some(session) = session {
                    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &session)
                        .await
                        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                }
                Ok(conn)
            }
            .boxed()
        });
        // A checkout costs no round trip: diesel-async's default sends `SELECT 1` on
        // every checkout (measured: one extra round trip per checkout, ~5 per nested
        // request). A connection the server closed (restart, admin shutdown, network
        // error) is already known closed by its driver task, so that is what is checked.
        manager_config.recycling_method = RecyclingMethod::CustomFunction(Box::new(|conn| {
            let broken = conn.is_broken();
            async move {
                if broken {
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::ClosedConnection,
                        Box::new("the pooled connection was closed".to_string()),
                    ))
                } else {
                    Ok(())
                }
            }
            .boxed()
        }));
        let manager = AsyncDieselConnectionManager::new_with_config(url, manager_config);
        let pool = Pool::builder()
            .max_size(config.size)
            .min_idle(Some(0))
            .connection_timeout(config.timeout)
            .max_lifetime(Some(config.recycle))
            .idle_timeout(Some(Duration::from_secs(600)))
            .test_on_check_out(true)
            .retry_connection(false)
            .build_unchecked(manager);
        Ok(Self {
            pool,
            logging,
            shapes: Arc::default(),
            unit_begin,
        })
    }

    /// Runs `work` on one checked-out connection, its statements counting toward
    /// `stats`. Without prepared statements the work is one transaction (see the
    /// module's documentation); a failed unit is rolled back.
    pub async fn run<R, E, F>(&self, stats: Option<&Arc<QueryStats>>, work: F) -> Result<R, E>
    where
        for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> Result<R, E>
            + ConnWork<&'r mut AsyncPgConnection, Result<R, E>, Fut: Send>
            + Send,
        E: From<diesel::result::Error> + From<PoolError> + Send,
        R: Send,
    {
        let Some(begin) = &self.unit_begin else {
            let mut conn = self.conn(stats).await?;
            return work(&mut conn).await;
        };
        // The unit's own BEGIN and COMMIT are not the work's statements: a
        // request's count means the same in both modes.
        let mut conn = self.conn(None).await?;
        AnsiTransactionManager::begin_transaction_sql(&mut *conn, begin).await?;
        conn.set_instrumentation(StatementObserver::new(self.logging, stats.cloned()));
        let done = work(&mut conn).await;
        conn.set_instrumentation(StatementObserver::new(self.logging, None));
        match done {
            Ok(value) => {
                AnsiTransactionManager::commit_transaction(&mut *conn).await?;
                Ok(value)
            }
            Err(e) => {
                // A failed rollback leaves the transaction open: the pool then
                // discards the connection, so only the work's own error matters.
                let _ = AnsiTransactionManager::rollback_transaction(&mut *conn).await;
                Err(e)
            }
        }
    }

    /// A connection whose statements count toward `stats`. Its statements run
    /// outside any transaction, which a transaction-mode pooler does not keep on
    /// one server: the API's work goes through [`Database::run`]; this is for
    /// holding a connection (tests of the pool itself).
    pub async fn conn(&self, stats: Option<&Arc<QueryStats>>) -> Result<DbConn<'_>, PoolError> {
        let waiting = Instant::now();
        let got = self.pool.get().await;
        metrics::histogram!(crate::metrics::POOL_WAIT_SECONDS)
            .record(waiting.elapsed().as_secs_f64());
        let mut conn = got.inspect_err(|e| match e {
            bb8::RunError::TimedOut => {
                tracing::warn!("timed out waiting for a database connection")
            }
            bb8::RunError::User(e) => tracing::warn!("cannot get a database connection: {e}"),
        })?;
        conn.set_instrumentation(StatementObserver::new(self.logging, stats.cloned()));
        Ok(DbConn {
            conn,
            logging: self.logging,
        })
    }

    /// Runs `SELECT 1`: whether the database answers now.
    pub async fn check(&self) -> Result<(), crate::error::AppError> {
        use diesel_async::RunQueryDsl;
        self.run(None, async |conn| {
            diesel::sql_query("SELECT 1")
                .execute(conn)
                .await
                .map_err(crate::error::AppError::from)
        })
        .await?;
        Ok(())
    }

    /// The underlying pool (state for health reporting).
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }
}

/// Opens one connection, bounded by `timeout` (bb8 does not bound `connect()` itself).
/// `in_unit`: for a transaction-mode pooler (see [`adopt_in_unit`]).
async fn establish(
    url: &str,
    timeout: Duration,
    logging: StatementLogging,
    in_unit: bool,
) -> ConnectionResult<AsyncPgConnection> {
    let tls = tls::tls_request(url)?;
    let connecting = async {
        match &tls {
            Some(request) => tls::connect(request, in_unit).await,
            None if in_unit => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                adopt_in_unit(client, connection).await
            }
            None => AsyncPgConnection::establish(url).await,
        }
    };
    let mut conn = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| {
            diesel::ConnectionError::BadConnection("timed out connecting to PostgreSQL".into())
        })??;
    conn.set_instrumentation(StatementObserver::new(logging, None));
    Ok(conn)
}

/// Opens a single connection outside the pool (CLI tools, administration).
pub async fn connect_once(url: &str) -> ConnectionResult<AsyncPgConnection> {
    establish(
        url,
        Duration::from_secs(30),
        StatementLogging::default(),
        false,
    )
    .await
}

/// Adopts a connected client for a transaction-mode pooler. diesel-async sets a
/// new connection up with two prepared statements (time zone, encoding) outside
/// any transaction: a pooler could send their halves to different servers, or
/// leave one prepared on a server where another process's statement of the same
/// name (`s<N>`, numbered per process) then collides. Here they run inside one
/// transaction, so they reach one server and are closed there.
pub(crate) async fn adopt_in_unit<S, T>(
    client: tokio_postgres::Client,
    connection: tokio_postgres::Connection<S, T>,
) -> ConnectionResult<AsyncPgConnection>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let bad = |e: tokio_postgres::Error| diesel::ConnectionError::BadConnection(e.to_string());
    // Driven here rather than by diesel-async, so that BEGIN can go first; the
    // task ends when the client is dropped.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("database connection ended: {e}");
        }
    });
    client.batch_execute("BEGIN").await.map_err(bad)?;
    let mut conn = AsyncPgConnection::try_from(client).await?;
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, "COMMIT")
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

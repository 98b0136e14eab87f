//! The data layer: connection pool, embedded cluster, migrations, schema, one
//! model-and-repository file per table, and [`scope`], the one place the access
//! rules live (the API reads and writes only through it). Functions here return diesel's `QueryResult`;
//! the API edge turns failures into [`crate::error::AppError`].

pub mod cluster;
pub mod conversations;
pub mod messages;
pub mod metadata;
pub mod migrations;
pub mod schema;
pub mod scope;
pub mod tls;
pub mod users;
pub mod workspaces;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::ConnectionResult;
use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::FutureExt;

use crate::config::PoolConfig;

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
    /// Builds the pool (connections are made lazily; see [`Database::check`]).
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<Self, PoolError> {
        let logging = StatementLogging {
            echo: config.echo,
            slow: config.slow,
        };
        let connect_timeout = config.timeout;
        // A runaway statement ends with `TIMEOUT` instead of holding a connection,
        // and a transaction left open by a cancelled request is ended by the server.
        let session = format!(
            "SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {ms}",
            ms = config.statement_timeout.as_millis()
        );
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        manager_config.custom_setup = Box::new(move |url| {
            let url = url.to_string();
            let session = session.clone();
            async move {
                let mut conn = establish(&url, connect_timeout, logging).await?;
                diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &session)
                    .await
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
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
        Ok(Self { pool, logging })
    }

    /// A connection whose statements count toward `stats`.
    pub async fn conn(&self, stats: Option<&Arc<QueryStats>>) -> Result<DbConn<'_>, PoolError> {
        let waiting = Instant::now();
        let got = self.pool.get().await;
        metrics::histogram!(crate::metrics::POOL_WAIT_SECONDS)
            .record(waiting.elapsed().as_secs_f64());
        let mut conn = got?;
        conn.set_instrumentation(StatementObserver::new(self.logging, stats.cloned()));
        Ok(DbConn {
            conn,
            logging: self.logging,
        })
    }

    /// Runs `SELECT 1`: whether the database answers now.
    pub async fn check(&self) -> Result<(), crate::error::AppError> {
        use diesel_async::RunQueryDsl;
        let mut conn = self.conn(None).await?;
        diesel::sql_query("SELECT 1").execute(&mut *conn).await?;
        Ok(())
    }

    /// The underlying pool (state for health reporting).
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }
}

/// Opens one connection, bounded by `timeout` (bb8 does not bound `connect()` itself).
async fn establish(
    url: &str,
    timeout: Duration,
    logging: StatementLogging,
) -> ConnectionResult<AsyncPgConnection> {
    let tls = tls::tls_request(url)?;
    let connecting = async {
        match &tls {
            Some(request) => tls::connect(request).await,
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
    establish(url, Duration::from_secs(30), StatementLogging::default()).await
}

/// The key rows are ordered by: a timestamp, then the id as a tie-break.
pub type SortKey = (chrono::DateTime<chrono::Utc>, uuid::Uuid);

/// The orders a list of workspaces or conversations can be read in (messages are
/// always chronological).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TimeOrder {
    /// Newest first (the default).
    #[default]
    CreatedDesc,
    /// Oldest first.
    CreatedAsc,
    /// Most recently updated first.
    UpdatedDesc,
    /// Least recently updated first.
    UpdatedAsc,
}

impl TimeOrder {
    /// A row's key under this order: its creation or update time, then its id.
    pub fn key(
        self,
        created: chrono::DateTime<chrono::Utc>,
        updated: chrono::DateTime<chrono::Utc>,
        id: uuid::Uuid,
    ) -> SortKey {
        match self {
            TimeOrder::CreatedAsc | TimeOrder::CreatedDesc => (created, id),
            TimeOrder::UpdatedAsc | TimeOrder::UpdatedDesc => (updated, id),
        }
    }
}

/// A keyset page request, Relay style: `first` rows after a key, or `last` rows
/// before one. Keys are stable when rows are inserted between pages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PageArgs {
    /// Only rows after this key.
    pub after: Option<SortKey>,
    /// Only rows before this key.
    pub before: Option<SortKey>,
    /// The first N rows.
    pub first: Option<i64>,
    /// The last N rows (used when `first` is absent).
    pub last: Option<i64>,
    /// The order (and so the meaning of the keys).
    pub order: TimeOrder,
}

impl PageArgs {
    /// The first `n` rows.
    pub fn first(n: i64) -> Self {
        Self {
            first: Some(n),
            ..Self::default()
        }
    }

    /// Whether the page is read from the end (`last` without `first`).
    pub fn from_end(&self) -> bool {
        self.first.is_none() && self.last.is_some()
    }

    /// Rows to return (one more is fetched to know whether another page exists).
    pub fn limit(&self) -> i64 {
        self.first.or(self.last).unwrap_or(DEFAULT_PAGE_SIZE)
    }
}

/// Page size when neither `first` nor `last` is given.
pub const DEFAULT_PAGE_SIZE: i64 = 20;

/// One page of rows, in the list's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows.
    pub rows: Vec<T>,
    /// More rows follow the last one.
    pub has_next: bool,
    /// More rows precede the first one.
    pub has_previous: bool,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in fetch order.
    pub fn from_fetched(mut rows: Vec<T>, args: &PageArgs) -> Self {
        let limit = args.limit().max(0) as usize;
        let more = rows.len() > limit;
        rows.truncate(limit);
        if args.from_end() {
            rows.reverse();
            Page {
                rows,
                has_next: args.before.is_some(),
                has_previous: more,
            }
        } else {
            Page {
                rows,
                has_next: more,
                has_previous: args.after.is_some(),
            }
        }
    }
}

/// Adds the keyset bounds and order of `$args` to a boxed query over `$ts, $id`,
/// listed newest first (`desc`) or oldest first (`asc`).
macro_rules! keyset_page {
    ($query:expr, $args:expr, $ts:expr, $id:expr, desc) => {{
        let args: &$crate::db::PageArgs = $args;
        let mut q = $query;
        if let Some((t, i)) = args.after {
            q = q.filter($ts.lt(t).or($ts.eq(t).and($id.lt(i))));
        }
        if let Some((t, i)) = args.before {
            q = q.filter($ts.gt(t).or($ts.eq(t).and($id.gt(i))));
        }
        let q = if args.from_end() {
            q.order(($ts.asc(), $id.asc()))
        } else {
            q.order(($ts.desc(), $id.desc()))
        };
        q.limit(args.limit() + 1)
    }};
    ($query:expr, $args:expr, $ts:expr, $id:expr, asc) => {{
        let args: &$crate::db::PageArgs = $args;
        let mut q = $query;
        if let Some((t, i)) = args.after {
            q = q.filter($ts.gt(t).or($ts.eq(t).and($id.gt(i))));
        }
        if let Some((t, i)) = args.before {
            q = q.filter($ts.lt(t).or($ts.eq(t).and($id.lt(i))));
        }
        let q = if args.from_end() {
            q.order(($ts.desc(), $id.desc()))
        } else {
            q.order(($ts.asc(), $id.asc()))
        };
        q.limit(args.limit() + 1)
    }};
}
pub(crate) use keyset_page;

/// Applies `$args` (its order, bounds and limit) to a boxed query on a table with
/// `created_at`, `updated_at` and `id` columns.
macro_rules! ordered_page {
    ($query:expr, $args:expr, $table:ident) => {{
        use $crate::db::schema::$table;
        let args: &$crate::db::PageArgs = $args;
        match args.order {
            $crate::db::TimeOrder::CreatedDesc => {
                $crate::db::keyset_page!($query, args, $table::created_at, $table::id, desc)
            }
            $crate::db::TimeOrder::CreatedAsc => {
                $crate::db::keyset_page!($query, args, $table::created_at, $table::id, asc)
            }
            $crate::db::TimeOrder::UpdatedDesc => {
                $crate::db::keyset_page!($query, args, $table::updated_at, $table::id, desc)
            }
            $crate::db::TimeOrder::UpdatedAsc => {
                $crate::db::keyset_page!($query, args, $table::updated_at, $table::id, asc)
            }
        }
    }};
}
pub(crate) use ordered_page;

/// `SELECT page.* FROM unnest($parents) AS parent(id) CROSS JOIN LATERAL (inner) AS page
/// WHERE scope`: one statement that reads a page per parent. `inner` is a diesel query
/// that refers to the current parent as `parent.id` (see [`parent_id`]); diesel has no
/// LATERAL. `scope` is a predicate on `parent.id` that holds for the parents the caller
/// may read. It is checked once per parent, before any page is read (a check inside
/// `inner` would run once per row: 2,000 times for 100 pages of 20 messages); written
/// as a correlated lookup of the parent's owner, it costs a primary-key lookup or two
/// per parent in every plan PostgreSQL may pick, whatever the owner's size (a join
/// with "all the owner's conversations" is hashed whole in the generic plan that a
/// prepared statement ends up with).
#[derive(Debug, Clone)]
pub struct PerParent<S, Q> {
    parents: Vec<uuid::Uuid>,
    scope: S,
    inner: Q,
    tagged: bool,
}

impl<S, Q> PerParent<S, Q> {
    /// Pages of `inner` for each of `parents` for which `scope` holds.
    pub fn new(parents: Vec<uuid::Uuid>, scope: S, inner: Q) -> Self {
        Self {
            parents,
            scope,
            inner,
            tagged: false,
        }
    }
}

/// The current parent's id inside a [`PerParent`] query.
pub fn parent_id() -> FixedSql<diesel::sql_types::Uuid> {
    FixedSql::new("parent.id")
}

/// A fixed piece of SQL of type `ST`, written in our source. Unlike diesel's `sql()`
/// literal, which marks its statement as never cacheable (its text could come from
/// anywhere), this keeps the statement preparable once per connection: a page
/// statement was otherwise prepared anew, a round trip and a parse, on every request.
#[derive(Debug, Clone, Copy)]
pub struct FixedSql<ST> {
    sql: &'static str,
    sql_type: std::marker::PhantomData<ST>,
}

impl<ST> FixedSql<ST> {
    /// `sql`, as an expression of type `ST`.
    pub const fn new(sql: &'static str) -> Self {
        Self {
            sql,
            sql_type: std::marker::PhantomData,
        }
    }
}

impl<ST: diesel::sql_types::SqlType + diesel::expression::TypedExpressionType> diesel::Expression
    for FixedSql<ST>
{
    type SqlType = ST;
}

impl<ST> diesel::query_builder::QueryFragment<diesel::pg::Pg> for FixedSql<ST> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql(self.sql);
        Ok(())
    }
}

// The text is a value, not part of the type: statements holding one are cached by
// their SQL text, never by type.
impl<ST> diesel::query_builder::QueryId for FixedSql<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST, QS> diesel::AppearsOnTable<QS> for FixedSql<ST> where FixedSql<ST>: diesel::Expression {}

impl<ST, QS> diesel::SelectableExpression<QS> for FixedSql<ST> where FixedSql<ST>: diesel::Expression
{}

impl<ST, GB> diesel::expression::ValidGrouping<GB> for FixedSql<ST> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

// No static query id: the SQL depends on the inner query's filters. diesel then caches
// the prepared statement by its SQL text, so a repeated shape is parsed once per
// connection (an uncached statement costs an extra round trip to prepare).
impl<S, Q> diesel::query_builder::QueryId for PerParent<S, Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<S, Q: diesel::query_builder::Query> diesel::query_builder::Query for PerParent<S, Q> {
    type SqlType = Q::SqlType;
}

impl<S, Q> diesel::query_builder::QueryFragment<diesel::pg::Pg> for PerParent<S, Q>
where
    S: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
    Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql(if self.tagged {
            "SELECT parent.id, page.* FROM unnest("
        } else {
            "SELECT page.* FROM unnest("
        });
        out.push_bind_param::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&self.parents)?;
        out.push_sql(") AS parent(id) CROSS JOIN LATERAL (");
        self.inner.walk_ast(out.reborrow())?;
        out.push_sql(") AS page WHERE ");
        self.scope.walk_ast(out.reborrow())?;
        Ok(())
    }
}

/// `SELECT parent.id, page.* FROM unnest($parents) AS parent(id) CROSS JOIN LATERAL (inner) AS page …`:
/// like [`PerParent`], for single-row inner queries (counts), tagged with the parent.
#[derive(Debug, Clone)]
pub struct TaggedPerParent<S, Q>(PerParent<S, Q>);

impl<S, Q> TaggedPerParent<S, Q> {
    /// One row of `inner` per parent for which `scope` holds, each with the parent's id first.
    pub fn new(parents: Vec<uuid::Uuid>, scope: S, inner: Q) -> Self {
        Self(PerParent {
            tagged: true,
            ..PerParent::new(parents, scope, inner)
        })
    }
}

impl<S, Q> diesel::query_builder::QueryId for TaggedPerParent<S, Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<S, Q: diesel::query_builder::Query> diesel::query_builder::Query for TaggedPerParent<S, Q> {
    type SqlType = (diesel::sql_types::Uuid, Q::SqlType);
}

impl<S, Q> diesel::query_builder::QueryFragment<diesel::pg::Pg> for TaggedPerParent<S, Q>
where
    PerParent<S, Q>: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    fn walk_ast<'b>(
        &'b self,
        out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        self.0.walk_ast(out)
    }
}

#[cfg(test)]
mod tests {
    use diesel::pg::Pg;
    use diesel::prelude::*;
    use diesel::query_builder::QueryFragment;

    use super::*;
    use crate::db::metadata::{MetadataFilter, PathPredicate};
    use crate::db::schema::{conversations as c, messages as m};

    /// Whether diesel will prepare `query` once per connection and reuse it.
    fn cacheable(query: &impl QueryFragment<Pg>) -> bool {
        query.is_safe_to_cache_prepared(&Pg).unwrap()
    }

    #[test]
    fn page_statements_are_prepared_once_per_connection_unless_metadata_filtered() {
        let page = |filter: &messages::MessageFilter, with_metadata: bool| {
            let owned = c::table
                .filter(c::id.eq(parent_id()))
                .select(c::topic)
                .single_value()
                .eq("mine");
            let inner = messages::filtered(filter)
                .filter(m::conversation_id.eq(parent_id()))
                .select(messages::columns(with_metadata))
                .limit(21);
            PerParent::new(vec![], owned, inner)
        };
        let by_sender = messages::MessageFilter {
            sender_id: Some("alice".into()),
            ..Default::default()
        };
        assert!(cacheable(&page(&by_sender, false)));
        assert!(cacheable(&page(&by_sender, true)));
        // diesel's own `sql()` literal would make it a fresh statement every time.
        let literal = m::table
            .filter(m::conversation_id.eq(diesel::dsl::sql::<diesel::sql_types::Uuid>("parent.id")))
            .select(m::id);
        assert!(!cacheable(&literal));
        // Metadata filters come in shapes of the client's choosing: never cached.
        let by_metadata = messages::MessageFilter {
            metadata: Some(MetadataFilter {
                path: vec![PathPredicate {
                    path: vec!["labels".into(), "team".into()],
                    eq: Some(serde_json::json!("core")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!cacheable(&page(&by_metadata, false)));
    }
}

//! The data layer. Functions here return diesel's `QueryResult`; the API edge
//! turns failures into [`crate::error::AppError`].
//!
//! - [`scope`]: the one place the access rules live; the API reads and writes
//!   only through it.
//! - [`lateral`]: how one level of a nested query becomes one statement.
//! - [`page`]: keyset pages (orders, bounds, the page read back).
//! - one model-and-repository file per table ([`workspaces`], [`conversations`],
//!   [`messages`], [`users`], [`events`]); [`metadata`] turns a JSONB filter into SQL.
//! - [`pool`] (checkouts that count their statements), [`replicas`] (which
//!   database a read may use), [`tls`], [`migrations`],
//!   the generated [`schema`], and [`cluster`], the embedded PostgreSQL.

pub mod cluster;
pub mod conversations;
pub mod events;
pub mod lateral;
pub mod messages;
pub mod metadata;
pub mod migrations;
pub mod page;
pub mod pool;
pub mod replicas;
pub mod schema;
pub mod scope;
pub mod tls;
pub mod users;
pub mod workspaces;

pub(crate) use page::{keyset_page, ordered_page};
pub use page::{Page, PageArgs, SortKey, TimeOrder, DEFAULT_PAGE_SIZE};
pub use pool::{connect_once, Database, DbConn, DbPool, PoolError, QueryStats};

//! Relay connections: one generic [`Connection`] and [`Edge`] for every keyset
//! list (workspaces, conversations, messages), one [`Total`] for `totalCount`,
//! opaque cursors and `PageInfo`. Page sizes and their checks are in
//! [`crate::graphql::paging`].

use std::borrow::Cow;
use std::hash::Hash;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use async_graphql::{Context, Object, OutputType, TypeName};
use base64::Engine;
use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::db::scope::Scope;
use crate::db::{Page, SortKey, TimeOrder};
use crate::error::{AppError, AppResult};
use crate::graphql::budget::Checked;
use crate::graphql::context::{load, scope, with_conn};
use crate::graphql::loaders::CortexLoader;

/// What a connection lists: a GraphQL object type with a place in a keyset order.
pub trait Node: Send + Sync + 'static {
    /// The node type's GraphQL name; its list types are `{NAME}Connection` and `{NAME}Edge`.
    const NAME: &'static str;
    /// What `node` and `nodes` resolve to (the type itself, or its fast path).
    type Output<'a>: OutputType + 'a;
    /// What a list's resolver reads of its selection once for all its nodes
    /// (the fast path's plan, see [`crate::graphql::plain`]).
    type Prepared: Send + Sync;
    /// Reads the selection of the `node`/`nodes` field `ctx` resolves.
    fn prepare(ctx: &Context<'_>) -> Self::Prepared;
    /// This node as `node`/`nodes` show it.
    fn output(&self, prepared: &Self::Prepared) -> Self::Output<'_>;
}

/// An edge of a list: a node and where it sits.
pub struct Edge<N> {
    /// Where the edge sits (encoded only when asked for).
    pub cursor: Cursor,
    /// The node.
    pub node: N,
}

impl<N: Node> TypeName for Edge<N> {
    fn type_name() -> Cow<'static, str> {
        format!("{}Edge", N::NAME).into()
    }
}

/// An edge of a list.
#[Object(name_type)]
impl<N: Node> Edge<N> {
    /// Opaque position, for `after`/`before`.
    async fn cursor(&self) -> String {
        self.cursor.encode()
    }
    /// The listed object.
    async fn node(&self, ctx: &Context<'_>) -> N::Output<'_> {
        self.node.output(&N::prepare(ctx))
    }
}

/// A keyset page of a list.
pub struct Connection<N> {
    edges: Vec<Edge<N>>,
    page_info: PageInfo,
    total: Total,
}

impl<N: Node> Connection<N> {
    /// `page` as a connection: each row's cursor is `key(row)` under `order`.
    pub fn from_page<R>(
        page: Page<R>,
        order: TimeOrder,
        key: impl Fn(&R) -> SortKey,
        mut node: impl FnMut(R) -> N,
        total: Total,
    ) -> Self {
        let edges: Vec<Edge<N>> = page
            .rows
            .into_iter()
            .map(|row| Edge {
                cursor: Cursor::Keyset(order, key(&row)),
                node: node(row),
            })
            .collect();
        let page_info = PageInfo {
            has_next_page: page.has_next,
            has_previous_page: page.has_previous,
            start: edges.first().map(|e| e.cursor),
            end: edges.last().map(|e| e.cursor),
        };
        Self {
            edges,
            page_info,
            total,
        }
    }
}

impl<N: Node> TypeName for Connection<N> {
    fn type_name() -> Cow<'static, str> {
        format!("{}Connection", N::NAME).into()
    }
}

/// A keyset page of a list.
#[Object(name_type)]
impl<N: Node> Connection<N> {
    /// Edges with cursors.
    async fn edges(&self) -> Vec<Checked<&Edge<N>>> {
        self.edges.iter().map(Checked).collect()
    }
    /// The listed objects alone.
    async fn nodes(&self, ctx: &Context<'_>) -> Vec<Checked<N::Output<'_>>> {
        let prepared = N::prepare(ctx);
        self.edges
            .iter()
            .map(|e| Checked(e.node.output(&prepared)))
            .collect()
    }
    /// Relay page information.
    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }
    /// All matching objects, counted only when asked for (a nested list's count
    /// is one grouped statement for every list of its level).
    async fn total_count(&self, ctx: &Context<'_>) -> AppResult<i32> {
        let n = (self.total.0)(ctx).await?;
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }
}

type CountFn = dyn for<'c, 'd> Fn(&'c Context<'d>) -> BoxFuture<'c, AppResult<i64>> + Send + Sync;

/// How a list counts its matches for `totalCount`; nothing runs unless asked.
pub struct Total(Box<CountFn>);

impl Total {
    /// Counted through a loader key, with every other list of the level.
    pub fn batched<K>(key: K) -> Self
    where
        K: Send + Sync + Hash + Eq + Clone + Unpin + 'static,
        CortexLoader: Loader<K, Value = i64, Error = Arc<AppError>>,
    {
        Total(Box::new(move |ctx| {
            let count = load(ctx, key.clone());
            Box::pin(async move { Ok(count.await?.unwrap_or(0)) })
        }))
    }

    /// Counted by its own statement through the caller's scope (a root list).
    pub fn counted<F: Send + Sync + 'static>(
        filter: F,
        count: for<'a> fn(
            &'a Scope,
            &'a mut AsyncPgConnection,
            &'a F,
        ) -> BoxFuture<'a, QueryResult<i64>>,
    ) -> Self {
        let filter = Arc::new(filter);
        Total(Box::new(move |ctx| {
            let filter = filter.clone();
            Box::pin(async move {
                let scope = scope(ctx)?;
                with_conn(ctx, async |c| Ok(count(scope, c, &filter).await?)).await
            })
        }))
    }
}

/// Where an edge sits in its list, encoded as an opaque cursor only when a client
/// asks for it: a nested page of 2,000 messages that selects only `nodes` then
/// encodes none (encoding every cursor was 3 % of the nested benchmark's CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// A keyset position under an order.
    Keyset(TimeOrder, SortKey),
    /// A position in ranked search results.
    Search(crate::db::messages::SearchKey),
}

impl Cursor {
    /// The opaque text clients send back in `after`/`before`.
    pub fn encode(&self) -> String {
        match *self {
            Cursor::Keyset(order, key) => encode_cursor(order, key),
            Cursor::Search(key) => encode_search_cursor(key),
        }
    }
}

/// Relay's page information.
#[derive(Debug, Clone)]
pub struct PageInfo {
    /// More items follow the last edge.
    pub has_next_page: bool,
    /// More items precede the first edge.
    pub has_previous_page: bool,
    /// Position of the first edge.
    pub start: Option<Cursor>,
    /// Position of the last edge.
    pub end: Option<Cursor>,
}

/// Relay's page information.
#[Object]
impl PageInfo {
    /// More items follow the last edge.
    async fn has_next_page(&self) -> bool {
        self.has_next_page
    }
    /// More items precede the first edge.
    async fn has_previous_page(&self) -> bool {
        self.has_previous_page
    }
    /// Cursor of the first edge.
    async fn start_cursor(&self) -> Option<String> {
        self.start.as_ref().map(Cursor::encode)
    }
    /// Cursor of the last edge.
    async fn end_cursor(&self) -> Option<String> {
        self.end.as_ref().map(Cursor::encode)
    }
}

/// Encodes a row's position under `order` as an opaque cursor.
pub fn encode_cursor(order: TimeOrder, key: SortKey) -> String {
    let text = format!(
        "{}:{}:{}",
        order_tag(order),
        key.0.timestamp_micros(),
        key.1
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Decodes a cursor made by [`encode_cursor`] for the same order.
pub fn decode_cursor(field: &str, order: TimeOrder, cursor: &str) -> AppResult<SortKey> {
    let bad = || {
        AppError::bad_input(
            field,
            format!("`{field}` is not a valid cursor for this list"),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (tag, micros, id) = (parts.next(), parts.next(), parts.next());
    if tag != Some(order_tag(order)) {
        return Err(bad());
    }
    let micros: i64 = micros.and_then(|m| m.parse().ok()).ok_or_else(bad)?;
    let at: DateTime<Utc> = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id: Uuid = id.and_then(|i| Uuid::parse_str(i).ok()).ok_or_else(bad)?;
    Ok((at, id))
}

fn order_tag(order: TimeOrder) -> &'static str {
    match order {
        TimeOrder::CreatedDesc => "cd",
        TimeOrder::CreatedAsc => "ca",
        TimeOrder::UpdatedDesc => "ud",
        TimeOrder::UpdatedAsc => "ua",
    }
}

/// The cursor of a search hit: its place in the ranking, (rank, timestamp, id).
pub fn encode_search_cursor(key: crate::db::messages::SearchKey) -> String {
    let text = format!(
        "search:{:08x}:{}:{}",
        key.rank.to_bits(),
        key.timestamp.timestamp_micros(),
        key.id
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Reads a search cursor; anything but one made by [`encode_search_cursor`] is refused.
pub fn decode_search_cursor(cursor: &str) -> AppResult<crate::db::messages::SearchKey> {
    let parse = |text: &str| {
        let mut parts = text.strip_prefix("search:")?.splitn(3, ':');
        let bits = parts.next().filter(|b| b.len() == 8)?;
        let rank = f32::from_bits(u32::from_str_radix(bits, 16).ok()?);
        let micros = parts.next()?.parse::<i64>().ok()?;
        let id = Uuid::parse_str(parts.next()?).ok()?;
        (rank.is_finite() && rank >= 0.0).then_some(())?;
        Some(crate::db::messages::SearchKey {
            rank,
            timestamp: DateTime::<Utc>::from_timestamp_micros(micros)?,
            id,
        })
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| parse(&s))
        .ok_or_else(|| AppError::bad_input("after", "`after` is not a valid cursor for this list"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_order() {
        let key = (
            DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            Uuid::new_v4(),
        );
        let cursor = encode_cursor(TimeOrder::CreatedDesc, key);
        assert_eq!(
            decode_cursor("after", TimeOrder::CreatedDesc, &cursor).unwrap(),
            key
        );
        assert_eq!(
            decode_cursor("after", TimeOrder::UpdatedAsc, &cursor)
                .unwrap_err()
                .code(),
            "BAD_USER_INPUT"
        );
        for junk in ["", "!!!", "Y2Q6eDp5", "Y2Q6MTox"] {
            assert_eq!(
                decode_cursor("after", TimeOrder::CreatedDesc, junk)
                    .unwrap_err()
                    .code(),
                "BAD_USER_INPUT"
            );
        }
    }
}

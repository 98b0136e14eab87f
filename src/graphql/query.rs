//! The `Query` root.

use async_graphql::{Context, Object};
use uuid::Uuid;

use crate::db::scope::SearchBounds;
use crate::db::TimeOrder;
use crate::error::{AppError, AppResult};
use crate::graphql::budget::Checked;
use crate::graphql::connection::{
    decode_search_cursor, encode_search_cursor, Connection, Cursor, PageInfo, Total,
};
use crate::graphql::context::{load, load_many, scope, with_conn};
use crate::graphql::conversation::{Conversation, ConversationConnection};
use crate::graphql::filters::{ConversationFilter, WorkspaceFilter};
use crate::graphql::loaders::NodeKey;
use crate::graphql::message::{Message, SearchConnection, SearchHitEdge};
use crate::graphql::node::{NodeId, NodeInterface};
use crate::graphql::paging::{page_args, within, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::graphql::user::User;
use crate::graphql::workspace::{ListOrder, Workspace, WorkspaceConnection};

/// Read operations.
pub struct QueryRoot;

/// Read operations: what the caller may see.
#[Object(name = "Query")]
impl QueryRoot {
    /// The caller, in full.
    async fn me(&self, ctx: &Context<'_>) -> AppResult<User> {
        let me = with_conn(ctx, async |c| Ok(scope(ctx)?.me_user(c).await?)).await?;
        me.map(|row| User(std::sync::Arc::new(row)))
            .ok_or_else(|| AppError::NotFound("user not found".into()))
    }

    /// One of the caller's workspaces.
    async fn workspace(&self, ctx: &Context<'_>, id: NodeId) -> AppResult<Workspace> {
        let found = with_conn(ctx, async |c| Ok(scope(ctx)?.workspace(c, id.0).await?)).await?;
        found.required().map(Workspace)
    }

    /// A conversation the caller may read: in one of their workspaces, or one
    /// they take part in.
    async fn conversation(&self, ctx: &Context<'_>, id: NodeId) -> AppResult<Conversation> {
        let found = with_conn(ctx, async |c| Ok(scope(ctx)?.conversation(c, id.0).await?)).await?;
        found.required().map(Conversation::from)
    }

    /// Any object by its id (Relay's refetch): `null` when it does not exist or
    /// the caller may not read it, which look the same.
    async fn node(&self, ctx: &Context<'_>, id: NodeId) -> AppResult<Option<NodeInterface>> {
        Ok(load(ctx, NodeKey(id.0)).await?.map(NodeInterface::from))
    }

    /// Objects by their ids, in the order asked (`null` as for `node`), read
    /// together: one statement for the whole list.
    #[graphql(complexity = "ids.len() * child_complexity")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(max_items = 100))] ids: Vec<NodeId>,
    ) -> AppResult<Vec<Option<NodeInterface>>> {
        let found = load_many(ctx, ids.iter().map(|id| NodeKey(id.0))).await?;
        // An id asked twice is answered twice.
        Ok(ids
            .iter()
            .map(|id| found.get(&NodeKey(id.0)).cloned().map(NodeInterface::from))
            .collect())
    }

    /// A message of a conversation the caller may read.
    async fn message(&self, ctx: &Context<'_>, id: NodeId) -> AppResult<Message> {
        let found = with_conn(ctx, async |c| Ok(scope(ctx)?.message(c, id.0).await?)).await?;
        found.required().map(Message::from)
    }

    /// The conversations the caller takes part in (their `userId` is among the
    /// `participantIds`), in any workspace, a keyset page at a time (newest first
    /// by default).
    #[expect(
        clippy::too_many_arguments,
        reason = "a Relay list field takes first, after, last, before, filter and orderBy"
    )]
    #[graphql(complexity = "crate::graphql::paging::page_cost(first, last) * child_complexity")]
    async fn participating_conversations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<ConversationFilter>,
        #[graphql(default)] order_by: ListOrder,
    ) -> AppResult<ConversationConnection> {
        let order = TimeOrder::from(order_by);
        let args = page_args(first, after.as_deref(), last, before.as_deref(), order)?;
        let filter = ConversationFilter::to_db(
            filter.as_ref(),
            crate::graphql::context::request(ctx).db.prepared_shapes(),
        )?;
        let page = with_conn(ctx, async |c| {
            Ok(scope(ctx)?
                .participating_conversations(c, &filter, &args)
                .await?)
        })
        .await?;
        let total = Total::counted(filter, |scope, c, filter| {
            Box::pin(scope.participating_conversation_count(c, filter))
        });
        Ok(Connection::from_page(
            page,
            order,
            |c| order.key(c.created_at, c.updated_at, c.id),
            Conversation::from,
            total,
        ))
    }

    /// The caller's workspaces, a keyset page at a time (newest first by default).
    #[expect(
        clippy::too_many_arguments,
        reason = "a Relay list field takes first, after, last, before, filter and orderBy"
    )]
    #[graphql(complexity = "crate::graphql::paging::page_cost(first, last) * child_complexity")]
    async fn workspaces(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<WorkspaceFilter>,
        #[graphql(default)] order_by: ListOrder,
    ) -> AppResult<WorkspaceConnection> {
        let order = TimeOrder::from(order_by);
        let args = page_args(first, after.as_deref(), last, before.as_deref(), order)?;
        let filter = WorkspaceFilter::to_db(
            filter.as_ref(),
            crate::graphql::context::request(ctx).db.prepared_shapes(),
        )?;
        let page = with_conn(ctx, async |c| {
            Ok(scope(ctx)?.workspaces(c, &filter, &args).await?)
        })
        .await?;
        let total = Total::counted(filter, |scope, c, filter| {
            Box::pin(scope.workspace_count(c, filter))
        });
        Ok(Connection::from_page(
            page,
            order,
            |w| order.key(w.created_at, w.updated_at, w.id),
            Workspace,
            total,
        ))
    }

    /// Full-text search over the messages the caller may read (`websearch_to_tsquery`
    /// syntax: words, "quoted phrases", -excluded, or), best first.
    #[graphql(complexity = "crate::graphql::paging::page_cost(first, None) * child_complexity")]
    async fn search_messages(
        &self,
        ctx: &Context<'_>,
        query: String,
        workspace_id: Option<NodeId>,
        conversation_id: Option<NodeId>,
        first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<SearchConnection> {
        let scope = scope(ctx)?;
        if query.trim().is_empty() || query.len() > 1000 {
            return Err(AppError::bad_input(
                "query",
                "`query` must be 1 to 1000 characters",
            ));
        }
        let first = within("first", first.unwrap_or(DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)?;
        let after = after
            .map(|cursor| decode_search_cursor(&cursor))
            .transpose()?;
        let bounds = SearchBounds {
            workspace_id: workspace_id.map(Uuid::from),
            conversation_id: conversation_id.map(Uuid::from),
        };
        let mut hits = with_conn(ctx, async |c| {
            Ok(scope
                .search(c, &query, bounds, after, i64::from(first) + 1)
                .await?)
        })
        .await?
        .required()?;
        let has_next = hits.len() > first as usize;
        hits.truncate(first as usize);
        let keys: Vec<_> = hits.iter().map(|h| h.key()).collect();
        let edges: Vec<Checked<SearchHitEdge>> = hits
            .into_iter()
            .map(|h| {
                Checked(SearchHitEdge {
                    cursor: encode_search_cursor(h.key()),
                    node: Message::from(h.message),
                    rank: h.rank,
                    headline: h.headline,
                })
            })
            .collect();
        let page_info = PageInfo {
            has_next_page: has_next,
            // Relay allows `false` when not paging backwards; a cursor means there
            // were hits before it.
            has_previous_page: after.is_some(),
            start: keys.first().copied().map(Cursor::Search),
            end: keys.last().copied().map(Cursor::Search),
        };
        Ok(SearchConnection { edges, page_info })
    }
}

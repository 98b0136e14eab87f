//! The `Query` root.

use async_graphql::{Context, Object};
use uuid::Uuid;

use crate::db::messages::SearchScope;
use crate::db::{conversations, messages, workspaces, TimeOrder};
use crate::error::{AppError, AppResult};
use crate::graphql::budget::Checked;
use crate::graphql::connection::{
    decode_search_cursor, encode_search_cursor, page_args, page_info, Cursor, PageInfo,
    MAX_PAGE_SIZE,
};
use crate::graphql::context::{caller, conn, load, request};
use crate::graphql::conversation::Conversation;
use crate::graphql::filters::WorkspaceFilter;
use crate::graphql::loaders::UserKey;
use crate::graphql::message::{Message, SearchConnection, SearchHitEdge};
use crate::graphql::user::User;
use crate::graphql::workspace::{ListOrder, Workspace, WorkspaceConnection, WorkspaceEdge};

/// Read operations.
pub struct QueryRoot;

/// `NOT_FOUND` when missing, `FORBIDDEN` when someone else's.
pub fn authorize<T>(found: Option<(T, String)>, caller: &str, what: &str) -> AppResult<T> {
    match found {
        None => Err(AppError::NotFound(format!("{what} not found"))),
        Some((_, owner)) if owner != caller => Err(AppError::Forbidden(format!(
            "you do not have access to this {what}"
        ))),
        Some((row, _)) => Ok(row),
    }
}

#[Object(name = "Query")]
impl QueryRoot {
    /// The caller.
    async fn me(&self, ctx: &Context<'_>) -> AppResult<User> {
        let me = caller(ctx)?;
        load(ctx, UserKey(me.user_id.clone()))
            .await?
            .map(User)
            .ok_or_else(|| AppError::NotFound("user not found".into()))
    }

    /// One of the caller's workspaces.
    async fn workspace(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Workspace> {
        let me = caller(ctx)?;
        let found = workspaces::get(&mut *conn(ctx).await?, id).await?.map(|w| {
            let owner = w.owner_id.clone();
            (w, owner)
        });
        authorize(found, &me.user_id, "workspace").map(Workspace)
    }

    /// A conversation in one of the caller's workspaces.
    async fn conversation(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Conversation> {
        let me = caller(ctx)?;
        let found = conversations::get_with_owner(&mut *conn(ctx).await?, id).await?;
        authorize(found, &me.user_id, "conversation").map(Conversation::from)
    }

    /// A message in one of the caller's workspaces.
    async fn message(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Message> {
        let me = caller(ctx)?;
        let found = messages::get_with_owner(&mut *conn(ctx).await?, id).await?;
        authorize(found, &me.user_id, "message").map(Message::from)
    }

    /// The caller's workspaces, a keyset page at a time (newest first by default).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, last) * child_complexity")]
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
        let me = caller(ctx)?.user_id.clone();
        let order = TimeOrder::from(order_by);
        let args = page_args(first, after.as_deref(), last, before.as_deref(), order)?;
        let filter = WorkspaceFilter::to_db(filter.as_ref())?;
        let page = workspaces::list_by_owner(&mut *conn(ctx).await?, &me, &filter, &args).await?;
        let (page_info, cursors) = page_info(&page, order, |w| {
            order.key(w.created_at, w.updated_at, w.id)
        });
        let edges = page
            .rows
            .into_iter()
            .zip(cursors)
            .map(|(row, cursor)| WorkspaceEdge {
                cursor,
                node: Workspace(row),
            })
            .collect();
        let req = request(ctx);
        let (db, stats) = (req.db.clone(), req.stats.clone());
        let total = Box::new(move || {
            let (db, stats, me, filter) = (db.clone(), stats.clone(), me.clone(), filter.clone());
            Box::pin(async move {
                let mut c = db.conn(Some(&stats)).await?;
                Ok(workspaces::count_by_owner(&mut c, &me, &filter).await?)
            }) as futures_util::future::BoxFuture<'static, AppResult<i64>>
        });
        Ok(WorkspaceConnection {
            edges,
            page_info,
            total,
        })
    }

    /// Full-text search over the caller's messages (`websearch_to_tsquery` syntax:
    /// words, "quoted phrases", -excluded, or), best first.
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, None) * child_complexity")]
    async fn search_messages(
        &self,
        ctx: &Context<'_>,
        query: String,
        workspace_id: Option<Uuid>,
        conversation_id: Option<Uuid>,
        first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<SearchConnection> {
        let me = caller(ctx)?.user_id.clone();
        if query.trim().is_empty() || query.len() > 1000 {
            return Err(AppError::bad_input(
                "query",
                "`query` must be 1 to 1000 characters",
            ));
        }
        let first = first.unwrap_or(20);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(AppError::bad_input(
                "first",
                format!("`first` must be between 0 and {MAX_PAGE_SIZE}"),
            ));
        }
        let after = after
            .map(|cursor| decode_search_cursor(&cursor))
            .transpose()?;
        let mut c = conn(ctx).await?;
        let scope = SearchScope {
            owner_id: me,
            workspace_id,
            conversation_id,
        };
        // The search is scoped to the caller's rows, so hits prove access; only an
        // empty page needs the scope checked, to answer NOT_FOUND/FORBIDDEN instead.
        let mut hits =
            messages::search(&mut c, &query, &scope, after, i64::from(first) + 1).await?;
        if hits.is_empty() {
            if let Some(id) = workspace_id {
                let found = workspaces::get(&mut c, id).await?.map(|w| {
                    let owner = w.owner_id.clone();
                    (w, owner)
                });
                authorize(found, &scope.owner_id, "workspace")?;
            }
            if let Some(id) = conversation_id {
                authorize(
                    conversations::get_with_owner(&mut c, id).await?,
                    &scope.owner_id,
                    "conversation",
                )?;
            }
        }
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

//! `Workspace` and its connection.

use async_graphql::{Context, Enum, Json, Object};
use chrono::{DateTime, Utc};

use crate::db::workspaces::Workspace as WorkspaceRow;
use crate::db::TimeOrder;
use crate::error::{AppError, AppResult};
use crate::graphql::connection::{Connection, Node, Total};
use crate::graphql::context::load;
use crate::graphql::conversation::{Conversation, ConversationConnection};
use crate::graphql::filters::ConversationFilter;
use crate::graphql::loaders::{ConversationCountKey, ConversationPageKey, PageQuery, UserNameKey};
use crate::graphql::node::NodeId;
use crate::graphql::paging::page_args;
use crate::graphql::user::UserProfile;

/// The orders a list of workspaces or conversations can be read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Default)]
pub enum ListOrder {
    /// Newest first.
    #[default]
    CreatedAtDesc,
    /// Oldest first.
    CreatedAtAsc,
    /// Most recently updated first.
    UpdatedAtDesc,
    /// Least recently updated first.
    UpdatedAtAsc,
}

impl From<ListOrder> for TimeOrder {
    fn from(order: ListOrder) -> Self {
        match order {
            ListOrder::CreatedAtDesc => TimeOrder::CreatedDesc,
            ListOrder::CreatedAtAsc => TimeOrder::CreatedAsc,
            ListOrder::UpdatedAtDesc => TimeOrder::UpdatedDesc,
            ListOrder::UpdatedAtAsc => TimeOrder::UpdatedAsc,
        }
    }
}

/// A workspace: owned by one user, holding conversations.
pub struct Workspace(pub WorkspaceRow);

/// A workspace: owned by one user, holding conversations.
#[Object]
impl Workspace {
    /// Primary key.
    async fn id(&self) -> NodeId {
        NodeId(self.0.id)
    }
    /// 1 to 100 characters.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Free text.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// The owner's `userId`.
    async fn owner_id(&self) -> &str {
        &self.0.owner_id
    }
    /// The owner.
    async fn owner(&self, ctx: &Context<'_>) -> AppResult<UserProfile> {
        load(ctx, UserNameKey(self.0.owner_id.clone()))
            .await?
            .map(|row| UserProfile::met(&row))
            .ok_or_else(|| AppError::NotFound("owner not found".into()))
    }
    /// Free-form JSON object.
    async fn metadata(&self) -> Json<serde_json::Value> {
        Json(self.0.metadata.clone())
    }
    /// When the row was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the row last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// The workspace's conversations, a keyset page at a time (newest first by default).
    #[expect(
        clippy::too_many_arguments,
        reason = "a Relay list field takes first, after, last, before, filter and orderBy"
    )]
    #[graphql(complexity = "crate::graphql::paging::page_cost(first, last) * child_complexity")]
    async fn conversations(
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
        let query = PageQuery::new(
            ConversationFilter::to_db(
                filter.as_ref(),
                crate::graphql::context::request(ctx).db.prepared_shapes(),
            )?,
            args,
        );
        let key = ConversationPageKey {
            parent: self.0.id,
            query,
        };
        let page = load(ctx, key.clone()).await?.unwrap_or_default();
        Ok(Connection::from_page(
            page,
            order,
            |c| order.key(c.created_at, c.updated_at, c.id),
            Conversation,
            Total::batched(ConversationCountKey(key)),
        ))
    }

    /// How many conversations match `filter`.
    async fn conversation_count(
        &self,
        ctx: &Context<'_>,
        filter: Option<ConversationFilter>,
    ) -> AppResult<i32> {
        let query = PageQuery::new(
            ConversationFilter::to_db(
                filter.as_ref(),
                crate::graphql::context::request(ctx).db.prepared_shapes(),
            )?,
            Default::default(),
        );
        let n = load(
            ctx,
            ConversationCountKey(ConversationPageKey {
                parent: self.0.id,
                query,
            }),
        )
        .await?;
        Ok(n.unwrap_or(0) as i32)
    }
}

/// A page of workspaces.
pub type WorkspaceConnection = Connection<Workspace>;

impl Node for Workspace {
    const NAME: &'static str = "Workspace";
    type Output<'a> = &'a Workspace;
    type Prepared = ();
    fn prepare(_: &Context<'_>) {}
    fn output(&self, _: &()) -> &Workspace {
        self
    }
}

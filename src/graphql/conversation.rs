//! `Conversation` and its connection.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::{Context, InputType as _, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::db::conversations::Conversation as ConversationRow;
use crate::db::TimeOrder;
use crate::error::AppResult;
use crate::graphql::budget::Checked;
use crate::graphql::connection::{Connection, Node, Total};
use crate::graphql::context::{load, load_many, scope};
use crate::graphql::filters::MessageFilter;
use crate::graphql::loaders::{
    LatestMessagesKey, MessageCountKey, MessagePageFilter, MessagePageKey, PageQuery,
    SenderCountsKey, UserNameKey, WorkspaceKey,
};
use crate::graphql::message::{Message, MessageConnection};
use crate::graphql::node::NodeId;
use crate::graphql::paging::{
    latest_cost, page_args, participants_cost, within, DEFAULT_LATEST, DEFAULT_PARTICIPANTS,
    MAX_LATEST, MAX_PARTICIPANTS,
};
use crate::graphql::plain::{Plain, PlainField, PlainFields, PlainPlan};
use crate::graphql::user::UserProfile;
use crate::graphql::workspace::Workspace;

/// A conversation in a workspace (the row is shared with the request's loader, so
/// handing a page to its resolver copies no row).
pub struct Conversation(pub Arc<ConversationRow>);

impl From<ConversationRow> for Conversation {
    fn from(row: ConversationRow) -> Self {
        Self(Arc::new(row))
    }
}

/// Messages one sender sent in a conversation.
#[derive(SimpleObject)]
pub struct SenderCount {
    /// The sender's `userId`.
    pub sender_id: String,
    /// How many messages.
    pub count: i32,
}

/// A conversation in a workspace: read by the workspace's owner and its
/// participants, who also post in it; changed and deleted by the owner.
#[Object]
impl Conversation {
    /// Primary key.
    async fn id(&self) -> NodeId {
        NodeId(self.0.id)
    }
    /// The workspace it belongs to.
    async fn workspace_id(&self) -> NodeId {
        NodeId(self.0.workspace_id)
    }
    /// The workspace: `null` unless the caller owns it (a participant reads the
    /// conversation, not the rest of its workspace).
    async fn workspace(&self, ctx: &Context<'_>) -> AppResult<Option<Workspace>> {
        Ok(load(ctx, WorkspaceKey(self.0.workspace_id))
            .await?
            .map(Workspace))
    }
    /// 1 to 200 characters.
    async fn topic(&self) -> &str {
        &self.0.topic
    }
    /// `userId`s of the participants.
    async fn participant_ids(&self) -> &[String] {
        &self.0.participant_ids
    }
    /// The first `first` (0 to 1,000, default 100) of `participantIds`, as
    /// profiles: a name only for the caller and for participants who have
    /// written in this conversation (see `UserProfile`).
    #[graphql(complexity = "participants_cost(first) * child_complexity")]
    async fn participants(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "DEFAULT_PARTICIPANTS")] first: i32,
    ) -> AppResult<Vec<Checked<UserProfile>>> {
        let first = within("first", first, MAX_PARTICIPANTS as i32)? as usize;
        let ids = &self.0.participant_ids[..first.min(self.0.participant_ids.len())];
        let me = scope(ctx)?.user_id();
        // Both batched over the whole level: the users, and who wrote where.
        let (mut found, senders) = futures_util::try_join!(
            load_many(ctx, ids.iter().cloned().map(UserNameKey)),
            load(ctx, SenderCountsKey(self.0.id)),
        )?;
        let wrote: HashSet<&str> = senders
            .iter()
            .flatten()
            .map(|(sender, _)| sender.as_str())
            .collect();
        Ok(ids
            .iter()
            .map(|id| {
                let row = found.remove(&UserNameKey(id.clone()));
                let met = id == me || wrote.contains(id.as_str());
                Checked(UserProfile {
                    user_id: id.clone(),
                    name: row.filter(|_| met).map(|r| r.name.clone()),
                })
            })
            .collect())
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

    /// Messages, oldest first; `last: N` reads the newest N.
    #[graphql(complexity = "crate::graphql::paging::page_cost(first, last) * child_complexity")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<MessageFilter>,
    ) -> AppResult<MessageConnection> {
        // Message cursors use the chronological key under the `CreatedAsc` tag.
        let order = TimeOrder::CreatedAsc;
        let args = page_args(first, after.as_deref(), last, before.as_deref(), order)?;
        let look = ctx.look_ahead();
        let shows = |field: &str| {
            look.field("nodes").field(field).exists()
                || look.field("edges").field("node").field(field).exists()
        };
        // Metadata is read only when shown: 2,000 decoded maps were most of a nested
        // response's memory. (The look-ahead sees through fragments and aliases.)
        let with_metadata = shows("metadata");
        let filter = MessagePageFilter {
            criteria: MessageFilter::to_db(
                filter.as_ref(),
                crate::graphql::context::request(ctx).db.prepared_shapes(),
            )?,
            with_metadata,
        };
        let query = PageQuery::new(filter, args);
        let key = MessagePageKey {
            parent: self.0.id,
            query,
        };
        let page = load(ctx, key.clone()).await?.unwrap_or_default();
        // A page's messages mostly share a few senders: one load of the distinct ones
        // per page, batched with every other page of the query, instead of one loader
        // call per message (2,000 calls were half the nested benchmark's CPU).
        let senders = if shows("sender") {
            let ids: HashSet<&str> = page.rows.iter().map(|m| m.sender_id.as_str()).collect();
            let found =
                load_many(ctx, ids.into_iter().map(|id| UserNameKey(id.to_string()))).await?;
            Some(
                found
                    .into_iter()
                    .map(|(key, user)| (key.0, user))
                    .collect::<HashMap<_, _>>(),
            )
        } else {
            None
        };
        let node = |row: Arc<crate::db::messages::Message>| {
            let node = match &senders {
                Some(senders) => {
                    let sender = senders.get(&row.sender_id).cloned();
                    Message::with_sender(row, sender)
                }
                None => Message::from(row),
            };
            if with_metadata {
                node
            } else {
                node.without_metadata()
            }
        };
        Ok(Connection::from_page(
            page,
            order,
            |m| (m.timestamp, m.id),
            node,
            Total::batched(MessageCountKey(key)),
        ))
    }

    /// The newest `limit` messages, returned oldest first.
    #[graphql(complexity = "latest_cost(limit) * child_complexity")]
    async fn latest_messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "DEFAULT_LATEST")] limit: i32,
    ) -> AppResult<Vec<Checked<Message>>> {
        within("limit", limit, MAX_LATEST)?;
        let key = LatestMessagesKey {
            conversation_id: self.0.id,
            limit: i64::from(limit),
        };
        Ok(load(ctx, key)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|m| Checked(Message::from(m)))
            .collect())
    }

    /// Messages per sender, most active first.
    async fn message_counts_by_sender(
        &self,
        ctx: &Context<'_>,
    ) -> AppResult<Vec<Checked<SenderCount>>> {
        let counts = load(ctx, SenderCountsKey(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(counts
            .into_iter()
            .map(|(sender_id, n)| {
                Checked(SenderCount {
                    sender_id,
                    count: n as i32,
                })
            })
            .collect())
    }
}

/// A page of conversations.
pub type ConversationConnection = Connection<Conversation>;

// Conversations come by the hundred in nested and filtered pages: their in-memory
// fields skip async-graphql's per-field futures too (see `plain`).
impl PlainFields for Conversation {
    const FIELDS: &'static [(&'static str, PlainField<Self>)] = &[
        ("id", |c, _| Some(c.0.id.to_value())),
        ("workspaceId", |c, _| Some(c.0.workspace_id.to_value())),
        ("topic", |c, _| Some(c.0.topic.to_value())),
        ("participantIds", |c, _| {
            Some(c.0.participant_ids.to_value())
        }),
        ("metadata", |c, _| {
            async_graphql::to_value(&c.0.metadata).ok()
        }),
        ("createdAt", |c, _| Some(c.0.created_at.to_value())),
        ("updatedAt", |c, _| Some(c.0.updated_at.to_value())),
    ];
}

impl Node for Conversation {
    const NAME: &'static str = "Conversation";
    type Output<'a> = Plain<&'a Conversation>;
    type Prepared = Option<Arc<PlainPlan>>;
    fn prepare(ctx: &Context<'_>) -> Self::Prepared {
        PlainPlan::for_list::<Conversation>(ctx)
    }
    fn output(&self, plan: &Self::Prepared) -> Plain<&Conversation> {
        Plain::new(self, plan.clone())
    }
}

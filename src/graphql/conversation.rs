//! `Conversation` and its connection.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::{Context, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::conversations::Conversation as ConversationRow;
use crate::db::{Page, TimeOrder};
use crate::error::{AppError, AppResult};
use crate::graphql::budget::Checked;
use crate::graphql::connection::{page_args, page_info, Cursor, LazyTotal, PageInfo};
use crate::graphql::context::{load, load_many, scope};
use crate::graphql::filters::MessageFilter;
use crate::graphql::loaders::{
    ConversationCountKey, LatestMessagesKey, MessageCountKey, MessagePageFilter, MessagePageKey,
    PageQuery, SenderCountsKey, UserNameKey, WorkspaceKey,
};
use crate::graphql::message::{Message, MessageConnection, MessageEdge};
use crate::graphql::user::UserProfile;
use crate::graphql::workspace::Workspace;

/// Most `latestMessages` a client may ask for.
pub const MAX_LATEST: i32 = 100;

/// Most participants a conversation holds (checked on every write), and the
/// largest `participants(first:)`.
pub const MAX_PARTICIPANTS: usize = 1000;

/// What `participants(first:)` costs times its selection: its `first`, within
/// bounds (the list's length is not known before the query runs, so complexity
/// takes the most it may return).
pub fn participants_cost(first: i32) -> usize {
    usize::try_from(first)
        .unwrap_or(0)
        .clamp(1, MAX_PARTICIPANTS)
}

/// What `latestMessages(limit:)` costs times its selection: its `limit`, within
/// bounds (an out-of-range one is refused when it runs).
pub fn latest_cost(limit: i32) -> usize {
    limit.clamp(1, MAX_LATEST) as usize
}

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

#[Object]
impl Conversation {
    /// Primary key.
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// The workspace it belongs to.
    async fn workspace_id(&self) -> Uuid {
        self.0.workspace_id
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
        #[graphql(default = 100)] first: i32,
    ) -> AppResult<Vec<Checked<UserProfile>>> {
        let first = usize::try_from(first)
            .ok()
            .filter(|n| *n <= MAX_PARTICIPANTS)
            .ok_or_else(|| {
                AppError::bad_input(
                    "first",
                    format!("`first` must be between 0 and {MAX_PARTICIPANTS}"),
                )
            })?;
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
    #[graphql(complexity = "crate::graphql::limits::page_cost(first, last) * child_complexity")]
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
            criteria: MessageFilter::to_db(filter.as_ref())?,
            with_metadata,
        };
        let query = PageQuery::new(filter, args);
        let key = MessagePageKey {
            parent: self.0.id,
            query,
        };
        let page = load(ctx, key.clone()).await?.unwrap_or(Page {
            rows: vec![],
            has_next: false,
            has_previous: false,
        });
        let (page_info, cursors) = page_info(&page, order, |m| (m.timestamp, m.id));
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
        let edges = page
            .rows
            .into_iter()
            .zip(cursors)
            .map(|(row, cursor)| {
                let node = match &senders {
                    Some(senders) => {
                        let sender = senders.get(&row.sender_id).cloned();
                        Message::with_sender(row, sender)
                    }
                    None => Message::from(row),
                };
                let node = if with_metadata {
                    node
                } else {
                    node.without_metadata()
                };
                MessageEdge { cursor, node }
            })
            .collect();
        Ok(MessageConnection {
            edges,
            page_info,
            count_key: MessageCountKey(key),
        })
    }

    /// The newest `limit` messages, returned oldest first.
    #[graphql(complexity = "latest_cost(limit) * child_complexity")]
    async fn latest_messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] limit: i32,
    ) -> AppResult<Vec<Checked<Message>>> {
        if !(0..=MAX_LATEST).contains(&limit) {
            return Err(AppError::bad_input(
                "limit",
                format!("`limit` must be between 0 and {MAX_LATEST}"),
            ));
        }
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

/// An edge of a conversation list.
pub struct ConversationEdge {
    /// Where the edge sits (encoded only when asked for).
    pub cursor: Cursor,
    /// The conversation.
    pub node: Conversation,
}

/// An edge of a conversation list.
#[Object]
impl ConversationEdge {
    /// Opaque position, for `after`/`before`.
    async fn cursor(&self) -> String {
        self.cursor.encode()
    }
    /// The conversation.
    async fn node(&self) -> &Conversation {
        &self.node
    }
}

/// A page of conversations.
pub struct ConversationConnection {
    /// The page's edges.
    pub edges: Vec<ConversationEdge>,
    /// Relay page information.
    pub page_info: PageInfo,
    /// How `totalCount` is computed.
    pub total: ConversationTotal,
}

/// How a conversation list counts its matches.
pub enum ConversationTotal {
    /// A workspace's list: one grouped statement for every list of the level.
    Batched(ConversationCountKey),
    /// A root list: its own statement.
    Lazy(LazyTotal),
}

#[Object]
impl ConversationConnection {
    /// Edges with cursors.
    async fn edges(&self) -> Vec<Checked<&ConversationEdge>> {
        self.edges.iter().map(Checked).collect()
    }
    /// The conversations alone.
    async fn nodes(&self) -> Vec<Checked<&Conversation>> {
        self.edges.iter().map(|e| Checked(&e.node)).collect()
    }
    /// Relay page information.
    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }
    /// All matching conversations (one grouped statement for all lists, only when asked).
    async fn total_count(&self, ctx: &Context<'_>) -> AppResult<i32> {
        match &self.total {
            ConversationTotal::Batched(key) => {
                Ok(load(ctx, key.clone()).await?.unwrap_or(0) as i32)
            }
            ConversationTotal::Lazy(total) => Ok(total().await? as i32),
        }
    }
}

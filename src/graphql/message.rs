//! `Message`, its connection and search hits.

use std::sync::Arc;

use async_graphql::{Context, Json, Object, ScalarType, SimpleObject};
use chrono::{DateTime, Utc};

use crate::db::messages::Message as MessageRow;
use crate::db::users::UserName;
use crate::error::{AppError, AppResult};
use crate::graphql::budget::Checked;
use crate::graphql::connection::{Connection, Node, PageInfo};
use crate::graphql::context::load;
use crate::graphql::conversation::Conversation;
use crate::graphql::loaders::{ConversationKey, UserNameKey};
use crate::graphql::node::NodeId;
use crate::graphql::plain::{Plain, PlainField, PlainFields, PlainPlan};
use crate::graphql::user::UserProfile;

/// A message in a conversation.
pub struct Message {
    pub(crate) row: Arc<MessageRow>,
    sender: Sender,
    /// Whether `row.metadata` was read (a page that does not show it reads `null`).
    has_metadata: bool,
}

/// Whether the list a message came in has already loaded its sender.
enum Sender {
    /// Not asked: `sender` loads it through the request's loader.
    NotLoaded,
    /// Loaded with the senders of the whole list (`None`: no such user).
    Loaded(Option<Arc<UserName>>),
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Self::from(Arc::new(row))
    }
}

/// From a loader's page, whose rows are shared rather than copied.
impl From<Arc<MessageRow>> for Message {
    fn from(row: Arc<MessageRow>) -> Self {
        Self {
            row,
            sender: Sender::NotLoaded,
            has_metadata: true,
        }
    }
}

impl Message {
    /// A message whose sender was loaded with the rest of its list.
    pub fn with_sender(row: Arc<MessageRow>, sender: Option<Arc<UserName>>) -> Self {
        Self {
            row,
            sender: Sender::Loaded(sender),
            has_metadata: true,
        }
    }

    /// The same message from a page read without its metadata.
    pub fn without_metadata(self) -> Self {
        Self {
            has_metadata: false,
            ..self
        }
    }
}

/// A message in a conversation, sent by a user.
#[Object]
impl Message {
    /// Primary key.
    async fn id(&self) -> NodeId {
        NodeId(self.row.id)
    }
    /// The conversation it belongs to.
    async fn conversation_id(&self) -> NodeId {
        NodeId(self.row.conversation_id)
    }
    /// The conversation.
    async fn conversation(&self, ctx: &Context<'_>) -> AppResult<Conversation> {
        load(ctx, ConversationKey(self.row.conversation_id))
            .await?
            .map(Conversation::from)
            .ok_or_else(|| AppError::NotFound("conversation not found".into()))
    }
    /// The sender's `userId`.
    async fn sender_id(&self) -> &str {
        &self.row.sender_id
    }
    /// The sender.
    async fn sender(&self, ctx: &Context<'_>) -> AppResult<UserProfile> {
        let found = match &self.sender {
            Sender::Loaded(sender) => sender.clone(),
            Sender::NotLoaded => load(ctx, UserNameKey(self.row.sender_id.clone())).await?,
        };
        found
            .map(|row| UserProfile::met(&row))
            .ok_or_else(|| AppError::NotFound("sender not found".into()))
    }
    /// Free-form JSON object.
    async fn metadata(&self) -> AppResult<Json<serde_json::Value>> {
        // The page's look-ahead decides whether metadata is read; answering `null`
        // for a stored object would be a silent lie, so a miss there is an error.
        if !self.has_metadata {
            return Err(AppError::internal("message metadata asked but not read"));
        }
        Ok(Json(self.row.metadata.clone()))
    }
    /// The text.
    async fn content(&self) -> &str {
        &self.row.content
    }
    /// When it was sent.
    async fn timestamp(&self) -> DateTime<Utc> {
        self.row.timestamp
    }
    /// When the row was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
    /// When the row last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
}

// Messages come by the thousand in nested pages: their in-memory fields skip
// async-graphql's per-field futures (see `plain`). Scalars encode themselves.
impl PlainFields for Message {
    const FIELDS: &'static [(&'static str, PlainField<Self>)] = &[
        ("id", |m, _| Some(m.row.id.to_value())),
        ("conversationId", |m, _| {
            Some(m.row.conversation_id.to_value())
        }),
        ("senderId", |m, _| Some(m.row.sender_id.to_value())),
        ("content", |m, _| Some(m.row.content.to_value())),
        ("timestamp", |m, _| Some(m.row.timestamp.to_value())),
        ("createdAt", |m, _| Some(m.row.created_at.to_value())),
        ("updatedAt", |m, _| Some(m.row.updated_at.to_value())),
        ("metadata", |m, _| {
            m.has_metadata
                .then(|| async_graphql::to_value(&m.row.metadata).ok())
                .flatten()
        }),
        // A missing sender is an error, which async-graphql reports with its path.
        ("sender", |m, selection| match &m.sender {
            Sender::Loaded(Some(user)) => selection?.answer(&UserProfile::met(user)),
            Sender::Loaded(None) | Sender::NotLoaded => None,
        }),
    ];
}

/// A page of messages.
pub type MessageConnection = Connection<Message>;

impl Node for Message {
    const NAME: &'static str = "Message";
    type Output<'a> = Plain<&'a Message>;
    type Prepared = Option<Arc<PlainPlan>>;
    fn prepare(ctx: &Context<'_>) -> Self::Prepared {
        PlainPlan::for_list::<Message>(ctx)
    }
    fn output(&self, plan: &Self::Prepared) -> Plain<&Message> {
        Plain::new(self, plan.clone())
    }
}

/// A full-text search hit.
#[derive(SimpleObject)]
pub struct SearchHitEdge {
    /// Opaque position, for `after`.
    pub cursor: String,
    /// The message.
    pub node: Message,
    /// `ts_rank` relevance.
    pub rank: f32,
    /// The content around the matches as HTML: the text escaped, the matches
    /// in `<b>…</b>`, no other markup (safe to insert as HTML).
    pub headline: String,
}

/// A page of search hits, best first.
#[derive(SimpleObject)]
pub struct SearchConnection {
    /// Hits with cursors.
    pub edges: Vec<Checked<SearchHitEdge>>,
    /// Relay page information.
    pub page_info: PageInfo,
}

//! The `Mutation` root: the seed's services. Each validates its input and writes
//! through the caller's scope (`db::scope`), which holds the access rules.

use async_graphql::{Context, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::db::conversations::ConversationChanges;
use crate::db::messages::MessageChanges;
use crate::db::scope::{ConversationDraft, MessageDraft, WorkspaceDraft};
use crate::db::workspaces::WorkspaceChanges;
use crate::error::{AppError, AppResult};
use crate::graphql::context::{scope, with_conn};
use crate::graphql::conversation::Conversation;
use crate::graphql::message::Message;
use crate::graphql::node::NodeId;
use crate::graphql::workspace::Workspace;

/// Write operations.
pub struct MutationRoot;

/// A new workspace.
#[derive(InputObject)]
pub struct CreateWorkspaceInput {
    /// 1 to 100 characters.
    pub name: String,
    /// Free text.
    #[graphql(default)]
    pub description: String,
    /// A JSON object.
    pub metadata: Option<Json<Value>>,
}

/// Changes to a workspace; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateWorkspaceInput {
    /// 1 to 100 characters.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// A JSON object (replaces the old one).
    pub metadata: Option<Json<Value>>,
}

/// A new conversation.
#[derive(InputObject)]
pub struct CreateConversationInput {
    /// The workspace (must be the caller's).
    pub workspace_id: NodeId,
    /// 1 to 200 characters.
    pub topic: String,
    /// `userId`s taking part (the caller is always added).
    #[graphql(default)]
    pub participant_ids: Vec<String>,
    /// A JSON object.
    pub metadata: Option<Json<Value>>,
}

/// The first conversation of a new workspace.
#[derive(InputObject)]
pub struct FirstConversationInput {
    /// 1 to 200 characters.
    pub topic: String,
    /// `userId`s taking part (the caller is always added).
    #[graphql(default)]
    pub participant_ids: Vec<String>,
    /// A JSON object.
    pub metadata: Option<Json<Value>>,
}

/// Changes to a conversation; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateConversationInput {
    /// 1 to 200 characters.
    pub topic: Option<String>,
    /// Replaces the participants.
    pub participant_ids: Option<Vec<String>>,
    /// A JSON object (replaces the old one).
    pub metadata: Option<Json<Value>>,
}

/// A message from the caller.
#[derive(InputObject)]
pub struct SendMessageInput {
    /// The conversation (in one of the caller's workspaces).
    pub conversation_id: NodeId,
    /// Non-empty text.
    pub content: String,
    /// A JSON object.
    pub metadata: Option<Json<Value>>,
    /// When it was sent (default: now).
    pub timestamp: Option<DateTime<Utc>>,
}

/// Changes to a message; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateMessageInput {
    /// Non-empty text.
    pub content: Option<String>,
    /// A JSON object (replaces the old one).
    pub metadata: Option<Json<Value>>,
}

/// What `createWorkspaceWithConversation` wrote.
#[derive(SimpleObject)]
pub struct WorkspaceWithConversation {
    /// The new workspace.
    pub workspace: Workspace,
    /// Its first conversation.
    pub conversation: Conversation,
}

/// Largest message accepted, in bytes.
pub const MAX_CONTENT_BYTES: usize = 100_000;

fn check_len(field: &str, value: &str, max: usize) -> AppResult<()> {
    let n = value.chars().count();
    if value.trim().is_empty() || n > max {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` must be 1 to {max} characters"),
        ));
    }
    Ok(())
}

fn check_metadata(metadata: Option<Json<Value>>) -> AppResult<Option<Value>> {
    match metadata {
        None => Ok(None),
        Some(Json(v)) if v.is_object() => Ok(Some(v)),
        Some(_) => Err(AppError::bad_input(
            "metadata",
            "`metadata` must be a JSON object",
        )),
    }
}

fn check_content(content: &str) -> AppResult<()> {
    if content.trim().is_empty() {
        return Err(AppError::bad_input(
            "content",
            "`content` must not be empty",
        ));
    }
    if content.len() > MAX_CONTENT_BYTES {
        return Err(AppError::bad_input(
            "content",
            format!("`content` must be at most {MAX_CONTENT_BYTES} bytes"),
        ));
    }
    if content.contains('\0') {
        return Err(AppError::bad_input(
            "content",
            "`content` must not contain NUL characters",
        ));
    }
    Ok(())
}

fn participants(me: &str, mut ids: Vec<String>) -> AppResult<Vec<String>> {
    let max = crate::graphql::paging::MAX_PARTICIPANTS;
    let refused = || {
        AppError::bad_input(
            "participantIds",
            format!("`participantIds` must hold at most {max} distinct non-empty ids, the caller included"),
        )
    };
    // The body limit bounds the list; this bounds the work before the set below.
    if ids.len() > 2 * max || ids.iter().any(|i| i.is_empty() || i.len() > 255) {
        return Err(refused());
    }
    if !ids.iter().any(|i| i == me) {
        ids.insert(0, me.to_string());
    }
    // Each id once, in the order first given (`dedup` alone drops only neighbours).
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.retain(|id| seen.insert(id.clone()));
    // Counted once the caller is in: the stored list never exceeds the bound.
    if ids.len() > max {
        return Err(refused());
    }
    Ok(ids)
}

/// Write operations, each in its own transaction.
#[Object(name = "Mutation")]
impl MutationRoot {
    /// Creates a workspace owned by the caller.
    async fn create_workspace(
        &self,
        ctx: &Context<'_>,
        input: CreateWorkspaceInput,
    ) -> AppResult<Workspace> {
        let scope = scope(ctx)?;
        check_len("name", &input.name, 100)?;
        let draft = WorkspaceDraft {
            name: input.name,
            description: input.description,
            metadata: check_metadata(input.metadata)?.unwrap_or_else(|| serde_json::json!({})),
        };
        let created = with_conn(ctx, async |c| Ok(scope.create_workspace(c, draft).await?)).await?;
        Ok(Workspace(created))
    }

    /// Changes one of the caller's workspaces.
    async fn update_workspace(
        &self,
        ctx: &Context<'_>,
        id: NodeId,
        input: UpdateWorkspaceInput,
    ) -> AppResult<Workspace> {
        let scope = scope(ctx)?;
        if let Some(name) = &input.name {
            check_len("name", name, 100)?;
        }
        let changes = WorkspaceChanges {
            name: input.name,
            description: input.description,
            metadata: check_metadata(input.metadata)?,
        };
        let updated = with_conn(ctx, async |c| {
            Ok(scope.update_workspace(c, id.0, &changes).await?)
        })
        .await?;
        updated.required().map(Workspace)
    }

    /// Deletes one of the caller's workspaces with everything in it; returns its id.
    async fn delete_workspace(&self, ctx: &Context<'_>, id: NodeId) -> AppResult<NodeId> {
        let scope = scope(ctx)?;
        let deleted = with_conn(ctx, async |c| Ok(scope.delete_workspace(c, id.0).await?)).await?;
        deleted.required().map(|()| id)
    }

    /// Creates a conversation in one of the caller's workspaces.
    async fn create_conversation(
        &self,
        ctx: &Context<'_>,
        input: CreateConversationInput,
    ) -> AppResult<Conversation> {
        let scope = scope(ctx)?;
        check_len("topic", &input.topic, 200)?;
        let draft = ConversationDraft {
            workspace_id: input.workspace_id.0,
            topic: input.topic,
            participant_ids: participants(scope.user_id(), input.participant_ids)?,
            metadata: check_metadata(input.metadata)?.unwrap_or_else(|| serde_json::json!({})),
        };
        let created = with_conn(ctx, async |c| {
            Ok(scope.create_conversation(c, &draft).await?)
        })
        .await?;
        created.required().map(Conversation::from)
    }

    /// Changes a conversation in one of the caller's workspaces (participants who
    /// do not own the workspace may not).
    async fn update_conversation(
        &self,
        ctx: &Context<'_>,
        id: NodeId,
        input: UpdateConversationInput,
    ) -> AppResult<Conversation> {
        let scope = scope(ctx)?;
        if let Some(topic) = &input.topic {
            check_len("topic", topic, 200)?;
        }
        let changes = ConversationChanges {
            topic: input.topic,
            participant_ids: input
                .participant_ids
                .map(|p| participants(scope.user_id(), p))
                .transpose()?,
            metadata: check_metadata(input.metadata)?,
        };
        let updated = with_conn(ctx, async |c| {
            Ok(scope.update_conversation(c, id.0, &changes).await?)
        })
        .await?;
        updated.required().map(Conversation::from)
    }

    /// Deletes a conversation of one of the caller's workspaces (with its
    /// messages); returns its id.
    async fn delete_conversation(&self, ctx: &Context<'_>, id: NodeId) -> AppResult<NodeId> {
        let scope = scope(ctx)?;
        let deleted = with_conn(ctx, async |c| {
            Ok(scope.delete_conversation(c, id.0).await?)
        })
        .await?;
        deleted.required().map(|()| id)
    }

    /// Sends a message from the caller into a conversation they may read (their
    /// workspace's, or one they take part in); the timestamp defaults to now.
    async fn send_message(&self, ctx: &Context<'_>, input: SendMessageInput) -> AppResult<Message> {
        let scope = scope(ctx)?;
        check_content(&input.content)?;
        let draft = MessageDraft {
            conversation_id: input.conversation_id.0,
            content: input.content,
            timestamp: input.timestamp.unwrap_or_else(Utc::now),
            metadata: check_metadata(input.metadata)?.unwrap_or_else(|| serde_json::json!({})),
        };
        let sent = with_conn(ctx, async |c| Ok(scope.send_message(c, &draft).await?)).await?;
        sent.required().map(Message::from)
    }

    /// Changes a message: the workspace's owner may change any, a participant
    /// their own.
    async fn update_message(
        &self,
        ctx: &Context<'_>,
        id: NodeId,
        input: UpdateMessageInput,
    ) -> AppResult<Message> {
        let scope = scope(ctx)?;
        if let Some(content) = &input.content {
            check_content(content)?;
        }
        let changes = MessageChanges {
            content: input.content,
            metadata: check_metadata(input.metadata)?,
        };
        let updated = with_conn(ctx, async |c| {
            Ok(scope.update_message(c, id.0, &changes).await?)
        })
        .await?;
        updated.required().map(Message::from)
    }

    /// Deletes a message (the workspace's owner any, a participant their own);
    /// returns its id.
    async fn delete_message(&self, ctx: &Context<'_>, id: NodeId) -> AppResult<NodeId> {
        let scope = scope(ctx)?;
        let deleted = with_conn(ctx, async |c| Ok(scope.delete_message(c, id.0).await?)).await?;
        deleted.required().map(|()| id)
    }

    /// Creates a workspace and its first conversation in one transaction: both or neither.
    async fn create_workspace_with_conversation(
        &self,
        ctx: &Context<'_>,
        workspace: CreateWorkspaceInput,
        conversation: FirstConversationInput,
    ) -> AppResult<WorkspaceWithConversation> {
        let scope = scope(ctx)?;
        check_len("workspace.name", &workspace.name, 100)?;
        check_len("conversation.topic", &conversation.topic, 200)?;
        let workspace = WorkspaceDraft {
            name: workspace.name,
            description: workspace.description,
            metadata: check_metadata(workspace.metadata)?.unwrap_or_else(|| serde_json::json!({})),
        };
        let conversation = ConversationDraft {
            workspace_id: Uuid::nil(),
            topic: conversation.topic,
            participant_ids: participants(scope.user_id(), conversation.participant_ids)?,
            metadata: check_metadata(conversation.metadata)?
                .unwrap_or_else(|| serde_json::json!({})),
        };
        let (w, c) = with_conn(ctx, async |c| {
            Ok(scope
                .create_workspace_with_conversation(c, workspace, conversation)
                .await?)
        })
        .await?;
        Ok(WorkspaceWithConversation {
            workspace: Workspace(w),
            conversation: Conversation::from(c),
        })
    }
}

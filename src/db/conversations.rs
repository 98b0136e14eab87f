//! `conversations`: inside a workspace, between participants.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::db::metadata::{metadata_predicate_for, planned_with_values, MetadataFilter, Within};
use crate::db::schema::conversations;
use crate::db::workspaces::{escape_like, Workspace};
use crate::db::{ordered_page, Page, PageArgs};

metadata_predicate_for!(conversations);

/// A row of `conversations`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Associations)]
#[diesel(table_name = conversations, belongs_to(Workspace), check_for_backend(diesel::pg::Pg))]
pub struct Conversation {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub topic: String,
    pub participant_ids: Vec<String>,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A conversation to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = conversations)]
pub struct NewConversation {
    pub workspace_id: Uuid,
    pub topic: String,
    pub participant_ids: Vec<String>,
    pub metadata: Value,
}

/// A partial update: `None` leaves a column as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = conversations)]
pub struct ConversationChanges {
    pub topic: Option<String>,
    pub participant_ids: Option<Vec<String>>,
    pub metadata: Option<Value>,
}

/// Conversation criteria besides the workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConversationFilter {
    /// On `metadata`.
    pub metadata: Option<MetadataFilter>,
    /// Conversations this user takes part in.
    pub participant_id: Option<String>,
    /// Case-insensitive substring of the topic.
    pub topic_contains: Option<String>,
}

/// Inserts a conversation.
pub async fn create(
    conn: &mut AsyncPgConnection,
    new: &NewConversation,
) -> QueryResult<Conversation> {
    diesel::insert_into(conversations::table)
        .values(new)
        .returning(Conversation::as_returning())
        .get_result(conn)
        .await
}

/// The conversation with this id.
pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Conversation>> {
    conversations::table
        .find(id)
        .select(Conversation::as_select())
        .first(conn)
        .await
        .optional()
}

/// The conversations with these ids, in one statement (dataloaders).
pub async fn get_many(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<Conversation>> {
    conversations::table
        .filter(conversations::id.eq_any(ids))
        .select(Conversation::as_select())
        .load(conn)
        .await
}

/// The criteria of `filter` as a boxed query over all conversations, to be read
/// `within` the table or one workspace (which decides whether the statement may be
/// kept prepared: within a parent it is planned with the values in view).
pub fn filtered<'a>(
    filter: &ConversationFilter,
    within: Within,
) -> conversations::BoxedQuery<'a, diesel::pg::Pg> {
    let mut query = conversations::table.into_boxed();
    if let Some(m) = &filter.metadata {
        query = query.filter(metadata_predicate(m));
    }
    if let Some(user) = &filter.participant_id {
        query = query.filter(conversations::participant_ids.contains(vec![user.clone()]));
    }
    if let Some(part) = &filter.topic_contains {
        query = query.filter(conversations::topic.ilike(format!("%{}%", escape_like(part))));
    }
    // The metadata and participant tests may be answered by GIN indexes or not,
    // depending on their values (`Within::Parent`).
    if within == Within::Parent && (filter.metadata.is_some() || filter.participant_id.is_some()) {
        query = query.filter(planned_with_values());
    }
    query
}

/// A workspace's conversations, newest first, one keyset page at a time.
pub async fn list_by_workspace(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    filter: &ConversationFilter,
    args: &PageArgs,
) -> QueryResult<Page<Conversation>> {
    let query = filtered(filter, Within::Parent)
        .filter(conversations::workspace_id.eq(workspace_id))
        .select(Conversation::as_select());
    let query = ordered_page!(query, args, conversations);
    Ok(Page::from_fetched(query.load(conn).await?, args))
}

/// How many of a workspace's conversations match `filter`.
pub async fn count_by_workspace(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    filter: &ConversationFilter,
) -> QueryResult<i64> {
    filtered(filter, Within::Parent)
        .filter(conversations::workspace_id.eq(workspace_id))
        .count()
        .get_result(conn)
        .await
}

/// Conversations of a workspace whose metadata matches (the seed's `find_by_metadata`).
pub async fn find_by_metadata(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    filter: &MetadataFilter,
) -> QueryResult<Vec<Conversation>> {
    conversations::table
        .filter(conversations::workspace_id.eq(workspace_id))
        .into_boxed()
        .filter(metadata_predicate(filter))
        .filter(planned_with_values())
        .order((conversations::created_at.desc(), conversations::id.desc()))
        .select(Conversation::as_select())
        .load(conn)
        .await
}

/// Applies `changes`; `None` when the conversation does not exist.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &ConversationChanges,
) -> QueryResult<Option<Conversation>> {
    diesel::update(conversations::table.find(id))
        .set(changes)
        .returning(Conversation::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes a conversation with its messages; whether it existed.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    Ok(diesel::delete(conversations::table.find(id))
        .execute(conn)
        .await?
        > 0)
}

//! `workspaces`: owned by a user, holding conversations.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::db::conversations::{self, Conversation, NewConversation};
use crate::db::metadata::{metadata_predicate_for, MetadataFilter};
use crate::db::schema::workspaces;
use crate::db::{ordered_page, Page, PageArgs};

metadata_predicate_for!(workspaces);

/// A row of `workspaces`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = workspaces, check_for_backend(diesel::pg::Pg))]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub owner_id: String,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A workspace to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = workspaces)]
pub struct NewWorkspace {
    pub name: String,
    pub description: String,
    pub owner_id: String,
    pub metadata: Value,
}

/// A partial update: `None` leaves a column as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = workspaces)]
pub struct WorkspaceChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: Option<Value>,
}

/// Inserts a workspace.
pub async fn create(conn: &mut AsyncPgConnection, new: &NewWorkspace) -> QueryResult<Workspace> {
    diesel::insert_into(workspaces::table)
        .values(new)
        .returning(Workspace::as_returning())
        .get_result(conn)
        .await
}

/// The workspace with this id.
pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Workspace>> {
    workspaces::table
        .find(id)
        .select(Workspace::as_select())
        .first(conn)
        .await
        .optional()
}

/// The first workspace matching both an owner and a name (the seed's `get_by`).
pub async fn get_by_owner_and_name(
    conn: &mut AsyncPgConnection,
    owner: &str,
    name: &str,
) -> QueryResult<Option<Workspace>> {
    workspaces::table
        .filter(
            workspaces::owner_id
                .eq(owner)
                .and(workspaces::name.eq(name)),
        )
        .select(Workspace::as_select())
        .first(conn)
        .await
        .optional()
}

/// The workspaces with these ids, in one statement (dataloaders).
pub async fn get_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Workspace>> {
    workspaces::table
        .filter(workspaces::id.eq_any(ids))
        .select(Workspace::as_select())
        .load(conn)
        .await
}

/// An owner's workspaces, newest first, matching `filter`, one keyset page at a time.
pub async fn list_by_owner(
    conn: &mut AsyncPgConnection,
    owner: &str,
    filter: &WorkspaceFilter,
    args: &PageArgs,
) -> QueryResult<Page<Workspace>> {
    let query = filtered(owner, filter).select(Workspace::as_select());
    let query = ordered_page!(query, args, workspaces);
    Ok(Page::from_fetched(query.load(conn).await?, args))
}

/// How many of an owner's workspaces match `filter`.
pub async fn count_by_owner(
    conn: &mut AsyncPgConnection,
    owner: &str,
    filter: &WorkspaceFilter,
) -> QueryResult<i64> {
    filtered(owner, filter).count().get_result(conn).await
}

/// Workspace criteria besides the owner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkspaceFilter {
    /// On `metadata`.
    pub metadata: Option<MetadataFilter>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
}

fn filtered<'a>(
    owner: &str,
    filter: &WorkspaceFilter,
) -> workspaces::BoxedQuery<'a, diesel::pg::Pg> {
    let mut query = workspaces::table
        .filter(workspaces::owner_id.eq(owner.to_string()))
        .into_boxed();
    if let Some(m) = &filter.metadata {
        query = query.filter(metadata_predicate(m));
    }
    if let Some(part) = &filter.name_contains {
        query = query.filter(workspaces::name.ilike(format!("%{}%", escape_like(part))));
    }
    query
}

/// Escapes `%`, `_` and `\` so user text matches literally inside a LIKE pattern.
pub fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// An owner's workspaces whose metadata matches (the seed's `find_by_metadata`).
pub async fn find_by_metadata(
    conn: &mut AsyncPgConnection,
    owner: &str,
    filter: &MetadataFilter,
) -> QueryResult<Vec<Workspace>> {
    workspaces::table
        .filter(workspaces::owner_id.eq(owner))
        .into_boxed()
        .filter(metadata_predicate(filter))
        .order((workspaces::created_at.desc(), workspaces::id.desc()))
        .select(Workspace::as_select())
        .load(conn)
        .await
}

/// A workspace with all its conversations (newest first).
pub async fn get_with_conversations(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<(Workspace, Vec<Conversation>)>> {
    let Some(workspace) = get(conn, id).await? else {
        return Ok(None);
    };
    let conversations = Conversation::belonging_to(&workspace)
        .select(Conversation::as_select())
        .order((
            crate::db::schema::conversations::created_at.desc(),
            crate::db::schema::conversations::id.desc(),
        ))
        .load(conn)
        .await?;
    Ok(Some((workspace, conversations)))
}

/// Applies `changes`; `None` when the workspace does not exist.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &WorkspaceChanges,
) -> QueryResult<Option<Workspace>> {
    diesel::update(workspaces::table.find(id))
        .set(changes)
        .returning(Workspace::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes a workspace with its conversations and messages; whether it existed.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    Ok(diesel::delete(workspaces::table.find(id))
        .execute(conn)
        .await?
        > 0)
}

/// Creates a workspace and its first conversation in one transaction: both or neither.
/// `conversation.workspace_id` is replaced by the new workspace's id.
pub async fn create_workspace_with_conversation(
    conn: &mut AsyncPgConnection,
    workspace: NewWorkspace,
    mut conversation: NewConversation,
) -> QueryResult<(Workspace, Conversation)> {
    conn.transaction(async |conn| {
        let workspace = create(conn, &workspace).await?;
        conversation.workspace_id = workspace.id;
        let conversation = conversations::create(conn, &conversation).await?;
        Ok((workspace, conversation))
    })
    .await
}

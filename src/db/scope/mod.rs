//! Who may see and do what: the one place the access rules are written.
//!
//! Every read and write the API makes goes through a [`Scope`], which only
//! [`crate::auth`] can give (it is made from a [`Caller`]). The rules:
//!
//! | row | read | write |
//! |---|---|---|
//! | workspace | its owner | its owner (update, delete, add conversations) |
//! | conversation | the workspace's owner, and its participants (`participant_ids`) | the owner (update, delete) |
//! | message | whoever may read its conversation | send: whoever may read the conversation; update, delete: the workspace's owner, or its sender while they may read the conversation |
//! | user | the caller, in full; others as a name, and only where the caller has met them (see `graphql::user::UserProfile`) | the caller's own row is made from their token |
//!
//! A lookup by id answers [`Lookup::Found`], [`Lookup::Forbidden`] (the row exists
//! and the caller may not see it, or may not do this to it) or [`Lookup::Missing`]
//! (no row has this id), as the seed maps them (403 and 404). Writes carry the rule
//! in their own statement (`UPDATE … WHERE id = $1 AND <rule>`) and only look at
//! why when nothing was written, so an allowed write costs one statement.

use diesel::dsl::{exists, Eq, Or};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::QueryFragment;
use diesel::sql_types::{Array, Jsonb, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::conversations::{self, Conversation, ConversationChanges, ConversationFilter};
use crate::db::lateral::{
    by_parent, counts_by_parent, pages_by_parent, parent_id, PerParent, TaggedPerParent,
};
use crate::db::messages::{self, Message, MessageChanges, MessageFilter, SearchHit, SearchKey};
use crate::db::metadata::Within;
use crate::db::schema::{conversations as c, messages as m, users as u, workspaces as w};
use crate::db::users::{User, UserName};
use crate::db::workspaces::{self, Workspace, WorkspaceChanges, WorkspaceFilter};
use crate::db::{keyset_page, ordered_page, Page, PageArgs};
use crate::error::{AppError, AppResult};

mod batches;
mod nodes;
mod reads;
mod writes;

pub use nodes::NodeRow;

/// What a lookup by id found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    /// The row, which the caller may see (or the write, which was made).
    Found(T),
    /// The row exists, and the caller may not see it or do this to it (why).
    Forbidden(&'static str),
    /// No row of this kind has this id.
    Missing(Entity),
}

/// The kinds of row a lookup is about (for messages to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A workspace.
    Workspace,
    /// A conversation.
    Conversation,
    /// A message.
    Message,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::Workspace => "workspace",
            Entity::Conversation => "conversation",
            Entity::Message => "message",
        })
    }
}

impl<T> Lookup<T> {
    /// The row, or `FORBIDDEN`/`NOT_FOUND`.
    pub fn required(self) -> AppResult<T> {
        match self {
            Lookup::Found(row) => Ok(row),
            Lookup::Forbidden(why) => Err(AppError::Forbidden(why.to_string())),
            Lookup::Missing(what) => Err(AppError::NotFound(format!("{what} not found"))),
        }
    }

    /// A miss as a lookup of another type; `None` when found.
    pub fn refusal<U>(self) -> Option<Lookup<U>> {
        match self {
            Lookup::Found(_) => None,
            Lookup::Forbidden(why) => Some(Lookup::Forbidden(why)),
            Lookup::Missing(what) => Some(Lookup::Missing(what)),
        }
    }

    /// The same lookup of something made from the row.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Found(row) => Lookup::Found(f(row)),
            Lookup::Forbidden(why) => Lookup::Forbidden(why),
            Lookup::Missing(what) => Lookup::Missing(what),
        }
    }
}

const NOT_YOUR_WORKSPACE: &str = "you do not have access to this workspace";
const NOT_YOUR_CONVERSATION: &str = "you do not have access to this conversation";
const NOT_YOUR_MESSAGE: &str = "you do not have access to this message";
const ONLY_OWNER_CHANGES_CONVERSATION: &str =
    "only the workspace's owner may change or delete this conversation";
const ONLY_SENDER_OR_OWNER_CHANGES_MESSAGE: &str =
    "only the message's sender or the workspace's owner may change or delete this message";

/// `workspaces.owner_id = $me`.
type OwnsWorkspace = Eq<w::owner_id, String>;
/// `workspaces.owner_id = $me OR conversations.participant_ids @> ARRAY[$me]`, on a
/// query over conversations joined with their workspace.
type ReadsConversation = Or<OwnsWorkspace, diesel::dsl::Contains<c::participant_ids, Vec<String>>>;

/// The id of a message the caller may change, as a subquery.
type EditableMessage = diesel::dsl::IntoBoxed<
    'static,
    diesel::dsl::Select<
        diesel::dsl::InnerJoin<m::table, diesel::dsl::InnerJoin<c::table, w::table>>,
        m::id,
    >,
    Pg,
>;

/// A new workspace of the caller.
#[derive(Debug, Clone)]
pub struct WorkspaceDraft {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// A JSON object.
    pub metadata: Value,
}

/// A new conversation in one of the caller's workspaces.
#[derive(Debug, Clone)]
pub struct ConversationDraft {
    /// The workspace.
    pub workspace_id: Uuid,
    /// Topic.
    pub topic: String,
    /// Participants (the caller among them).
    pub participant_ids: Vec<String>,
    /// A JSON object.
    pub metadata: Value,
}

/// A new message from the caller.
#[derive(Debug, Clone)]
pub struct MessageDraft {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Text.
    pub content: String,
    /// When it was sent.
    pub timestamp: chrono::DateTime<chrono::Utc>,
    /// A JSON object.
    pub metadata: Value,
}

/// Where a search looks, inside what the caller may read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SearchBounds {
    /// Only this workspace.
    pub workspace_id: Option<Uuid>,
    /// Only this conversation.
    pub conversation_id: Option<Uuid>,
}

/// The caller's view of the database: every query it builds carries the rules above.
#[derive(Debug, Clone, PartialEq, std::cmp::Eq)]
pub struct Scope {
    caller: Caller,
}

impl Scope {
    /// The scope of an authenticated caller.
    pub fn new(caller: Caller) -> Self {
        Self { caller }
    }

    /// The caller's `user_id`.
    pub fn user_id(&self) -> &str {
        self.caller.user_id()
    }

    /// When the caller's token expires, seconds since the epoch.
    pub fn expires_at(&self) -> i64 {
        self.caller.expires_at()
    }

    fn me(&self) -> String {
        self.caller.user_id().to_string()
    }

    // --- The rules, as SQL predicates --------------------------------------------

    fn owns_workspace(&self) -> OwnsWorkspace {
        w::owner_id.eq(self.me())
    }

    fn reads_conversation(&self) -> ReadsConversation {
        self.owns_workspace().or(self.takes_part())
    }

    /// `conversations.participant_ids @> ARRAY[$me]`.
    fn takes_part(&self) -> diesel::dsl::Contains<c::participant_ids, Vec<String>> {
        c::participant_ids.contains(vec![self.me()])
    }

    /// The caller's workspaces' ids.
    fn owned_workspace_ids(&self) -> w::BoxedQuery<'static, Pg, diesel::sql_types::Uuid> {
        w::table
            .filter(self.owns_workspace())
            .select(w::id)
            .into_boxed()
    }

    /// Messages the caller may read, over a message joined with its conversation
    /// and workspace: the plan follows the hits (a primary-key lookup each).
    pub fn readable_messages(&self) -> messages::ReadableMessages {
        Box::new(self.reads_conversation())
    }

    /// `parent.id` is a workspace of the caller: the scope of a [`PerParent`] over
    /// workspaces (a primary-key lookup per parent in every plan).
    fn parent_workspace_owned(&self) -> impl QueryFragment<Pg> + Send + 'static {
        w::table
            .filter(w::id.eq(parent_id()))
            .select(w::owner_id)
            .single_value()
            .eq(self.me())
    }

    /// `parent.id` is a conversation the caller may read: the scope of a
    /// [`PerParent`] over conversations.
    fn parent_conversation_readable(&self) -> impl QueryFragment<Pg> + Send + 'static {
        exists(
            c::table
                .inner_join(w::table)
                .filter(c::id.eq(parent_id()))
                .filter(self.reads_conversation())
                .select(c::id),
        )
    }

    // --- Why a lookup missed ------------------------------------------------------

    async fn workspace_miss<T>(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        why: &'static str,
    ) -> QueryResult<Lookup<T>> {
        let found = diesel::select(exists(w::table.find(id)))
            .get_result(conn)
            .await?;
        Ok(missed(found, Entity::Workspace, why))
    }

    async fn conversation_miss<T>(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        why: &'static str,
    ) -> QueryResult<Lookup<T>> {
        let found = diesel::select(exists(c::table.find(id)))
            .get_result(conn)
            .await?;
        Ok(missed(found, Entity::Conversation, why))
    }
}

/// A lookup that found nothing the caller may see: forbidden (`why`) when the
/// row exists, else missing.
fn missed<T>(exists: bool, what: Entity, why: &'static str) -> Lookup<T> {
    if exists {
        Lookup::Forbidden(why)
    } else {
        Lookup::Missing(what)
    }
}

/// A row read with the rule's verdict, as a lookup (the row is dropped here when
/// the caller may not see it).
fn decide<T>(found: Option<(T, bool)>, why: &'static str, what: Entity) -> Lookup<T> {
    match found {
        Some((row, true)) => Lookup::Found(row),
        Some((_, false)) => Lookup::Forbidden(why),
        None => Lookup::Missing(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_read_with_its_verdict_is_found_forbidden_or_missing() {
        assert_eq!(
            decide(Some((1, true)), "no", Entity::Message),
            Lookup::Found(1)
        );
        assert_eq!(
            decide(Some((1, false)), "no", Entity::Message),
            Lookup::Forbidden("no")
        );
        assert_eq!(
            decide(None::<(i32, bool)>, "no", Entity::Message),
            Lookup::Missing(Entity::Message)
        );
    }

    #[test]
    fn lookups_answer_the_seeds_codes() {
        assert_eq!(Lookup::Found(7).required().unwrap(), 7);
        let forbidden = Lookup::<()>::Forbidden(NOT_YOUR_WORKSPACE)
            .required()
            .unwrap_err();
        assert_eq!(
            (forbidden.code(), forbidden.to_string().as_str()),
            ("FORBIDDEN", NOT_YOUR_WORKSPACE)
        );
        let missing = Lookup::<()>::Missing(Entity::Conversation)
            .required()
            .unwrap_err();
        assert_eq!(
            (missing.code(), missing.to_string().as_str()),
            ("NOT_FOUND", "conversation not found")
        );
        assert_eq!(Lookup::Found(1).refusal::<()>(), None);
        assert_eq!(
            Lookup::<i32>::Missing(Entity::Workspace).refusal::<()>(),
            Some(Lookup::Missing(Entity::Workspace))
        );
    }
}

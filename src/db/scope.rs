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
use crate::db::messages::{self, Message, MessageChanges, MessageFilter, SearchHit, SearchKey};
use crate::db::schema::{conversations as c, messages as m, users as u, workspaces as w};
use crate::db::users::{User, UserName};
use crate::db::workspaces::{self, Workspace, WorkspaceChanges, WorkspaceFilter};
use crate::db::{keyset_page, ordered_page, parent_id, Page, PageArgs, PerParent, TaggedPerParent};
use crate::error::{AppError, AppResult};

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

    fn me(&self) -> String {
        self.caller.user_id().to_string()
    }

    // --- The rules, as SQL predicates --------------------------------------------

    fn owns_workspace(&self) -> OwnsWorkspace {
        w::owner_id.eq(self.me())
    }

    fn reads_conversation(&self) -> ReadsConversation {
        self.owns_workspace()
            .or(c::participant_ids.contains(vec![self.me()]))
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
        let found: bool = diesel::select(exists(w::table.find(id)))
            .get_result(conn)
            .await?;
        Ok(if found {
            Lookup::Forbidden(why)
        } else {
            Lookup::Missing(Entity::Workspace)
        })
    }

    async fn conversation_miss<T>(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        why: &'static str,
    ) -> QueryResult<Lookup<T>> {
        let found: bool = diesel::select(exists(c::table.find(id)))
            .get_result(conn)
            .await?;
        Ok(if found {
            Lookup::Forbidden(why)
        } else {
            Lookup::Missing(Entity::Conversation)
        })
    }

    // --- Reads by id: one statement reads the row with the rule's verdict, so
    // every answer (found, forbidden, missing) costs one statement ----------------------------------------------------------------

    /// The caller's own user row (in full: only the caller sees it).
    pub async fn me_user(&self, conn: &mut AsyncPgConnection) -> QueryResult<Option<User>> {
        crate::db::users::get_by_user_id(conn, self.user_id()).await
    }

    /// A workspace, if the caller owns it.
    pub async fn workspace(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<Workspace>> {
        let found = w::table
            .filter(w::id.eq(id))
            .select((Workspace::as_select(), self.owns_workspace()))
            .first(conn)
            .await
            .optional()?;
        Ok(decide(found, NOT_YOUR_WORKSPACE, Entity::Workspace))
    }

    /// A conversation, if the caller may read it.
    pub async fn conversation(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<Conversation>> {
        let found = c::table
            .inner_join(w::table)
            .filter(c::id.eq(id))
            .select((Conversation::as_select(), self.reads_conversation()))
            .first(conn)
            .await
            .optional()?;
        Ok(decide(found, NOT_YOUR_CONVERSATION, Entity::Conversation))
    }

    /// A message, if the caller may read its conversation.
    pub async fn message(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<Message>> {
        let found = m::table
            .inner_join(c::table.inner_join(w::table))
            .filter(m::id.eq(id))
            .select((Message::as_select(), self.reads_conversation()))
            .first(conn)
            .await
            .optional()?;
        Ok(decide(found, NOT_YOUR_MESSAGE, Entity::Message))
    }

    // --- Lists at the root ----------------------------------------------------------

    /// The caller's workspaces matching `filter`, one keyset page.
    pub async fn workspaces(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &WorkspaceFilter,
        args: &PageArgs,
    ) -> QueryResult<Page<Workspace>> {
        workspaces::list_by_owner(conn, self.user_id(), filter, args).await
    }

    /// How many of the caller's workspaces match `filter`.
    pub async fn workspace_count(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &WorkspaceFilter,
    ) -> QueryResult<i64> {
        workspaces::count_by_owner(conn, self.user_id(), filter).await
    }

    fn participating(&self, filter: &ConversationFilter) -> c::BoxedQuery<'static, Pg> {
        conversations::filtered(filter).filter(c::participant_ids.contains(vec![self.me()]))
    }

    /// The conversations the caller takes part in, in any workspace, one keyset page
    /// (served by the GIN index on `participant_ids`).
    pub async fn participating_conversations(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &ConversationFilter,
        args: &PageArgs,
    ) -> QueryResult<Page<Conversation>> {
        let query = self.participating(filter).select(Conversation::as_select());
        let query = ordered_page!(query, args, conversations);
        Ok(Page::from_fetched(query.load(conn).await?, args))
    }

    /// How many conversations the caller takes part in match `filter`.
    pub async fn participating_conversation_count(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &ConversationFilter,
    ) -> QueryResult<i64> {
        self.participating(filter).count().get_result(conn).await
    }

    /// Full-text search over the messages the caller may read, inside `bounds`.
    /// An empty page inside bounds the caller may not read (or that do not exist)
    /// is told apart from one with no hits.
    pub async fn search(
        &self,
        conn: &mut AsyncPgConnection,
        text: &str,
        bounds: SearchBounds,
        after: Option<SearchKey>,
        limit: i64,
    ) -> QueryResult<Lookup<Vec<SearchHit>>> {
        let within = messages::SearchWithin {
            readable: self.readable_messages(),
            workspace_id: bounds.workspace_id,
            conversation_id: bounds.conversation_id,
        };
        let hits = messages::search(conn, text, within, after, limit).await?;
        // Hits prove access; only an empty page needs its bounds checked.
        if !hits.is_empty() {
            return Ok(Lookup::Found(hits));
        }
        if let Some(id) = bounds.conversation_id {
            if let Some(refused) = self.conversation(conn, id).await?.refusal() {
                return Ok(refused);
            }
        }
        if let Some(id) = bounds.workspace_id {
            // A workspace is searchable where the caller reads any of its conversations.
            let (exists_at_all, reads_any): (bool, bool) = diesel::select((
                exists(w::table.find(id)),
                exists(
                    c::table
                        .inner_join(w::table)
                        .filter(c::workspace_id.eq(id))
                        .filter(self.reads_conversation()),
                ),
            ))
            .get_result(conn)
            .await?;
            if !reads_any {
                return Ok(if exists_at_all {
                    Lookup::Forbidden(NOT_YOUR_WORKSPACE)
                } else {
                    Lookup::Missing(Entity::Workspace)
                });
            }
        }
        Ok(Lookup::Found(hits))
    }

    // --- Batches for the loaders (one statement each) ------------------------------

    /// The caller's workspaces among `ids`.
    pub async fn workspaces_by_id(
        &self,
        conn: &mut AsyncPgConnection,
        ids: Vec<Uuid>,
    ) -> QueryResult<Vec<Workspace>> {
        w::table
            .filter(w::id.eq_any(ids))
            .filter(self.owns_workspace())
            .select(Workspace::as_select())
            .load(conn)
            .await
    }

    /// The conversations among `ids` the caller may read.
    pub async fn conversations_by_id(
        &self,
        conn: &mut AsyncPgConnection,
        ids: Vec<Uuid>,
    ) -> QueryResult<Vec<Conversation>> {
        c::table
            .inner_join(w::table)
            .filter(c::id.eq_any(ids))
            .filter(self.reads_conversation())
            .select(Conversation::as_select())
            .load(conn)
            .await
    }

    /// A page of conversations for each of the caller's workspaces among `parents`
    /// (only the owner sees a workspace's conversations).
    pub async fn conversation_pages(
        &self,
        conn: &mut AsyncPgConnection,
        parents: Vec<Uuid>,
        filter: &ConversationFilter,
        args: &PageArgs,
    ) -> QueryResult<Vec<Conversation>> {
        let inner = conversations::filtered(filter)
            .filter(c::workspace_id.eq(parent_id()))
            .select(Conversation::as_select());
        let inner = ordered_page!(inner, args, conversations);
        PerParent::new(parents, self.parent_workspace_owned(), inner)
            .load(conn)
            .await
    }

    /// How many conversations match `filter` in each of the caller's workspaces among `parents`.
    pub async fn conversation_counts(
        &self,
        conn: &mut AsyncPgConnection,
        parents: Vec<Uuid>,
        filter: &ConversationFilter,
    ) -> QueryResult<Vec<(Uuid, i64)>> {
        let inner = conversations::filtered(filter)
            .filter(c::workspace_id.eq(parent_id()))
            .count();
        TaggedPerParent::new(parents, self.parent_workspace_owned(), inner)
            .load(conn)
            .await
    }

    /// A page of messages for each conversation among `parents` the caller may read.
    pub async fn message_pages(
        &self,
        conn: &mut AsyncPgConnection,
        parents: Vec<Uuid>,
        filter: &MessageFilter,
        with_metadata: bool,
        args: &PageArgs,
    ) -> QueryResult<Vec<Message>> {
        let inner = messages::filtered(filter)
            .filter(m::conversation_id.eq(parent_id()))
            .select(messages::columns(with_metadata));
        let inner = keyset_page!(inner, args, m::timestamp, m::id, asc);
        PerParent::new(parents, self.parent_conversation_readable(), inner)
            .load(conn)
            .await
    }

    /// How many messages match `filter` in each conversation among `parents` the caller may read.
    pub async fn message_counts(
        &self,
        conn: &mut AsyncPgConnection,
        parents: Vec<Uuid>,
        filter: &MessageFilter,
    ) -> QueryResult<Vec<(Uuid, i64)>> {
        let inner = messages::filtered(filter)
            .filter(m::conversation_id.eq(parent_id()))
            .count();
        TaggedPerParent::new(parents, self.parent_conversation_readable(), inner)
            .load(conn)
            .await
    }

    /// The newest `limit` messages of each conversation among `parents` the caller may read.
    pub async fn latest_messages(
        &self,
        conn: &mut AsyncPgConnection,
        parents: Vec<Uuid>,
        limit: i64,
    ) -> QueryResult<Vec<Message>> {
        let inner = m::table
            .filter(m::conversation_id.eq(parent_id()))
            .order((m::timestamp.desc(), m::id.desc()))
            .limit(limit)
            .select(Message::as_select())
            .into_boxed();
        PerParent::new(parents, self.parent_conversation_readable(), inner)
            .load(conn)
            .await
    }

    /// `(conversation, sender, messages)` for each conversation among `ids` the caller may read.
    pub async fn sender_counts(
        &self,
        conn: &mut AsyncPgConnection,
        ids: Vec<Uuid>,
    ) -> QueryResult<Vec<(Uuid, String, i64)>> {
        m::table
            .inner_join(c::table.inner_join(w::table))
            .filter(m::conversation_id.eq_any(ids))
            .filter(self.reads_conversation())
            .group_by((m::conversation_id, m::sender_id))
            .select((m::conversation_id, m::sender_id, diesel::dsl::count_star()))
            .load(conn)
            .await
    }

    /// The names of the users among `user_ids` (never their e-mail, metadata or
    /// active flag; which names a caller is shown is decided where they are met).
    pub async fn user_names(
        &self,
        conn: &mut AsyncPgConnection,
        user_ids: Vec<String>,
    ) -> QueryResult<Vec<UserName>> {
        u::table
            .filter(u::user_id.eq_any(user_ids))
            .select(UserName::as_select())
            .load(conn)
            .await
    }

    // --- Writes ----------------------------------------------------------------------

    /// Creates a workspace owned by the caller.
    pub async fn create_workspace(
        &self,
        conn: &mut AsyncPgConnection,
        draft: WorkspaceDraft,
    ) -> QueryResult<Workspace> {
        workspaces::create(conn, &self.new_workspace(draft)).await
    }

    fn new_workspace(&self, draft: WorkspaceDraft) -> workspaces::NewWorkspace {
        workspaces::NewWorkspace {
            name: draft.name,
            description: draft.description,
            owner_id: self.me(),
            metadata: draft.metadata,
        }
    }

    /// Changes one of the caller's workspaces (no changes: reads it).
    pub async fn update_workspace(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        changes: &WorkspaceChanges,
    ) -> QueryResult<Lookup<Workspace>> {
        if changes.name.is_none() && changes.description.is_none() && changes.metadata.is_none() {
            return self.workspace(conn, id).await;
        }
        let updated = diesel::update(w::table.filter(w::id.eq(id)).filter(self.owns_workspace()))
            .set(changes)
            .returning(Workspace::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match updated {
            Some(row) => Ok(Lookup::Found(row)),
            None => self.workspace_miss(conn, id, NOT_YOUR_WORKSPACE).await,
        }
    }

    /// Deletes one of the caller's workspaces with everything in it.
    pub async fn delete_workspace(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<()>> {
        let deleted = diesel::delete(w::table.filter(w::id.eq(id)).filter(self.owns_workspace()))
            .execute(conn)
            .await?;
        if deleted > 0 {
            return Ok(Lookup::Found(()));
        }
        self.workspace_miss(conn, id, NOT_YOUR_WORKSPACE).await
    }

    /// Creates a conversation in one of the caller's workspaces, in one statement
    /// (`INSERT … SELECT` from the workspace when the caller owns it).
    pub async fn create_conversation(
        &self,
        conn: &mut AsyncPgConnection,
        draft: &ConversationDraft,
    ) -> QueryResult<Lookup<Conversation>> {
        let source = w::table
            .filter(w::id.eq(draft.workspace_id))
            .filter(self.owns_workspace())
            .select((
                w::id,
                draft.topic.as_str().into_sql::<Text>(),
                draft.participant_ids.clone().into_sql::<Array<Text>>(),
                (&draft.metadata).into_sql::<Jsonb>(),
            ));
        let created = diesel::insert_into(c::table)
            .values(source)
            .into_columns((c::workspace_id, c::topic, c::participant_ids, c::metadata))
            .returning(Conversation::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match created {
            Some(row) => Ok(Lookup::Found(row)),
            None => Ok(self
                .workspace_miss(conn, draft.workspace_id, NOT_YOUR_WORKSPACE)
                .await?),
        }
    }

    /// Creates a workspace of the caller and its first conversation in one
    /// transaction: both or neither.
    pub async fn create_workspace_with_conversation(
        &self,
        conn: &mut AsyncPgConnection,
        workspace: WorkspaceDraft,
        conversation: ConversationDraft,
    ) -> QueryResult<(Workspace, Conversation)> {
        let workspace = self.new_workspace(workspace);
        conn.transaction(async |conn| {
            let workspace = workspaces::create(conn, &workspace).await?;
            let conversation = conversations::create(
                conn,
                &conversations::NewConversation {
                    workspace_id: workspace.id,
                    topic: conversation.topic,
                    participant_ids: conversation.participant_ids,
                    metadata: conversation.metadata,
                },
            )
            .await?;
            Ok((workspace, conversation))
        })
        .await
    }

    /// Changes a conversation of one of the caller's workspaces (no changes: reads it).
    pub async fn update_conversation(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        changes: &ConversationChanges,
    ) -> QueryResult<Lookup<Conversation>> {
        if changes.topic.is_none()
            && changes.participant_ids.is_none()
            && changes.metadata.is_none()
        {
            // Nothing to write: the conversation, under the rule for writing it.
            let found = c::table
                .inner_join(w::table)
                .filter(c::id.eq(id))
                .select((
                    Conversation::as_select(),
                    self.reads_conversation(),
                    self.owns_workspace(),
                ))
                .first(conn)
                .await
                .optional()?;
            return Ok(match found {
                Some((row, _, true)) => Lookup::Found(row),
                Some((_, true, false)) => Lookup::Forbidden(ONLY_OWNER_CHANGES_CONVERSATION),
                Some((_, false, false)) => Lookup::Forbidden(NOT_YOUR_CONVERSATION),
                None => Lookup::Missing(Entity::Conversation),
            });
        }
        let updated = diesel::update(
            c::table
                .filter(c::id.eq(id))
                .filter(c::workspace_id.eq_any(self.owned_workspace_ids())),
        )
        .set(changes)
        .returning(Conversation::as_returning())
        .get_result(conn)
        .await
        .optional()?;
        match updated {
            Some(row) => Ok(Lookup::Found(row)),
            None => Ok(self
                .conversation_miss(conn, id, ONLY_OWNER_CHANGES_CONVERSATION)
                .await?),
        }
    }

    /// Deletes a conversation of one of the caller's workspaces, with its messages.
    pub async fn delete_conversation(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<()>> {
        let deleted = diesel::delete(
            c::table
                .filter(c::id.eq(id))
                .filter(c::workspace_id.eq_any(self.owned_workspace_ids())),
        )
        .execute(conn)
        .await?;
        if deleted > 0 {
            return Ok(Lookup::Found(()));
        }
        self.conversation_miss(conn, id, ONLY_OWNER_CHANGES_CONVERSATION)
            .await
    }

    /// Sends a message from the caller into a conversation they may read, in one
    /// statement (`INSERT … SELECT` from the conversation when the rule holds).
    pub async fn send_message(
        &self,
        conn: &mut AsyncPgConnection,
        draft: &MessageDraft,
    ) -> QueryResult<Lookup<Message>> {
        let source = c::table
            .inner_join(w::table)
            .filter(c::id.eq(draft.conversation_id))
            .filter(self.reads_conversation())
            .select((
                c::id,
                self.me().into_sql::<Text>(),
                draft.content.as_str().into_sql::<Text>(),
                draft.timestamp.into_sql::<Timestamptz>(),
                (&draft.metadata).into_sql::<Jsonb>(),
            ));
        let sent = diesel::insert_into(m::table)
            .values(source)
            .into_columns((
                m::conversation_id,
                m::sender_id,
                m::content,
                m::timestamp,
                m::metadata,
            ))
            .returning(Message::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match sent {
            Some(row) => Ok(Lookup::Found(row)),
            None => Ok(self
                .conversation_miss(conn, draft.conversation_id, NOT_YOUR_CONVERSATION)
                .await?),
        }
    }

    /// The ids of the messages the caller may change: in their workspaces, or sent
    /// by them in a conversation they still take part in. Bounded to `id` so that
    /// PostgreSQL reads one row, whatever the caller's size.
    fn editable_message(&self, id: Uuid) -> EditableMessage {
        m::table
            .inner_join(c::table.inner_join(w::table))
            .select(m::id)
            .into_boxed()
            .filter(m::id.eq(id))
            .filter(
                self.owns_workspace().or(m::sender_id
                    .eq(self.me())
                    .and(c::participant_ids.contains(vec![self.me()]))),
            )
    }

    /// Why a message the caller could not change was not changed.
    async fn message_write_miss(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<Message>> {
        let why = match self.message(conn, id).await? {
            Lookup::Found(_) => ONLY_SENDER_OR_OWNER_CHANGES_MESSAGE,
            Lookup::Forbidden(why) => why,
            Lookup::Missing(what) => return Ok(Lookup::Missing(what)),
        };
        Ok(Lookup::Forbidden(why))
    }

    /// Changes a message the caller may change (no changes: reads it, under the same rule).
    pub async fn update_message(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        changes: &MessageChanges,
    ) -> QueryResult<Lookup<Message>> {
        if changes.content.is_none() && changes.metadata.is_none() {
            let found = m::table
                .filter(m::id.eq_any(self.editable_message(id)))
                .select(Message::as_select())
                .first(conn)
                .await
                .optional()?;
            return match found {
                Some(row) => Ok(Lookup::Found(row)),
                None => self.message_write_miss(conn, id).await,
            };
        }
        let updated = diesel::update(m::table.filter(m::id.eq_any(self.editable_message(id))))
            .set(changes)
            .returning(Message::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match updated {
            Some(row) => Ok(Lookup::Found(row)),
            None => self.message_write_miss(conn, id).await,
        }
    }

    /// Deletes a message the caller may change.
    pub async fn delete_message(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<()>> {
        let deleted = diesel::delete(m::table.filter(m::id.eq_any(self.editable_message(id))))
            .execute(conn)
            .await?;
        if deleted > 0 {
            return Ok(Lookup::Found(()));
        }
        Ok(self.message_write_miss(conn, id).await?.map(|_| ()))
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

//! Relay's `node(id:)` and `nodes(ids:)`: rows of any type by id, in one
//! statement for a whole query level. An id says nothing of its type (the same
//! UUIDs are on the wire), so each table is asked under its own rule, and a row
//! the caller may not read is as absent as one that does not exist.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Bool, Integer, Nullable, Uuid as SqlUuid};
use diesel::IntoSql;

use super::*;

/// A row found by its id, of whichever type it is.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeRow {
    /// A workspace the caller owns.
    Workspace(Workspace),
    /// A conversation the caller may read.
    Conversation(Conversation),
    /// A message of a conversation the caller may read.
    Message(Message),
    /// The caller's own user row.
    User(User),
}

impl NodeRow {
    /// Its id.
    pub fn id(&self) -> Uuid {
        match self {
            NodeRow::Workspace(row) => row.id,
            NodeRow::Conversation(row) => row.id,
            NodeRow::Message(row) => row.id,
            NodeRow::User(row) => row.id,
        }
    }
}

const WORKSPACE: i32 = 0;
const CONVERSATION: i32 = 1;
const MESSAGE: i32 = 2;
const USER: i32 = 3;

/// The one row shape every table's arm of the `UNION ALL` selects: the type's tag,
/// the columns all four share, and the others in typed slots each type fills its
/// own way (see [`Wide::into_node`]).
type WideRow = (
    i32,
    Uuid,
    Option<Uuid>,
    String,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    Option<bool>,
    Option<DateTime<Utc>>,
    Value,
    DateTime<Utc>,
    DateTime<Utc>,
);

struct Wide(WideRow);

impl Wide {
    fn into_node(self) -> Option<NodeRow> {
        let (kind, id, parent, a, b, c, texts, flag, at, metadata, created_at, updated_at) = self.0;
        Some(match kind {
            WORKSPACE => NodeRow::Workspace(Workspace {
                id,
                name: a,
                description: b?,
                owner_id: c?,
                metadata,
                created_at,
                updated_at,
            }),
            CONVERSATION => NodeRow::Conversation(Conversation {
                id,
                workspace_id: parent?,
                topic: a,
                participant_ids: texts?,
                metadata,
                created_at,
                updated_at,
            }),
            MESSAGE => NodeRow::Message(Message {
                id,
                conversation_id: parent?,
                content: a,
                sender_id: b?,
                timestamp: at?,
                metadata,
                created_at,
                updated_at,
            }),
            USER => NodeRow::User(User {
                id,
                user_id: a,
                name: b?,
                email: c,
                is_active: flag?,
                metadata,
                created_at,
                updated_at,
            }),
            _ => return None,
        })
    }
}

impl Scope {
    /// The rows among `ids` the caller may read, of any type: a workspace they
    /// own, a conversation (and a message of one) they may read, their own user.
    pub async fn nodes_by_id(
        &self,
        conn: &mut AsyncPgConnection,
        ids: Vec<Uuid>,
    ) -> QueryResult<Vec<NodeRow>> {
        let no_uuid = || None::<Uuid>.into_sql::<Nullable<SqlUuid>>();
        let no_text = || None::<String>.into_sql::<Nullable<Text>>();
        let no_texts = || None::<Vec<String>>.into_sql::<Nullable<Array<Text>>>();
        let no_flag = || None::<bool>.into_sql::<Nullable<Bool>>();
        let no_time = || None::<DateTime<Utc>>.into_sql::<Nullable<Timestamptz>>();
        let workspaces = w::table
            .filter(w::id.eq_any(ids.clone()))
            .filter(self.owns_workspace())
            .select((
                WORKSPACE.into_sql::<Integer>(),
                w::id,
                no_uuid(),
                w::name,
                w::description.nullable(),
                w::owner_id.nullable(),
                no_texts(),
                no_flag(),
                no_time(),
                w::metadata,
                w::created_at,
                w::updated_at,
            ));
        let conversations = c::table
            .inner_join(w::table)
            .filter(c::id.eq_any(ids.clone()))
            .filter(self.reads_conversation())
            .select((
                CONVERSATION.into_sql::<Integer>(),
                c::id,
                c::workspace_id.nullable(),
                c::topic,
                no_text(),
                no_text(),
                c::participant_ids.nullable(),
                no_flag(),
                no_time(),
                c::metadata,
                c::created_at,
                c::updated_at,
            ));
        let messages = m::table
            .inner_join(c::table.inner_join(w::table))
            .filter(m::id.eq_any(ids.clone()))
            .filter(self.reads_conversation())
            .select((
                MESSAGE.into_sql::<Integer>(),
                m::id,
                m::conversation_id.nullable(),
                m::content,
                m::sender_id.nullable(),
                no_text(),
                no_texts(),
                no_flag(),
                m::timestamp.nullable(),
                m::metadata,
                m::created_at,
                m::updated_at,
            ));
        let users = u::table
            .filter(u::id.eq_any(ids))
            .filter(u::user_id.eq(self.me()))
            .select((
                USER.into_sql::<Integer>(),
                u::id,
                no_uuid(),
                u::user_id,
                u::name.nullable(),
                u::email,
                no_texts(),
                u::is_active.nullable(),
                no_time(),
                u::metadata,
                u::created_at,
                u::updated_at,
            ));
        let rows: Vec<WideRow> = workspaces
            .union_all(conversations)
            .union_all(messages)
            .union_all(users)
            .load(conn)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| Wide(row).into_node())
            .collect())
    }
}

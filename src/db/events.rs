//! `events`: the outbox that subscriptions read. Triggers write it in the same
//! transaction as the change (`migrations/2026-12-03-000001_events`); each
//! instance reads it in order, from a cursor, and fans the rows out in memory
//! ([`crate::realtime`]).
//!
//! An event's place is its [`EventCursor`], `(txid, id)`. A read returns only
//! events of transactions older than every transaction still running, so no
//! event can later commit before a cursor already handed out: resuming from a
//! cursor never skips one.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::{events, events_pruned};

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A message was sent (`message_id`, in `conversation_id` of `workspace_id`).
    MessageAdded,
    /// A conversation was created.
    ConversationCreated,
    /// A conversation changed (its topic, metadata or participants).
    ConversationUpdated,
    /// A conversation was deleted (also when its workspace was).
    ConversationDeleted,
    /// A workspace was deleted.
    WorkspaceDeleted,
    /// A user (`user_id`) was deactivated.
    UserDeactivated,
}

impl EventKind {
    /// The kind as the `events.kind` column spells it.
    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "message_added" => Self::MessageAdded,
            "conversation_created" => Self::ConversationCreated,
            "conversation_updated" => Self::ConversationUpdated,
            "conversation_deleted" => Self::ConversationDeleted,
            "workspace_deleted" => Self::WorkspaceDeleted,
            "user_deactivated" => Self::UserDeactivated,
            _ => return None,
        })
    }
}

/// An event's place in the order every instance reads them in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventCursor {
    /// The writing transaction (`pg_current_xact_id()`, 64 bits: never wraps).
    pub txid: i64,
    /// The row's id within the order of its transaction.
    pub id: i64,
}

/// A row of `events`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg))]
pub struct EventRow {
    pub id: i64,
    pub txid: i64,
    pub kind: String,
    pub workspace_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub user_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An event, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its place.
    pub cursor: EventCursor,
    /// What happened.
    pub kind: EventKind,
    /// The workspace it happened in (all but [`EventKind::UserDeactivated`]).
    pub workspace_id: Option<Uuid>,
    /// The conversation (messages and conversations).
    pub conversation_id: Option<Uuid>,
    /// The message ([`EventKind::MessageAdded`]).
    pub message_id: Option<Uuid>,
    /// The sender of a message, or the user deactivated.
    pub user_id: Option<String>,
}

impl EventRow {
    /// Its place in the order.
    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            txid: self.txid,
            id: self.id,
        }
    }

    /// The typed event; `None` for a kind this build does not know (written by a
    /// newer version during a rolling upgrade), which is skipped.
    pub fn typed(self) -> Option<Event> {
        Some(Event {
            cursor: self.cursor(),
            kind: EventKind::parse(&self.kind)?,
            workspace_id: self.workspace_id,
            conversation_id: self.conversation_id,
            message_id: self.message_id,
            user_id: self.user_id,
        })
    }
}

/// `pg_snapshot_xmin(pg_current_snapshot())`: every transaction below it has ended.
fn horizon() -> diesel::expression::SqlLiteral<BigInt> {
    sql::<BigInt>("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
}

/// `(txid, id) > after`.
fn after_cursor(after: EventCursor) -> AfterCursor {
    events::txid
        .gt(after.txid)
        .or(events::txid.eq(after.txid).and(events::id.gt(after.id)))
}

type AfterCursor = diesel::dsl::Or<
    diesel::dsl::Gt<events::txid, i64>,
    diesel::dsl::And<diesel::dsl::Eq<events::txid, i64>, diesel::dsl::Gt<events::id, i64>>,
>;

/// What one read of the outbox found.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events after the cursor, in order, every one of them final.
    pub events: Vec<EventRow>,
    /// Newer events exist that wait on an older transaction still running (read
    /// again soon: their commit may send no notification of its own).
    pub held_back: bool,
}

/// Up to `limit` events after `after`, oldest first, of finished transactions.
pub async fn read_after(
    conn: &mut AsyncPgConnection,
    after: EventCursor,
    limit: i64,
) -> QueryResult<Batch> {
    let rows: Vec<(EventRow, bool)> = events::table
        .filter(after_cursor(after))
        .order((events::txid, events::id))
        .limit(limit)
        .select((
            EventRow::as_select(),
            events::txid.lt(horizon()).assume_not_null(),
        ))
        .load(conn)
        .await?;
    // In (txid, id) order every final event comes before every held-back one.
    let held_back = rows.iter().any(|(_, ready)| !ready);
    Ok(Batch {
        events: rows
            .into_iter()
            .take_while(|(_, ready)| *ready)
            .map(|(row, _)| row)
            .collect(),
        held_back,
    })
}

/// Events in `(after, until]` that concern `workspace_id` or `user_id`, oldest
/// first, at most `limit`: what a resumed subscription missed.
pub async fn read_missed(
    conn: &mut AsyncPgConnection,
    after: EventCursor,
    until: EventCursor,
    workspace_id: Uuid,
    user_id: &str,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    let not_after_until = events::txid
        .lt(until.txid)
        .or(events::txid.eq(until.txid).and(events::id.le(until.id)));
    events::table
        .filter(after_cursor(after))
        .filter(not_after_until)
        .filter(
            events::workspace_id
                .eq(workspace_id)
                .or(events::user_id.eq(user_id)),
        )
        .order((events::txid, events::id))
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)
        .await
}

/// The newest final event's cursor: where an instance that starts now begins.
pub async fn latest(conn: &mut AsyncPgConnection) -> QueryResult<EventCursor> {
    let found: Option<(i64, i64)> = events::table
        .filter(events::txid.lt(horizon()))
        .order((events::txid.desc(), events::id.desc()))
        .select((events::txid, events::id))
        .first(conn)
        .await
        .optional()?;
    Ok(
        found.map_or(EventCursor::default(), |(txid, id)| EventCursor {
            txid,
            id,
        }),
    )
}

/// The newest cursor pruned: resuming from an older one could miss events.
pub async fn pruned_through(conn: &mut AsyncPgConnection) -> QueryResult<EventCursor> {
    let (txid, id) = events_pruned::table
        .select((events_pruned::txid, events_pruned::id))
        .first(conn)
        .await?;
    Ok(EventCursor { txid, id })
}

#[derive(QueryableByName)]
struct Pruned {
    #[diesel(sql_type = BigInt)]
    pruned: i64,
}

/// Deletes events older than `retention`, remembering the newest cursor deleted
/// (so that a resume from before it is refused, not answered with a gap).
/// Returns how many were deleted. Instances may run it at the same time.
pub async fn prune(
    conn: &mut AsyncPgConnection,
    retention: std::time::Duration,
) -> QueryResult<i64> {
    // Raw SQL: diesel cannot write a data-modifying CTE.
    let done: Pruned = diesel::sql_query(
        "WITH gone AS (
             DELETE FROM events WHERE created_at < now() - make_interval(secs => $1)
             RETURNING txid, id
         ), newest AS (
             SELECT txid, id FROM gone ORDER BY txid DESC, id DESC LIMIT 1
         ), moved AS (
             UPDATE events_pruned p SET txid = n.txid, id = n.id FROM newest n
             WHERE (n.txid, n.id) > (p.txid, p.id)
             RETURNING 1
         )
         SELECT count(*) AS pruned FROM gone",
    )
    .bind::<diesel::sql_types::Double, _>(retention.as_secs_f64())
    .get_result(conn)
    .await?;
    Ok(done.pruned)
}

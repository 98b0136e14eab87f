//! One statement per batch and table, in the batch's transaction: it decides each
//! row's fate (imported, already present, or skipped with its reason), inserts the
//! new rows under fresh UUIDs and records their id mappings, all at once. Raw SQL
//! because diesel cannot express data-modifying CTEs over `unnest`; every value is
//! a bound parameter.
//!
//! Every look-up of a row is a scalar subquery on a unique key, never `EXISTS`: the
//! tables grow faster than autovacuum's statistics during an import, and with stale
//! estimates PostgreSQL planned an `EXISTS` as a hashed subplan that read all of
//! `import_id_map`'s messages for every batch (measured: 250 of a batch's 450 ms at
//! 550,000 messages, so the import slowed as it went). A scalar subquery is always
//! one index probe per row.

use diesel::sql_types::{Array, Jsonb, Nullable, Text, Timestamptz};
use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::source::{ConversationRow, MessageRow, Rows, UserRow, WorkspaceRow};

/// What happened to one row, as the statements report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Imported,
    /// Imported, but its email belongs to another user already: stored without it.
    ImportedWithoutEmail,
    AlreadyPresent,
    DuplicateId,
    EmailTaken,
    MissingOwner,
    MissingWorkspace,
    MissingConversation,
    MissingSender,
}

#[derive(diesel::QueryableByName)]
struct OutcomeRow {
    #[diesel(sql_type = Text)]
    outcome: String,
}

fn outcome(code: &str) -> Outcome {
    match code {
        "imported" => Outcome::Imported,
        "imported_without_email" => Outcome::ImportedWithoutEmail,
        "present" => Outcome::AlreadyPresent,
        "duplicate" => Outcome::DuplicateId,
        "email_taken" => Outcome::EmailTaken,
        "no_owner" => Outcome::MissingOwner,
        "no_workspace" => Outcome::MissingWorkspace,
        "no_conversation" => Outcome::MissingConversation,
        "no_sender" => Outcome::MissingSender,
        other => unreachable!("outcome {other} is not produced by the import statements"),
    }
}

/// Writes one batch; returns each row's outcome, in the batch's order.
pub(crate) async fn write(conn: &mut AsyncPgConnection, rows: &Rows) -> QueryResult<Vec<Outcome>> {
    let found = match rows {
        Rows::Users(rows) => users(conn, rows).await?,
        Rows::Workspaces(rows) => workspaces(conn, rows).await?,
        Rows::Conversations(rows) => conversations(conn, rows).await?,
        Rows::Messages(rows) => messages(conn, rows).await?,
    };
    Ok(found.iter().map(|r| outcome(&r.outcome)).collect())
}

/// Users are matched by `user_id` (the seed's rule): present ones are kept as they
/// are. An email already used by another user (in PostgreSQL or earlier in the
/// batch) would break the unique constraint: the user is imported without it rather
/// than lost with everything they own. A repeated id is "duplicate": the first row
/// wins, which is what a later batch sees as "present", so the outcome does not
/// depend on where batches fall.
const USERS: &str = r#"
WITH src AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
        WITH ORDINALITY AS s(user_id, name, email, metadata, ord)
), decided AS MATERIALIZED (
    SELECT s.*,
        CASE
            WHEN (SELECT u.id FROM users u WHERE u.user_id = s.user_id) IS NOT NULL THEN 'present'
            WHEN s.ord <> min(s.ord) OVER (PARTITION BY s.user_id) THEN 'duplicate'
            WHEN s.email IS NOT NULL AND ((SELECT u.id FROM users u WHERE u.email = s.email) IS NOT NULL
                 OR s.ord <> min(s.ord) OVER (PARTITION BY s.email)) THEN 'imported_without_email'
            ELSE 'imported'
        END AS outcome
    FROM src s
), inserted AS (
    INSERT INTO users (user_id, name, email, metadata)
    SELECT user_id, name, CASE WHEN outcome = 'imported' THEN email END, metadata
    FROM decided WHERE outcome IN ('imported', 'imported_without_email')
    ON CONFLICT DO NOTHING
    RETURNING user_id
)
SELECT CASE
    WHEN d.outcome LIKE 'imported%' AND NOT EXISTS (SELECT 1 FROM inserted i WHERE i.user_id = d.user_id)
        THEN 'email_taken'
    ELSE d.outcome
END AS outcome
FROM decided d ORDER BY d.ord
"#;

async fn users(conn: &mut AsyncPgConnection, rows: &[UserRow]) -> QueryResult<Vec<OutcomeRow>> {
    diesel::sql_query(USERS)
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.user_id.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.email.clone()).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(rows.iter().map(|r| r.metadata.clone()).collect::<Vec<_>>())
        .load(conn)
        .await
}

const WORKSPACES: &str = r#"
WITH src AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
        WITH ORDINALITY AS s(old_id, name, description, owner_id, metadata, ord)
), decided AS MATERIALIZED (
    SELECT s.*, gen_random_uuid() AS new_id,
        CASE
            WHEN (SELECT m.new_id FROM import_id_map m WHERE m.entity = 'workspace' AND m.old_id = s.old_id) IS NOT NULL THEN 'present'
            WHEN s.ord <> min(s.ord) OVER (PARTITION BY s.old_id) THEN 'duplicate'
            WHEN (SELECT u.id FROM users u WHERE u.user_id = s.owner_id) IS NULL THEN 'no_owner'
            ELSE 'imported'
        END AS outcome
    FROM src s
), inserted AS (
    INSERT INTO workspaces (id, name, description, owner_id, metadata)
    SELECT new_id, name, description, owner_id, metadata FROM decided WHERE outcome = 'imported'
), mapped AS (
    INSERT INTO import_id_map (entity, old_id, new_id)
    SELECT 'workspace', old_id, new_id FROM decided WHERE outcome = 'imported'
)
SELECT outcome FROM decided ORDER BY ord
"#;

async fn workspaces(
    conn: &mut AsyncPgConnection,
    rows: &[WorkspaceRow],
) -> QueryResult<Vec<OutcomeRow>> {
    diesel::sql_query(WORKSPACES)
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.old_id.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|r| r.description.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.owner_id.clone()).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(rows.iter().map(|r| r.metadata.clone()).collect::<Vec<_>>())
        .load(conn)
        .await
}

/// A parent counts only while its row still exists (it may have been deleted in
/// PostgreSQL since an earlier import).
const CONVERSATIONS: &str = r#"
WITH src AS MATERIALIZED (
    SELECT s.*, (SELECT w.id FROM import_id_map m JOIN workspaces w ON w.id = m.new_id
                 WHERE m.entity = 'workspace' AND m.old_id = s.old_workspace_id) AS workspace_id
    FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[])
        WITH ORDINALITY AS s(old_id, old_workspace_id, topic, participant_ids, metadata, ord)
), decided AS MATERIALIZED (
    SELECT s.*, gen_random_uuid() AS new_id,
        CASE
            WHEN (SELECT m.new_id FROM import_id_map m WHERE m.entity = 'conversation' AND m.old_id = s.old_id) IS NOT NULL THEN 'present'
            WHEN s.ord <> min(s.ord) OVER (PARTITION BY s.old_id) THEN 'duplicate'
            WHEN s.workspace_id IS NULL THEN 'no_workspace'
            ELSE 'imported'
        END AS outcome
    FROM src s
), inserted AS (
    INSERT INTO conversations (id, workspace_id, topic, participant_ids, metadata)
    SELECT new_id, workspace_id, topic, ARRAY(SELECT jsonb_array_elements_text(participant_ids)), metadata
    FROM decided WHERE outcome = 'imported'
), mapped AS (
    INSERT INTO import_id_map (entity, old_id, new_id)
    SELECT 'conversation', old_id, new_id FROM decided WHERE outcome = 'imported'
)
SELECT outcome FROM decided ORDER BY ord
"#;

async fn conversations(
    conn: &mut AsyncPgConnection,
    rows: &[ConversationRow],
) -> QueryResult<Vec<OutcomeRow>> {
    diesel::sql_query(CONVERSATIONS)
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.old_id.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|r| r.old_workspace_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.topic.clone()).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(
            rows.iter()
                .map(|r| r.participant_ids.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Jsonb>, _>(rows.iter().map(|r| r.metadata.clone()).collect::<Vec<_>>())
        .load(conn)
        .await
}

const MESSAGES: &str = r#"
WITH src AS MATERIALIZED (
    SELECT s.*, (SELECT c.id FROM import_id_map m JOIN conversations c ON c.id = m.new_id
                 WHERE m.entity = 'conversation' AND m.old_id = s.old_conversation_id) AS conversation_id
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
        WITH ORDINALITY AS s(old_id, old_conversation_id, sender_id, content, ts, metadata, ord)
), decided AS MATERIALIZED (
    SELECT s.*, gen_random_uuid() AS new_id,
        CASE
            WHEN (SELECT m.new_id FROM import_id_map m WHERE m.entity = 'message' AND m.old_id = s.old_id) IS NOT NULL THEN 'present'
            WHEN s.ord <> min(s.ord) OVER (PARTITION BY s.old_id) THEN 'duplicate'
            WHEN s.conversation_id IS NULL THEN 'no_conversation'
            WHEN (SELECT u.id FROM users u WHERE u.user_id = s.sender_id) IS NULL THEN 'no_sender'
            ELSE 'imported'
        END AS outcome
    FROM src s
), inserted AS (
    INSERT INTO messages (id, conversation_id, sender_id, content, "timestamp", metadata)
    SELECT new_id, conversation_id, sender_id, content, ts, metadata FROM decided WHERE outcome = 'imported'
), mapped AS (
    INSERT INTO import_id_map (entity, old_id, new_id)
    SELECT 'message', old_id, new_id FROM decided WHERE outcome = 'imported'
)
SELECT outcome FROM decided ORDER BY ord
"#;

async fn messages(
    conn: &mut AsyncPgConnection,
    rows: &[MessageRow],
) -> QueryResult<Vec<OutcomeRow>> {
    diesel::sql_query(MESSAGES)
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.old_id.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|r| r.old_conversation_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.sender_id.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.content.clone()).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.timestamp).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(rows.iter().map(|r| r.metadata.clone()).collect::<Vec<_>>())
        .load(conn)
        .await
}

//! Bulk mode: for an import into an empty (or nearly empty) database, the secondary
//! indexes and foreign keys of workspaces, conversations and messages are dropped
//! while the rows load and rebuilt once at the end, as `pg_restore` does: building an
//! index over a million rows costs a fraction of maintaining it row by row (measured
//! in `bench/RESULTS.md`).
//!
//! Exactly as safe as the incremental mode:
//! - the batches are the same statements, which check every parent themselves, and
//!   the rebuilt foreign keys are validated (`NOT VALID`, then `VALIDATE`);
//! - every dropped object is recorded in `import_deferred_objects`, with the
//!   definition PostgreSQL printed for it, in the transaction that drops it, and the
//!   record is deleted in the transaction that rebuilds it. After a crash the next
//!   import resumes and rebuilds them, and `cortex migrate` or `cortex serve` rebuilds
//!   them before anything else ([`repair`]);
//! - a bulk import holds [`BULK_LOCK`] (session-level, so released if the process
//!   dies): a second bulk import refuses to start, and a repair leaves a running
//!   import's objects alone;
//! - while a key is dropped, deleting a parent through the API cascades to nothing:
//!   a cascading key that fails its validation first gets the `DELETE` the cascade
//!   would have made (recorded with the key), then is validated again.
//!
//! The DDL and that `DELETE` are the only SQL here not built with binds: PostgreSQL
//! cannot bind identifiers. Its text comes from PostgreSQL's own catalog (`pg_get_indexdef`,
//! `pg_get_constraintdef`) and names are quoted by `format('%I')`; nothing of the
//! SQLite file reaches it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::QueryResult;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// The advisory lock a bulk import holds while objects are deferred ("bulkimp").
pub const BULK_LOCK: i64 = 0x62_756c_6b69_6d70;

/// The tables whose secondary indexes and foreign keys are deferred. `users` keeps
/// its own: it is small, and its unique `user_id` and `email` decide between rows.
const DEFERRED_TABLES: [&str; 3] = ["workspaces", "conversations", "messages"];

/// New messages (estimated from the file and the id map) from which the automatic
/// choice considers bulk mode: below it, rebuilding costs more than it saves.
pub const BULK_MIN_MESSAGES: u64 = 50_000;

/// `maintenance_work_mem` of each rebuilding connection: a GIN build sorts its
/// entries in memory (measured: the `tsv` index over 1M messages 13 % faster with
/// 1 GB than with the default 64 MB; 256 MB gets most of it, per connection).
const REBUILD_MAINTENANCE_WORK_MEM: &str = "256MB";

/// How an import writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportMode {
    /// Drop the secondary indexes and foreign keys while loading, rebuild them at
    /// the end: for an empty or nearly empty database.
    Bulk,
    /// Keep every index and constraint in place: for adding to a database in use.
    Incremental,
}

impl std::fmt::Display for ImportMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bulk => "bulk",
            Self::Incremental => "incremental",
        })
    }
}

/// The figures the automatic choice is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Objects an interrupted bulk import left to rebuild.
    pub deferred: u64,
    /// Messages in the database.
    pub messages: u64,
    /// Messages already imported (in `import_id_map`).
    pub mapped_messages: u64,
}

impl Target {
    /// Reads the figures.
    pub async fn read(conn: &mut AsyncPgConnection) -> QueryResult<Self> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            deferred: i64,
            #[diesel(sql_type = BigInt)]
            messages: i64,
            #[diesel(sql_type = BigInt)]
            mapped: i64,
        }
        let row: Row = diesel::sql_query(
            "SELECT (SELECT count(*) FROM import_deferred_objects) AS deferred,
                    (SELECT count(*) FROM messages) AS messages,
                    (SELECT count(*) FROM import_id_map WHERE entity = 'message') AS mapped",
        )
        .get_result(conn)
        .await?;
        Ok(Self {
            deferred: row.deferred as u64,
            messages: row.messages as u64,
            mapped_messages: row.mapped as u64,
        })
    }

    /// The mode for a file of `source_messages`: bulk to resume an interrupted bulk
    /// import, or when the new messages are at least [`BULK_MIN_MESSAGES`] and at
    /// least as many as the database holds (rebuilding then covers at most twice the
    /// rows written); incremental otherwise, e.g. to re-run an import, or to add a
    /// small file to a database in use.
    pub fn choose(&self, source_messages: u64) -> ImportMode {
        let new = source_messages.saturating_sub(self.mapped_messages);
        if self.deferred > 0 || (new >= BULK_MIN_MESSAGES && new >= self.messages) {
            ImportMode::Bulk
        } else {
            ImportMode::Incremental
        }
    }
}

/// Whether objects are deferred (the table may not exist yet on an old database).
async fn deferred_objects(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let exists: Row = diesel::sql_query(
        "SELECT (to_regclass('import_deferred_objects') IS NOT NULL)::int::int8 AS n",
    )
    .get_result(conn)
    .await?;
    if exists.n == 0 {
        return Ok(0);
    }
    let row: Row = diesel::sql_query("SELECT count(*) AS n FROM import_deferred_objects")
        .get_result(conn)
        .await?;
    Ok(row.n)
}

/// Takes [`BULK_LOCK`] on `conn` for its session; false if another session holds it.
pub(super) async fn try_lock(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Bool)]
        locked: bool,
    }
    let row: Row = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<BigInt, _>(BULK_LOCK)
        .get_result(conn)
        .await?;
    Ok(row.locked)
}

pub(super) async fn unlock(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(BULK_LOCK)
        .execute(conn)
        .await
        .map(drop)
}

#[derive(diesel::QueryableByName)]
struct Ddl {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    ddl: String,
}

/// Records and drops every secondary index and foreign key of the deferred tables,
/// in one transaction; returns how many were dropped now (none when resuming).
pub(super) async fn defer(conn: &mut AsyncPgConnection) -> Result<usize> {
    conn.transaction(async |conn| {
        let dropped: Vec<Ddl> = diesel::sql_query(
            r#"
            WITH tables AS (SELECT to_regclass(t)::oid AS oid FROM unnest($1::text[]) AS t),
            columns AS (
                -- A foreign key's columns on each side, quoted, in the key's order.
                SELECT c.oid,
                       string_agg(format('child.%I', ca.attname), ', ' ORDER BY k.n) AS child,
                       string_agg(format('parent.%I', pa.attname), ', ' ORDER BY k.n) AS parent
                FROM pg_constraint c
                CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(child_attnum, parent_attnum, n)
                JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.child_attnum
                JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.parent_attnum
                WHERE c.contype = 'f' AND c.conrelid IN (SELECT oid FROM tables)
                GROUP BY c.oid
            ),
            found AS (
                SELECT c.conname::text AS name, c.conrelid::regclass::text AS table_name,
                       'foreign_key' AS kind, pg_get_constraintdef(c.oid) AS definition,
                       -- While the key is dropped, deleting a parent cascades to nothing:
                       -- before validating, the rebuild deletes what it would have.
                       CASE WHEN c.confdeltype = 'c' THEN format(
                           'DELETE FROM %s AS child WHERE (%s) IS NOT NULL AND NOT EXISTS '
                           '(SELECT 1 FROM %s AS parent WHERE (%s) = (%s))',
                           c.conrelid::regclass, k.child, c.confrelid::regclass, k.parent, k.child)
                       END AS orphans,
                       '{}'::text[] AS key_columns
                FROM pg_constraint c JOIN columns k ON k.oid = c.oid
                UNION ALL
                -- Not the primary keys (every batch looks rows up by them), nor unique
                -- or constraint-backed indexes (they decide between rows).
                SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text,
                       'index', pg_get_indexdef(i.indexrelid), NULL,
                       ARRAY(SELECT a.attname::text FROM pg_attribute a
                             WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
                FROM pg_index i
                WHERE i.indrelid IN (SELECT oid FROM tables)
                  AND NOT i.indisprimary AND NOT i.indisunique
                  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
            )
            INSERT INTO import_deferred_objects (name, table_name, kind, definition, orphans, key_columns)
            SELECT name, table_name, kind, definition, orphans, key_columns FROM found
            ON CONFLICT DO NOTHING
            RETURNING kind, CASE kind
                WHEN 'foreign_key' THEN format('ALTER TABLE %s DROP CONSTRAINT %I', table_name, name)
                ELSE format('DROP INDEX %s', name)
            END AS ddl
            "#,
        )
        .bind::<diesel::sql_types::Array<Text>, _>(DEFERRED_TABLES.to_vec())
        .load(conn)
        .await?;
        // Foreign keys first: nothing then depends on the indexes dropped after.
        for kind in ["foreign_key", "index"] {
            for object in dropped.iter().filter(|d| d.kind == kind) {
                conn.batch_execute(&object.ddl).await?;
            }
        }
        Ok::<_, diesel::result::Error>(dropped.len())
    })
    .await
    .context("cannot drop the indexes for the bulk import")
}

/// An object to rebuild, with the statements that rebuild it.
#[derive(diesel::QueryableByName, Debug, Clone)]
struct Deferred {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    table_name: String,
    /// Whether it is already there (built by hand, say): only its record goes.
    #[diesel(sql_type = Bool)]
    present: bool,
    /// `CREATE INDEX …`, or `ALTER TABLE … ADD CONSTRAINT … NOT VALID`.
    #[diesel(sql_type = Text)]
    create: String,
    /// `ALTER TABLE … VALIDATE CONSTRAINT …` (empty for an index).
    #[diesel(sql_type = Text)]
    validate: String,
    /// The `DELETE` that stands in for `ON DELETE CASCADE` while the key was dropped.
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    orphans: Option<String>,
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Indexes and foreign keys rebuilt.
    pub objects: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Test hook: the process exits abruptly after this many objects are rebuilt.
pub(super) type AbortAfter = Option<usize>;

/// Rebuilds every deferred object: the indexes at once on up to `jobs` connections
/// (largest tables and GIN indexes first, so the longest builds overlap), then the
/// foreign keys one by one (each locks both of its tables), each added `NOT VALID`
/// and then validated. The caller holds [`BULK_LOCK`].
pub(super) async fn rebuild(url: &str, jobs: usize, abort_after: AbortAfter) -> Result<Rebuilt> {
    let started = Instant::now();
    let mut conn = crate::db::connect_once(url)
        .await
        .context("cannot connect to PostgreSQL to rebuild the indexes")?;
    // The tables grew faster than autovacuum samples them: the order below, the
    // validations, and the API's first plans (and the next import's) need today's
    // statistics. Indexes add none for plain columns, so once, first, is enough.
    let tables = [&DEFERRED_TABLES[..], &["import_id_map"]].concat();
    conn.batch_execute(&format!("ANALYZE {}", tables.join(", ")))
        .await
        .context("cannot analyze the imported tables")?;
    let all: Vec<Deferred> = diesel::sql_query(
        r#"
        SELECT d.kind, d.name, d.table_name,
               CASE d.kind
                   WHEN 'index' THEN to_regclass(d.name) IS NOT NULL
                   ELSE EXISTS (SELECT 1 FROM pg_constraint c
                                WHERE c.conrelid = to_regclass(d.table_name) AND c.conname = d.name)
               END AS present,
               CASE d.kind
                   WHEN 'index' THEN d.definition
                   ELSE format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID', d.table_name, d.name, d.definition)
               END AS "create",
               CASE d.kind
                   WHEN 'index' THEN ''
                   ELSE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', d.table_name, d.name)
               END AS validate,
               d.orphans
        FROM import_deferred_objects d
        -- Foreign keys parent table first, so that a cascade's deletes reach the
        -- grandchildren. Indexes longest build first, so that the longest builds
        -- overlap: largest table, GIN before btree, then the widest columns (a GIN
        -- entry per lexeme of a tsvector, a few per jsonb document).
        ORDER BY d.kind DESC,
                 CASE d.kind WHEN 'foreign_key' THEN array_position($1::text[], d.table_name) END,
                 pg_relation_size(to_regclass(d.table_name)) DESC,
                 d.definition LIKE '% USING gin %' DESC,
                 (SELECT sum(s.avg_width) FROM pg_stats s
                  WHERE s.schemaname = current_schema() AND s.tablename = d.table_name
                    AND s.attname = ANY (d.key_columns)) DESC NULLS LAST,
                 d.name
        "#,
    )
    .bind::<diesel::sql_types::Array<Text>, _>(DEFERRED_TABLES.to_vec())
    .load(&mut conn)
    .await
    .context("cannot read the deferred indexes")?;
    let (indexes, foreign_keys): (Vec<Deferred>, Vec<Deferred>) =
        all.into_iter().partition(|d| d.kind == "index");
    let objects = indexes.len() + foreign_keys.len();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let queue = Arc::new(Mutex::new(VecDeque::from(indexes)));
    let builders = jobs.clamp(1, queue.lock().expect("queue").len().max(1));
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..builders {
        let queue = queue.clone();
        let done = done.clone();
        let url = url.to_string();
        running.spawn(async move {
            let mut conn = crate::db::connect_once(&url)
                .await
                .context("cannot connect to PostgreSQL to rebuild the indexes")?;
            conn.batch_execute(&format!(
                "SET maintenance_work_mem = '{REBUILD_MAINTENANCE_WORK_MEM}'; SET jit = off"
            ))
            .await?;
            loop {
                let next = queue.lock().expect("queue").pop_front();
                let Some(index) = next else { break };
                finish(&mut conn, &index).await?;
                count_and_maybe_abort(&done, abort_after);
            }
            anyhow::Ok(())
        });
    }
    while let Some(built) = running.join_next().await {
        built.context("an index build panicked")??;
    }
    for key in &foreign_keys {
        finish(&mut conn, key).await?;
        count_and_maybe_abort(&done, abort_after);
    }
    Ok(Rebuilt {
        objects,
        elapsed: started.elapsed(),
    })
}

fn count_and_maybe_abort(done: &std::sync::atomic::AtomicUsize, abort_after: AbortAfter) {
    let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    if abort_after == Some(n) {
        eprintln!("import: aborting after rebuilding {n} objects (test hook)");
        std::process::exit(75);
    }
}

/// Rebuilds one object and deletes its record: an index in one transaction; a
/// foreign key added `NOT VALID` in one (it then holds for every new row) and
/// validated with its record deleted in the next.
async fn finish(conn: &mut AsyncPgConnection, object: &Deferred) -> Result<()> {
    let what = || {
        format!(
            "cannot rebuild {} `{}`",
            object.kind.replace('_', " "),
            object.name
        )
    };
    if object.kind == "index" {
        conn.transaction(async |conn| {
            if !object.present {
                conn.batch_execute(&object.create).await?;
            }
            forget(conn, object).await
        })
        .await
        .with_context(what)?;
    } else {
        if !object.present {
            conn.batch_execute(&object.create)
                .await
                .with_context(what)?;
        }
        conn.transaction(async |conn| {
            // Validated at once in the usual case; a violation of a cascading key
            // (its parent deleted meanwhile) rolls back to the savepoint, deletes
            // what the cascade would have, and validates again.
            let validated = conn
                .transaction(async |conn| conn.batch_execute(&object.validate).await)
                .await;
            match (validated, &object.orphans) {
                (Ok(()), _) => {}
                (
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                        _,
                    )),
                    Some(orphans),
                ) => {
                    let deleted = diesel::sql_query(orphans).execute(conn).await?;
                    eprintln!(
                        "warning: {deleted} rows of `{}` lost their parent while `{}` was dropped (deleted meanwhile); deleted, as ON DELETE CASCADE would have",
                        object.table_name, object.name
                    );
                    conn.batch_execute(&object.validate).await?;
                }
                (Err(e), _) => return Err(e),
            }
            forget(conn, object).await
        })
        .await
        .with_context(what)?;
    }
    Ok(())
}

/// Deletes an object's record (in the transaction that rebuilt it).
async fn forget(conn: &mut AsyncPgConnection, object: &Deferred) -> QueryResult<()> {
    diesel::sql_query("DELETE FROM import_deferred_objects WHERE kind = $1 AND name = $2")
        .bind::<Text, _>(&object.kind)
        .bind::<Text, _>(&object.name)
        .execute(conn)
        .await
        .map(drop)
}

/// Rebuilds what an interrupted bulk import left dropped, unless that import is
/// still running (it holds [`BULK_LOCK`] and rebuilds them itself). Run by
/// `cortex migrate` and `cortex serve` before the migrations, so that neither a
/// migration nor the API ever meets the tables without their indexes and keys.
/// Returns what was rebuilt, if anything.
pub async fn repair(url: &str) -> Result<Option<Rebuilt>> {
    let mut conn = crate::db::connect_once(url)
        .await
        .context("cannot connect to the database")?;
    if deferred_objects(&mut conn)
        .await
        .context("cannot read the deferred indexes")?
        == 0
    {
        return Ok(None);
    }
    if !try_lock(&mut conn).await? {
        tracing::warn!(
            "a bulk import is running: its indexes and foreign keys are rebuilt when it ends"
        );
        return Ok(None);
    }
    let rebuilt = rebuild(url, super::default_jobs(), None).await;
    unlock(&mut conn).await?;
    rebuilt.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(deferred: u64, messages: u64, mapped_messages: u64) -> Target {
        Target {
            deferred,
            messages,
            mapped_messages,
        }
    }

    #[test]
    fn an_empty_database_and_a_big_file_is_bulk() {
        assert_eq!(target(0, 0, 0).choose(1_000_000), ImportMode::Bulk);
        assert_eq!(target(0, 0, 0).choose(BULK_MIN_MESSAGES), ImportMode::Bulk);
    }

    #[test]
    fn a_small_file_is_incremental_even_into_an_empty_database() {
        assert_eq!(
            target(0, 0, 0).choose(BULK_MIN_MESSAGES - 1),
            ImportMode::Incremental
        );
    }

    #[test]
    fn a_database_holding_more_than_the_file_adds_is_incremental() {
        assert_eq!(
            target(0, 2_000_000, 0).choose(1_000_000),
            ImportMode::Incremental
        );
        // Half the file is in: the other half is fewer rows than are there.
        assert_eq!(
            target(0, 600_000, 600_000).choose(1_000_000),
            ImportMode::Incremental
        );
    }

    #[test]
    fn a_rerun_of_the_same_file_is_incremental() {
        assert_eq!(
            target(0, 1_000_000, 1_000_000).choose(1_000_000),
            ImportMode::Incremental
        );
    }

    #[test]
    fn an_interrupted_bulk_import_resumes_in_bulk() {
        assert_eq!(
            target(12, 900_000, 900_000).choose(1_000_000),
            ImportMode::Bulk
        );
        assert_eq!(target(1, 0, 0).choose(10), ImportMode::Bulk);
    }
}

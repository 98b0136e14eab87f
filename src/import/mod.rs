//! `cortex import-sqlite`: moves a Cortex Core (Phase 4) SQLite database into
//! PostgreSQL in the seed's order and mapping (users → workspaces → conversations →
//! messages), batched, resumable and idempotent.
//!
//! A reader thread streams the file in batches through a bounded channel (memory
//! does not grow with the file); each batch is one transaction holding its rows and
//! their old → new id mappings (`import_id_map`), so a run killed at any moment and
//! run again ends with exactly the rows of an uninterrupted run, and a second run
//! changes nothing. Every row read is accounted for: imported, already present, or
//! skipped with its reason (each skip and each repair is also a warning line).

pub mod bulk;
mod progress;
mod report;
pub mod source;
mod write;

pub use bulk::ImportMode;
use progress::Progress;
pub use report::{ImportReport, SkipReason, TableReport};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};

use write::Outcome;

/// Default `--batch-size`.
pub const DEFAULT_BATCH_SIZE: usize = 5_000;

/// Default `--jobs`: one writer per core, as PostgreSQL spends a core per
/// connection; more than four only adds lock traffic on the same indexes.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Read and validate everything, report, and write nothing.
    pub dry_run: bool,
    /// Rows per batch (and per transaction).
    pub batch_size: usize,
    /// Batches written at once, each on its own connection (ignored by the dry run).
    pub jobs: usize,
    /// Bulk or incremental; `None` chooses ([`bulk::Target::choose`]). A dry run
    /// is always incremental.
    pub mode: Option<ImportMode>,
    /// Test hook: exit abruptly (no cleanup) after this many committed batches.
    pub abort_after_batches: Option<usize>,
    /// Test hook: exit abruptly after this many objects rebuilt by a bulk import.
    pub abort_after_rebuilt: Option<usize>,
}

/// Opens and checks the SQLite file (see [`source::open`]), off the async threads.
/// Done before anything else, so a bad file starts nothing and writes nothing.
pub async fn open_source(path: PathBuf) -> Result<source::Source> {
    tokio::task::spawn_blocking(move || source::open(&path))
        .await?
        .map_err(anyhow::Error::msg)
}

/// Runs the import of `source` into the database at `url`. An unreachable
/// database leaves nothing written.
pub async fn run(
    source: source::Source,
    url: &str,
    options: &ImportOptions,
) -> Result<ImportReport> {
    let batch_size = options.batch_size.max(1);
    let source::Source {
        conn: sqlite,
        totals,
    } = source;
    // The dry run is one transaction, so one connection.
    let writers = if options.dry_run {
        1
    } else {
        options.jobs.max(1)
    };
    let mut connections = Vec::with_capacity(writers);
    for _ in 0..writers {
        let mut conn = crate::db::connect_once(url)
            .await
            .context("cannot connect to PostgreSQL")?;
        // Each batch statement is planned afresh and costed high enough to trigger
        // JIT compilation, which costs more than it saves at this size (measured:
        // 5 % of the import's CPU was LLVM). Imported rows are history: they raise
        // no subscription events (`migrations/*_events`).
        diesel_async::SimpleAsyncConnection::batch_execute(
            &mut conn,
            "SET jit = off; SET cortex.events = 'off'",
        )
        .await
        .context("cannot configure the import session")?;
        connections.push(conn);
    }

    let mode = choose_and_prepare(url, options, &totals).await?;

    // Enough batches in flight to keep every writer busy, and no more: memory does
    // not grow with the file.
    let (sender, receiver) = tokio::sync::mpsc::channel::<source::Batch>(writers + 1);
    let import_time = Utc::now();
    let reader = std::thread::spawn(move || {
        source::read_all(&sqlite, batch_size, import_time, |batch| {
            sender.blocking_send(batch).is_ok()
        })
    });

    let mut state = Run {
        report: ImportReport {
            tables: totals
                .iter()
                .map(|(t, _)| (*t, TableReport::default()))
                .collect(),
            dry_run: options.dry_run,
            mode: mode
                .as_ref()
                .map_or(ImportMode::Incremental, |_| ImportMode::Bulk),
            rebuilt: None,
        },
        totals,
        progress: Progress::new(),
        batches: 0,
        abort_after: options.abort_after_batches,
        receiver,
    };
    let result = if options.dry_run {
        let mut conn = connections.pop().expect("one connection");
        // One transaction around everything, rolled back: the same statements decide
        // every row's fate, so the report is exactly what a real run would print.
        let outcome = conn
            .transaction::<(), DryRun, _>(async |conn| {
                state.all(conn).await.map_err(DryRun::Failed)?;
                Err(DryRun::RolledBack)
            })
            .await;
        match outcome {
            Err(DryRun::RolledBack) | Ok(()) => Ok(()),
            Err(DryRun::Failed(e)) => Err(e),
            Err(DryRun::Database(e)) => Err(e.into()),
        }
    } else {
        state.all_parallel(connections).await
    };
    drop(state.receiver);
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the SQLite reader panicked"))?;
    if let Some(mut control) = mode {
        // Rebuild whatever happened to the load: an error must not leave the tables
        // without their indexes either.
        eprintln!("import: rebuilding the indexes and foreign keys");
        let rebuilt = bulk::rebuild(url, writers, options.abort_after_rebuilt).await;
        bulk::unlock(&mut control).await.ok();
        match rebuilt {
            Ok(rebuilt) => state.report.rebuilt = Some(rebuilt),
            Err(e) if result.is_ok() => return Err(e),
            Err(e) => tracing::error!("{e:#}"),
        }
    }
    result?;
    read.context("cannot read the SQLite file")?;
    Ok(state.report)
}

/// Decides the mode and prepares the database for it. For bulk mode, returns the
/// connection holding [`bulk::BULK_LOCK`], with the objects deferred. For an
/// incremental run into a database a killed bulk import left without its indexes,
/// rebuilds them first.
async fn choose_and_prepare(
    url: &str,
    options: &ImportOptions,
    totals: &[(&'static str, u64)],
) -> Result<Option<AsyncPgConnection>> {
    if options.dry_run {
        return Ok(None);
    }
    let mut control = crate::db::connect_once(url)
        .await
        .context("cannot connect to PostgreSQL")?;
    let target = bulk::Target::read(&mut control)
        .await
        .context("cannot read the database's size")?;
    let source_messages = totals
        .iter()
        .find(|(t, _)| *t == "messages")
        .map_or(0, |(_, n)| *n);
    let mode = options
        .mode
        .unwrap_or_else(|| target.choose(source_messages));
    if mode == ImportMode::Incremental && target.deferred == 0 {
        return Ok(None);
    }
    if !bulk::try_lock(&mut control)
        .await
        .context("cannot take the bulk import lock")?
    {
        anyhow::bail!(
            "a bulk import into this database is running; wait for it to finish (it rebuilds the indexes at its end)"
        );
    }
    if mode == ImportMode::Incremental {
        let rebuilt = bulk::rebuild(url, options.jobs.max(1), None).await?;
        eprintln!(
            "import: rebuilt {} indexes and foreign keys left by an interrupted bulk import",
            rebuilt.objects
        );
        bulk::unlock(&mut control).await?;
        return Ok(None);
    }
    let dropped = bulk::defer(&mut control).await?;
    eprintln!(
        "import: bulk mode: {} indexes and foreign keys dropped until the end",
        dropped as u64 + target.deferred
    );
    Ok(Some(control))
}

/// A finished write: the connection to reuse, the batch, and its rows' outcomes.
type Written = (AsyncPgConnection, source::Batch, Result<Vec<Outcome>>);

/// Writes one batch in its own transaction.
async fn write_batch(conn: &mut AsyncPgConnection, batch: &source::Batch) -> Result<Vec<Outcome>> {
    conn.transaction(async |conn| write::write(conn, &batch.rows).await)
        .await
        .with_context(|| format!("writing a batch of `{}`", batch.table))
}

enum DryRun {
    RolledBack,
    Failed(anyhow::Error),
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for DryRun {
    fn from(e: diesel::result::Error) -> Self {
        Self::Database(e)
    }
}

struct Run {
    report: ImportReport,
    totals: Vec<(&'static str, u64)>,
    progress: Progress,
    batches: usize,
    abort_after: Option<usize>,
    receiver: tokio::sync::mpsc::Receiver<source::Batch>,
}

impl Run {
    /// Writes every batch on one connection, in order (the dry run's single
    /// transaction).
    async fn all(&mut self, conn: &mut AsyncPgConnection) -> Result<()> {
        let mut current: Option<(&'static str, Instant)> = None;
        while let Some(batch) = self.receiver.recv().await {
            self.enter_table(&mut current, batch.table);
            let outcomes = write_batch(conn, &batch).await?;
            self.account(batch, outcomes)?;
        }
        self.close_table(current);
        Ok(())
    }

    /// Writes the batches of one table on all `writers` at once (PostgreSQL is the
    /// bottleneck, and one backend uses one core). The result is the same as
    /// writing them one by one:
    /// - a table is finished before the next starts, so a row's parent is always
    ///   committed before the row is written;
    /// - a batch sharing an old id with a batch in flight waits for it, so the
    ///   first row of a repeated id is the one kept (the rows of a batch in flight
    ///   are invisible to the others until it commits);
    /// - users go one batch at a time, as an email decides between rows too.
    async fn all_parallel(&mut self, mut idle: Vec<AsyncPgConnection>) -> Result<()> {
        let writers = idle.len();
        let mut running: tokio::task::JoinSet<Written> = tokio::task::JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, HashSet<String>> = HashMap::new();
        let mut current: Option<(&'static str, Instant)> = None;
        while let Some(batch) = self.receiver.recv().await {
            let ids: HashSet<String> = batch.rows.ids().into_iter().collect();
            let alone = current.map(|(t, _)| t) != Some(batch.table)
                || matches!(batch.rows, source::Rows::Users(_));
            while !running.is_empty()
                && (alone
                    || running.len() == writers
                    || in_flight.values().any(|other| !other.is_disjoint(&ids)))
            {
                idle.push(self.join_one(&mut running, &mut in_flight).await?);
            }
            self.enter_table(&mut current, batch.table);
            let mut conn = idle.pop().expect("a writer is idle");
            let task = running.spawn(async move {
                let outcomes = write_batch(&mut conn, &batch).await;
                (conn, batch, outcomes)
            });
            in_flight.insert(task.id(), ids);
        }
        while !running.is_empty() {
            self.join_one(&mut running, &mut in_flight).await?;
        }
        self.close_table(current);
        Ok(())
    }

    /// Waits for the next batch in flight to finish, accounts for it, and gives
    /// its connection back.
    async fn join_one(
        &mut self,
        running: &mut tokio::task::JoinSet<Written>,
        in_flight: &mut HashMap<tokio::task::Id, HashSet<String>>,
    ) -> Result<AsyncPgConnection> {
        let (id, (conn, batch, outcomes)) = running
            .join_next_with_id()
            .await
            .expect("a batch in flight")?;
        in_flight.remove(&id);
        self.account(batch, outcomes?)?;
        Ok(conn)
    }

    fn enter_table(&mut self, current: &mut Option<(&'static str, Instant)>, table: &'static str) {
        if current.map(|(t, _)| t) != Some(table) {
            self.close_table(*current);
            let total = self.total(table);
            // A table with no rows sends no batch: it gets no bar and reports zeros.
            self.progress.start(table, total);
            *current = Some((table, Instant::now()));
        }
    }

    fn total(&self, table: &str) -> u64 {
        self.totals
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    }

    fn close_table(&mut self, current: Option<(&'static str, Instant)>) {
        if let Some((table, started)) = current {
            self.progress.finish();
            self.table_mut(table).elapsed = started.elapsed();
        }
    }

    fn table_mut(&mut self, table: &str) -> &mut TableReport {
        &mut self
            .report
            .tables
            .iter_mut()
            .find(|(t, _)| *t == table)
            .expect("a source table")
            .1
    }

    /// Accounts for one committed batch: counts, warnings, progress, and the abort
    /// test hook.
    fn account(&mut self, batch: source::Batch, outcomes: Vec<Outcome>) -> Result<()> {
        let table = batch.table;
        self.batches += 1;
        if self.abort_after == Some(self.batches) {
            eprintln!(
                "import: aborting after {} batches (test hook)",
                self.batches
            );
            std::process::exit(75);
        }
        let ids = batch.rows.ids();
        let singular = source::singular(table);
        let mut warnings = batch.warnings.len() as u64;
        for line in &batch.warnings {
            self.progress.warn(line);
        }
        let mut skipped: Vec<(String, SkipReason)> = batch.skipped;
        let (mut imported, mut present) = (0, 0);
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Imported => imported += 1,
                Outcome::ImportedWithoutEmail => {
                    imported += 1;
                    warnings += 1;
                    self.progress.warn(&format!(
                        "user {id}: email already belongs to another user; imported without it"
                    ));
                }
                Outcome::AlreadyPresent => present += 1,
                // Counted like a repeat in a later batch (already present), but named.
                Outcome::DuplicateId => {
                    present += 1;
                    warnings += 1;
                    self.progress.warn(&format!(
                        "{singular} {id}: the id is repeated in the file; the first row is kept"
                    ));
                }
                Outcome::EmailTaken => skipped.push((id, SkipReason::EmailTaken)),
                Outcome::MissingOwner => skipped.push((id, SkipReason::MissingOwner)),
                Outcome::MissingWorkspace => skipped.push((id, SkipReason::MissingWorkspace)),
                Outcome::MissingConversation => skipped.push((id, SkipReason::MissingConversation)),
                Outcome::MissingSender => skipped.push((id, SkipReason::MissingSender)),
            }
        }
        for (id, reason) in &skipped {
            self.progress
                .warn(&format!("{singular} {id}: skipped ({reason})"));
        }
        let report = self.table_mut(table);
        report.read += (imported + present + skipped.len()) as u64;
        report.imported += imported as u64;
        report.already_present += present as u64;
        report.warnings += warnings;
        for (_, reason) in skipped {
            *report.skipped.entry(reason).or_default() += 1;
        }
        let done = report.read;
        let total = self.total(table);
        self.progress.advance(table, done, total);
        Ok(())
    }
}

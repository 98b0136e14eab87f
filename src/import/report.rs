//! What an import reports: per table, rows read, imported, already present and
//! skipped with their reasons.

use super::*;

/// Why a row was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    /// The row has no id.
    MissingId,
    /// A required column is NULL.
    MissingField(&'static str),
    /// Longer than its PostgreSQL column allows.
    TooLong(&'static str, usize),
    /// The user's email belongs to another user in the same batch.
    EmailTaken,
    /// The workspace's owner is not a user.
    MissingOwner,
    /// The conversation's workspace was not imported.
    MissingWorkspace,
    /// The message's conversation was not imported.
    MissingConversation,
    /// The message's sender is not a user.
    MissingSender,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingId => write!(f, "no id"),
            Self::MissingField(c) => write!(f, "no {c}"),
            Self::TooLong(c, n) => write!(f, "{c} over {n} characters"),
            Self::EmailTaken => write!(f, "email of another user"),
            Self::MissingOwner => write!(f, "owner missing"),
            Self::MissingWorkspace => write!(f, "workspace missing"),
            Self::MissingConversation => write!(f, "conversation missing"),
            Self::MissingSender => write!(f, "sender missing"),
        }
    }
}

/// The accounting of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableReport {
    /// Rows read from the file.
    pub read: u64,
    /// Rows written (or, on a dry run, that would be).
    pub imported: u64,
    /// Rows found already in PostgreSQL (a user with that `user_id`, or a mapped id),
    /// including a repeat of an id earlier in the file.
    pub already_present: u64,
    /// Rows not imported, by reason.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// Repairs made (bad JSON, fallback timestamps, …).
    pub warnings: u64,
    /// Time spent on this table.
    pub elapsed: Duration,
}

impl TableReport {
    /// Rows skipped, all reasons together.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// The accounting of a whole import, per table in import order.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// `(table, report)` in import order.
    pub tables: Vec<(&'static str, TableReport)>,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// How the rows were written.
    pub mode: ImportMode,
    /// What bulk mode rebuilt at the end.
    pub rebuilt: Option<bulk::Rebuilt>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut table = comfy_table::Table::new();
        table
            .load_style(comfy_table::presets::ASCII_MARKDOWN)
            .set_header([
                "table",
                "read",
                "imported",
                "already present",
                "skipped",
                "skipped by reason",
                "warnings",
                "elapsed",
                "rows/s",
            ]);
        for (name, r) in &self.tables {
            let reasons = r
                .skipped
                .iter()
                .map(|(reason, n)| format!("{reason}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let seconds = r.elapsed.as_secs_f64();
            table.add_row([
                name.to_string(),
                r.read.to_string(),
                r.imported.to_string(),
                r.already_present.to_string(),
                r.skipped_total().to_string(),
                reasons,
                r.warnings.to_string(),
                format!("{seconds:.2} s"),
                format!(
                    "{:.0}",
                    if seconds > 0.0 {
                        r.read as f64 / seconds
                    } else {
                        0.0
                    }
                ),
            ]);
        }
        for i in 1..=8 {
            if let Some(column) = table.column_mut(i) {
                column.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
        if let Some(column) = table.column_mut(5) {
            column.set_cell_alignment(comfy_table::CellAlignment::Left);
        }
        writeln!(f, "{table}")?;
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        } else if let Some(rebuilt) = &self.rebuilt {
            writeln!(
                f,
                "mode: bulk ({} indexes and foreign keys rebuilt and validated in {:.2} s)",
                rebuilt.objects,
                rebuilt.elapsed.as_secs_f64()
            )?;
        } else {
            writeln!(f, "mode: {}", self.mode)?;
        }
        Ok(())
    }
}

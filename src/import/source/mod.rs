//! Reading the Cortex Core (Phase 4) SQLite file: its schema is checked up front,
//! then each table is streamed in batches from a reader thread, each value
//! converted the way the seed's script does, with every repair named in a warning.
//! (One file: the schema check, the reader and the conversions are one contract
//! with the source format; the tests are in `tests.rs`.)

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use super::SkipReason;

/// The four source tables, in import order, with the columns the seed reads.
pub const TABLES: [(&str, &[&str]); 4] = [
    ("users", &["user_id", "name", "email", "metadata"]),
    (
        "workspaces",
        &["id", "name", "description", "owner_id", "metadata"],
    ),
    (
        "conversations",
        &["id", "workspace_id", "topic", "participant_ids", "metadata"],
    ),
    (
        "messages",
        &[
            "id",
            "conversation_id",
            "sender_id",
            "content",
            "timestamp",
            "metadata",
        ],
    ),
];

/// A user to import (matched by `user_id`).
#[derive(Debug, Clone)]
pub struct UserRow {
    pub user_id: String,
    pub name: String,
    pub email: Option<String>,
    pub metadata: Value,
}

/// A workspace to import under a new id.
#[derive(Debug, Clone)]
pub struct WorkspaceRow {
    pub old_id: String,
    pub name: String,
    pub description: String,
    pub owner_id: String,
    pub metadata: Value,
}

/// A conversation to import under a new id.
#[derive(Debug, Clone)]
pub struct ConversationRow {
    pub old_id: String,
    pub old_workspace_id: String,
    pub topic: String,
    /// A JSON array of strings (bound as `jsonb`, turned into `text[]` in SQL).
    pub participant_ids: Value,
    pub metadata: Value,
}

/// A message to import under a new id.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub old_id: String,
    pub old_conversation_id: String,
    pub sender_id: String,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    pub metadata: Value,
}

/// Rows of one table, in source order.
#[derive(Debug)]
pub enum Rows {
    Users(Vec<UserRow>),
    Workspaces(Vec<WorkspaceRow>),
    Conversations(Vec<ConversationRow>),
    Messages(Vec<MessageRow>),
}

impl Rows {
    /// How many rows.
    pub fn len(&self) -> usize {
        match self {
            Self::Users(r) => r.len(),
            Self::Workspaces(r) => r.len(),
            Self::Conversations(r) => r.len(),
            Self::Messages(r) => r.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each row's source id, in order (the batch statements answer in that order).
    pub fn ids(&self) -> Vec<String> {
        match self {
            Self::Users(r) => r.iter().map(|r| r.user_id.clone()).collect(),
            Self::Workspaces(r) => r.iter().map(|r| r.old_id.clone()).collect(),
            Self::Conversations(r) => r.iter().map(|r| r.old_id.clone()).collect(),
            Self::Messages(r) => r.iter().map(|r| r.old_id.clone()).collect(),
        }
    }
}

/// One batch as read: the rows to write, the rows refused while reading, and the
/// repairs made (each a warning naming the row).
#[derive(Debug)]
pub struct Batch {
    pub table: &'static str,
    pub rows: Rows,
    pub skipped: Vec<(String, SkipReason)>,
    pub warnings: Vec<String>,
}

impl Batch {
    /// Rows read from the file in this batch.
    pub fn read(&self) -> usize {
        self.rows.len() + self.skipped.len()
    }
}

/// An opened, checked source file and the row count of each table (for progress).
pub struct Source {
    /// The read-only SQLite connection.
    pub conn: Connection,
    /// `(table, rows)` in import order.
    pub totals: Vec<(&'static str, u64)>,
}

/// Opens the file read-only, checks every table and column is there, and counts
/// the rows. Errors are one line for the user.
pub fn open(path: &std::path::Path) -> Result<Source, String> {
    if !path.exists() {
        return Err(format!("{}: no such file", path.display()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    for (table, columns) in TABLES {
        let sql = format!("SELECT {} FROM {table} LIMIT 0", columns.join(", "));
        if let Err(e) = conn.prepare(&sql) {
            let text = e.to_string();
            return Err(if text.contains("not a database") {
                format!("{}: not a SQLite database", path.display())
            } else if text.contains("no such table") {
                format!("{}: the table `{table}` is missing", path.display())
            } else if let Some(rest) = text.strip_prefix("no such column: ") {
                let column = rest.split_whitespace().next().unwrap_or(rest);
                format!(
                    "{}: the table `{table}` has no column `{column}`",
                    path.display()
                )
            } else {
                format!("{}: cannot read `{table}`: {text}", path.display())
            });
        }
    }
    let mut totals = Vec::with_capacity(TABLES.len());
    for (table, _) in TABLES {
        let rows = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| format!("{}: cannot count `{table}`: {e}", path.display()))?;
        totals.push((table, rows as u64));
    }
    Ok(Source { conn, totals })
}

/// How warnings name a row of `table`: `"messages"` → `"message"`.
pub fn singular(table: &str) -> &str {
    table.strip_suffix('s').unwrap_or(table)
}

/// Streams every table in import order as batches of `batch_size` into `send`
/// (which blocks while the writer is behind, so memory stays bounded). Stops early
/// when `send` returns false.
pub fn read_all(
    conn: &Connection,
    batch_size: usize,
    import_time: DateTime<Utc>,
    mut send: impl FnMut(Batch) -> bool,
) -> rusqlite::Result<()> {
    for (table, columns) in TABLES {
        // rowid order: the order the seed's `SELECT` returns in practice, and stable.
        let sql = format!("SELECT {} FROM {table} ORDER BY rowid", columns.join(", "));
        let mut statement = conn.prepare(&sql)?;
        let mut rows = statement.query([])?;
        let mut batch = new_batch(table);
        while let Some(row) = rows.next()? {
            let values: Vec<ValueRef<'_>> = (0..columns.len())
                .map(|i| row.get_ref(i))
                .collect::<rusqlite::Result<_>>()?;
            convert(&mut batch, &values, import_time);
            if batch.read() >= batch_size && !send(std::mem::replace(&mut batch, new_batch(table)))
            {
                return Ok(());
            }
        }
        if batch.read() > 0 && !send(batch) {
            return Ok(());
        }
    }
    Ok(())
}

fn new_batch(table: &'static str) -> Batch {
    let rows = match table {
        "users" => Rows::Users(Vec::new()),
        "workspaces" => Rows::Workspaces(Vec::new()),
        "conversations" => Rows::Conversations(Vec::new()),
        _ => Rows::Messages(Vec::new()),
    };
    Batch {
        table,
        rows,
        skipped: Vec::new(),
        warnings: Vec::new(),
    }
}

/// Converts one source row into the batch (or its skip list).
fn convert(batch: &mut Batch, v: &[ValueRef<'_>], import_time: DateTime<Utc>) {
    let table = batch.table;
    let singular = singular(table);
    let Some(id) = id(v[0]) else {
        let n = batch.read() + 1;
        batch
            .skipped
            .push((format!("(row {n} of this batch)"), SkipReason::MissingId));
        return;
    };
    let mut warn = |message: String| batch.warnings.push(format!("{singular} {id}: {message}"));
    let metadata = metadata(v[v.len() - 1], &mut warn);
    let result = match &mut batch.rows {
        Rows::Users(rows) => required(v[1], "name", 100, &mut warn).map(|name| {
            rows.push(UserRow {
                user_id: id.clone(),
                name,
                email: text(v[2], "email", &mut warn).filter(|e| !e.trim().is_empty()),
                metadata,
            })
        }),
        Rows::Workspaces(rows) => required(v[1], "name", 100, &mut warn).and_then(|name| {
            let owner_id = self::id(v[3]).ok_or(SkipReason::MissingField("owner_id"))?;
            rows.push(WorkspaceRow {
                old_id: id.clone(),
                name,
                description: text(v[2], "description", &mut warn).unwrap_or_default(),
                owner_id,
                metadata,
            });
            Ok(())
        }),
        Rows::Conversations(rows) => required(v[2], "topic", 200, &mut warn).and_then(|topic| {
            let old_workspace_id =
                self::id(v[1]).ok_or(SkipReason::MissingField("workspace_id"))?;
            rows.push(ConversationRow {
                old_id: id.clone(),
                old_workspace_id,
                topic,
                participant_ids: participants(v[3], &mut warn),
                metadata,
            });
            Ok(())
        }),
        Rows::Messages(rows) => {
            let old_conversation_id =
                self::id(v[1]).ok_or(SkipReason::MissingField("conversation_id"));
            let sender_id = self::id(v[2]).ok_or(SkipReason::MissingField("sender_id"));
            let content =
                text(v[3], "content", &mut warn).ok_or(SkipReason::MissingField("content"));
            match (old_conversation_id, sender_id, content) {
                (Ok(old_conversation_id), Ok(sender_id), Ok(content)) => {
                    rows.push(MessageRow {
                        old_id: id.clone(),
                        old_conversation_id,
                        sender_id,
                        content,
                        timestamp: timestamp(v[4], import_time, &mut warn),
                        metadata,
                    });
                    Ok(())
                }
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
            }
        }
    };
    if let Err(reason) = result {
        batch.skipped.push((id, reason));
    }
}

/// An id: text as is, integers in decimal (SQLite ids are either); NULL or empty → none.
fn id(value: ValueRef<'_>) -> Option<String> {
    let id = match value {
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 1e15 => (f as i64).to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).replace('\0', ""),
        ValueRef::Null | ValueRef::Blob(_) => return None,
    };
    (!id.is_empty()).then_some(id)
}

/// Text as PostgreSQL can store it: invalid UTF-8 and NUL bytes are replaced by
/// U+FFFD (PostgreSQL text cannot hold NUL), with a warning.
fn text(value: ValueRef<'_>, column: &str, warn: &mut impl FnMut(String)) -> Option<String> {
    let raw = match value {
        ValueRef::Null => return None,
        ValueRef::Integer(i) => return Some(i.to_string()),
        ValueRef::Real(f) => return Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => t,
    };
    let mut text = match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => {
            warn(format!(
                "`{column}` is not valid UTF-8; invalid bytes replaced by U+FFFD"
            ));
            String::from_utf8_lossy(raw).into_owned()
        }
    };
    if text.contains('\0') {
        warn(format!(
            "`{column}` holds NUL characters; replaced by U+FFFD"
        ));
        text = text.replace('\0', "\u{FFFD}");
    }
    Some(text)
}

/// A required, length-limited text column (the PostgreSQL `varchar(n)`).
fn required(
    value: ValueRef<'_>,
    column: &'static str,
    max_chars: usize,
    warn: &mut impl FnMut(String),
) -> Result<String, SkipReason> {
    let text = text(value, column, warn).ok_or(SkipReason::MissingField(column))?;
    if text.chars().count() > max_chars {
        return Err(SkipReason::TooLong(column, max_chars));
    }
    Ok(text)
}

/// The seed's `json.loads(metadata) if metadata else {}`, with bad JSON → `{}` and a
/// warning instead of an error.
fn metadata(value: ValueRef<'_>, warn: &mut impl FnMut(String)) -> Value {
    let Some(text) = text(value, "metadata", warn).filter(|t| !t.trim().is_empty()) else {
        return Value::Object(Default::default());
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(value) => without_nul(value),
        Err(e) => {
            warn(format!(
                "`metadata` is not valid JSON ({e}); imported as {{}}"
            ));
            Value::Object(Default::default())
        }
    }
}

/// `\u0000` is valid JSON but PostgreSQL's `jsonb` refuses it.
fn without_nul(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "\u{FFFD}")),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), without_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

/// `participant_ids`: a JSON array; numbers become their text, nulls are dropped.
fn participants(value: ValueRef<'_>, warn: &mut impl FnMut(String)) -> Value {
    let Some(text) = text(value, "participant_ids", warn).filter(|t| !t.trim().is_empty()) else {
        return Value::Array(Vec::new());
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .filter_map(|item| match item {
                    Value::Null => None,
                    Value::String(s) => Some(Value::String(s.replace('\0', "\u{FFFD}"))),
                    other => Some(Value::String(other.to_string())),
                })
                .collect(),
        ),
        Ok(other) => {
            warn(format!(
                "`participant_ids` is not a JSON array ({other}); imported as []"
            ));
            Value::Array(Vec::new())
        }
        Err(e) => {
            warn(format!(
                "`participant_ids` is not valid JSON ({e}); imported as []"
            ));
            Value::Array(Vec::new())
        }
    }
}

/// ISO-8601 as Python's `datetime.fromisoformat` reads it (after the seed's `Z` →
/// `+00:00`); times without an offset are UTC. Anything else → the import time, as
/// the seed does, with a warning.
fn timestamp(
    value: ValueRef<'_>,
    import_time: DateTime<Utc>,
    warn: &mut impl FnMut(String),
) -> DateTime<Utc> {
    let text = text(value, "timestamp", warn);
    match text.as_deref().map(str::trim).and_then(parse_timestamp) {
        Some(t) => t,
        None => {
            warn(format!(
                "`timestamp` {} is not an ISO-8601 time; the import time is used",
                text.map_or("NULL".into(), |t| format!("{t:?}"))
            ));
            import_time
        }
    }
}

/// Parses the ISO-8601 forms found in Phase 4 files.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
}

#[cfg(test)]
mod tests;

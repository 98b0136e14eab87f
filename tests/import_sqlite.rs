//! `cortex import-sqlite` through the real binary against a real PostgreSQL: every
//! edge case of a Phase 4 file lands as the expected rows with an exact report; a
//! second run changes nothing; an interrupted run (test hook, and `kill -9`) resumed
//! ends equal to an uninterrupted one; `--dry-run` writes nothing; bad input is one
//! clear error line with nothing written. Bulk mode lands the same rows, report,
//! indexes and foreign keys, and a bulk import stopped at any point (while loading or
//! while rebuilding) is repaired by `cortex migrate` or by the next import.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::TestDb;

fn import(file: &Path, url: &str, extra: &[&str]) -> Output {
    common::cortex_command(&[("DATABASE_URL", url)])
        .arg("import-sqlite")
        .arg(file)
        .args(extra)
        .output()
        .expect("run cortex")
}

/// The Phase 4 schema as the seed reads it (no constraints: SQLite let anything in).
const PHASE4_SCHEMA: &str = "
    CREATE TABLE users (user_id, name, email, metadata);
    CREATE TABLE workspaces (id, name, description, owner_id, metadata);
    CREATE TABLE conversations (id, workspace_id, topic, participant_ids, metadata);
    CREATE TABLE messages (id, conversation_id, sender_id, content, timestamp, metadata);";

const LONG_CONTENT_CHARS: usize = 100_000;

/// Every edge case the importer must handle, one row each.
fn edge_case_fixture(path: &Path) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(PHASE4_SCHEMA).unwrap();
    let long_name = "x".repeat(101);
    let long_content = "Zoë says 🚀 ".repeat(LONG_CONTENT_CHARS / 11);
    db.execute_batch(&format!(
        r#"
        INSERT INTO users VALUES ('alice', 'Alice', 'alice@example.com', '{{"role": "admin"}}');
        INSERT INTO users VALUES (42, 'Integer Id', NULL, NULL);
        INSERT INTO users VALUES ('zoe', 'Zoë 🚀', '', '{{broken');
        INSERT INTO users VALUES ('alice', 'Alice again', NULL, '{{}}');
        INSERT INTO users VALUES ('pre', 'Name in SQLite', 'pre@example.com', '{{}}');
        INSERT INTO users VALUES ('taken', 'Taken Email', 'pre@example.com', '{{}}');
        INSERT INTO users VALUES ('nameless', NULL, NULL, '{{}}');

        INSERT INTO workspaces VALUES (1, 'Integer Workspace', 'd', 'alice', '{{"tier": "gold"}}');
        INSERT INTO workspaces VALUES ('w-text', 'Text Workspace', NULL, 42, 'not json');
        INSERT INTO workspaces VALUES (3, 'Orphan Workspace', '', 'ghost', '{{}}');
        INSERT INTO workspaces VALUES (4, NULL, '', 'alice', '{{}}');
        INSERT INTO workspaces VALUES (5, '{long_name}', '', 'alice', '{{}}');

        INSERT INTO conversations VALUES (10, 1, 'Integer Conversation', '["alice", 42, null]', NULL);
        INSERT INTO conversations VALUES ('c-text', 'w-text', 'Text Conversation', '["zoe"]', '{{"n": 1}}');
        INSERT INTO conversations VALUES (12, 3, 'Under Orphan Workspace', '[]', '{{}}');
        INSERT INTO conversations VALUES (13, 999, 'Missing Workspace', '[]', '{{}}');
        INSERT INTO conversations VALUES (14, 1, 'Broken Participants', 'alice,bob', '{{}}');

        INSERT INTO messages VALUES (100, 10, 'alice', 'with Z', '2024-01-02T03:04:05Z', '{{"seq": 1}}');
        INSERT INTO messages VALUES (101, 'c-text', 'zoe', 'no zone', '2024-01-02 03:04:05', NULL);
        INSERT INTO messages VALUES (102, 12, 'alice', 'under a skipped conversation', '2024-01-02T03:04:05Z', '{{}}');
        INSERT INTO messages VALUES (103, 10, 'ghost', 'unknown sender', '2024-01-02T03:04:05Z', '{{}}');
        INSERT INTO messages VALUES (104, 10, 'alice', 'empty timestamp', '', '{{}}');
        INSERT INTO messages VALUES (105, 10, 42, 'odd timestamp', 'last tuesday', '[1, 2]');
        INSERT INTO messages VALUES (106, 'c-text', 'zoe', '{long_content}', '2024-01-02T03:04:05.123+02:00', '{{}}');
        INSERT INTO messages VALUES (100, 10, 'alice', 'duplicate id', '2024-01-02T03:04:05Z', '{{}}');
        "#
    ))
    .unwrap();
    db.execute(
        "INSERT INTO messages VALUES (107, 10, 'alice', ?1, '2024-01-02T03:04:05Z', '{}')",
        ["nul\0byte"],
    )
    .unwrap();
}

/// The edge-case fixture in a fresh temporary folder (kept while the guard lives).
fn edge_case_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("phase4.db");
    edge_case_fixture(&file);
    (dir, file)
}

/// Imports `file` with `args` into a fresh database, uninterrupted: its rows
/// ([`canonical`]) and its structure ([`structure`]), what a stopped and resumed
/// import must end equal to.
async fn uninterrupted(file: &Path, args: &[&str]) -> (Vec<String>, Vec<String>) {
    let whole = TestDb::new().await;
    assert_ok(&import(file, &whole.url, args));
    (canonical(&whole).await, structure(&whole).await)
}

async fn seed_existing_user(db: &TestDb) {
    let mut conn = db.conn().await;
    cortex::db::users::create(
        &mut conn,
        &cortex::db::users::NewUser {
            user_id: "pre".into(),
            name: "Name in PostgreSQL".into(),
            email: Some("pre@example.com".into()),
            metadata: serde_json::json!({"kept": true}),
        },
    )
    .await
    .unwrap();
}

/// Every imported row as a line keyed by its SQLite id (new UUIDs differ between
/// databases), plus row counts, so two databases can be compared exactly. Fallback
/// timestamps (the import time) are shown as such.
async fn canonical(db: &TestDb) -> Vec<String> {
    common::text_lines(
        &mut db.conn().await,
        r#"
        SELECT line FROM (
          SELECT 'count|' || (SELECT count(*) FROM users) || '|' || (SELECT count(*) FROM workspaces) || '|'
                 || (SELECT count(*) FROM conversations) || '|' || (SELECT count(*) FROM messages) || '|'
                 || (SELECT count(*) FROM import_id_map) || '|'
                 -- imported history raises no subscription events
                 || (SELECT count(*) FROM events) AS line
          UNION ALL
          SELECT 'user|' || user_id || '|' || name || '|' || coalesce(email, '-') || '|' || metadata::text FROM users
          UNION ALL
          SELECT 'workspace|' || m.old_id || '|' || w.name || '|' || w.description || '|' || w.owner_id || '|' || w.metadata::text
            FROM workspaces w JOIN import_id_map m ON m.entity = 'workspace' AND m.new_id = w.id
          UNION ALL
          SELECT 'conversation|' || m.old_id || '|' || wm.old_id || '|' || c.topic || '|'
                 || array_to_string(c.participant_ids, ',') || '|' || c.metadata::text
            FROM conversations c JOIN import_id_map m ON m.entity = 'conversation' AND m.new_id = c.id
            JOIN import_id_map wm ON wm.entity = 'workspace' AND wm.new_id = c.workspace_id
          UNION ALL
          SELECT 'message|' || m.old_id || '|' || cm.old_id || '|' || x.sender_id || '|' || length(x.content) || '|'
                 || md5(x.content) || '|'
                 || CASE WHEN x."timestamp" > now() - interval '1 day' THEN 'import time'
                         ELSE to_char(x."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS') END
                 || '|' || x.metadata::text
            FROM messages x JOIN import_id_map m ON m.entity = 'message' AND m.new_id = x.id
            JOIN import_id_map cm ON cm.entity = 'conversation' AND cm.new_id = x.conversation_id
        ) t ORDER BY line
        "#,
    )
    .await
}

/// The report's row for `table`: read, imported, already present, skipped, reasons.
fn report_row(stdout: &str, table: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("| {table} ")))
        .unwrap_or_else(|| panic!("no report row for {table}:\n{stdout}"));
    line.split('|')
        .map(|c| c.trim().to_string())
        .skip(1)
        .take(6)
        .collect()
}

fn assert_ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "import failed ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn every_edge_case_lands_as_the_expected_rows_with_an_exact_report() {
    let (_dir, file) = edge_case_file();
    let db = TestDb::new().await;
    seed_existing_user(&db).await;

    let out = import(&file, &db.url, &["--batch-size", "3"]);
    let stdout = assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let row = |t| report_row(&stdout, t);
    // table, read, imported, already present, skipped, reasons
    assert_eq!(
        row("users"),
        ["users", "7", "4", "2", "1", "no name: 1"],
        "{stdout}"
    );
    assert_eq!(
        row("workspaces"),
        [
            "workspaces",
            "5",
            "2",
            "0",
            "3",
            "no name: 1, name over 100 characters: 1, owner missing: 1"
        ]
    );
    assert_eq!(
        row("conversations"),
        ["conversations", "5", "3", "0", "2", "workspace missing: 2"]
    );
    assert_eq!(
        row("messages"),
        [
            "messages",
            "9",
            "6",
            "1",
            "2",
            "conversation missing: 1, sender missing: 1"
        ]
    );
    // Each skip and each repair is named in a warning.
    for expected in [
        "user nameless: skipped (no name)",
        "user zoe: `metadata` is not valid JSON",
        "user taken: email already belongs to another user; imported without it",
        "workspace 3: skipped (owner missing)",
        "workspace 5: skipped (name over 100 characters)",
        "workspace w-text: `metadata` is not valid JSON",
        "conversation 13: skipped (workspace missing)",
        "conversation 14: `participant_ids` is not valid JSON",
        "message 102: skipped (conversation missing)",
        "message 103: skipped (sender missing)",
        "message 104: `timestamp` \"\" is not an ISO-8601 time; the import time is used",
        "message 105: `timestamp` \"last tuesday\" is not an ISO-8601 time",
        "message 107: `content` holds NUL characters",
    ] {
        assert!(
            stderr.contains(expected),
            "missing warning {expected:?}:\n{stderr}"
        );
    }

    let long = "Zoë says 🚀 ".repeat(LONG_CONTENT_CHARS / 11);
    let rows = canonical(&db).await;
    let expected: Vec<String> = {
        let mut v = vec![
            "count|5|2|3|6|11|0".to_string(),
            "user|42|Integer Id|-|{}".into(),
            r#"user|alice|Alice|alice@example.com|{"role": "admin"}"#.into(),
            r#"user|pre|Name in PostgreSQL|pre@example.com|{"kept": true}"#.into(),
            "user|taken|Taken Email|-|{}".into(),
            "user|zoe|Zoë 🚀|-|{}".into(),
            r#"workspace|1|Integer Workspace|d|alice|{"tier": "gold"}"#.into(),
            "workspace|w-text|Text Workspace||42|{}".into(),
            "conversation|10|1|Integer Conversation|alice,42|{}".into(),
            "conversation|14|1|Broken Participants||{}".into(),
            r#"conversation|c-text|w-text|Text Conversation|zoe|{"n": 1}"#.into(),
            format!(
                r#"message|100|10|alice|6|{}|2024-01-02T03:04:05.000|{{"seq": 1}}"#,
                md5("with Z")
            ),
            format!(
                "message|101|c-text|zoe|7|{}|2024-01-02T03:04:05.000|{{}}",
                md5("no zone")
            ),
            format!(
                "message|104|10|alice|15|{}|import time|{{}}",
                md5("empty timestamp")
            ),
            format!(
                "message|105|10|42|13|{}|import time|[1, 2]",
                md5("odd timestamp")
            ),
            format!(
                "message|106|c-text|zoe|{}|{}|2024-01-02T01:04:05.123|{{}}",
                long.chars().count(),
                md5(&long)
            ),
            format!(
                "message|107|10|alice|8|{}|2024-01-02T03:04:05.000|{{}}",
                md5("nul\u{FFFD}byte")
            ),
        ];
        v.sort();
        v
    };
    assert_eq!(rows, expected);

    // A second run changes nothing and says so.
    let again = assert_ok(&import(&file, &db.url, &["--batch-size", "3"]));
    assert_eq!(canonical(&db).await, expected);
    assert_eq!(report_row(&again, "users")[2..4], ["0", "6"]);
    assert_eq!(report_row(&again, "messages")[2..4], ["0", "7"]);
    assert_eq!(report_row(&again, "workspaces")[2..4], ["0", "2"]);
    assert_eq!(report_row(&again, "conversations")[2..4], ["0", "3"]);
}

fn md5(text: &str) -> String {
    // The digest PostgreSQL's md5() gives, from coreutils' md5sum: no hash crate needed.
    let out = Command::new("sh")
        .arg("-c")
        .arg("md5sum | cut -d' ' -f1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn a_dry_run_prints_the_same_report_and_writes_nothing() {
    let (_dir, file) = edge_case_file();
    let dry = TestDb::new().await;
    let real = TestDb::new().await;
    let dry_out = assert_ok(&import(
        &file,
        &dry.url,
        &["--dry-run", "--batch-size", "3"],
    ));
    let real_out = assert_ok(&import(&file, &real.url, &["--batch-size", "3"]));
    assert!(
        dry_out.contains("dry run: nothing was written"),
        "{dry_out}"
    );
    for table in ["users", "workspaces", "conversations", "messages"] {
        assert_eq!(report_row(&dry_out, table), report_row(&real_out, table));
    }
    assert_eq!(canonical(&dry).await, ["count|0|0|0|0|0|0"]);
}

/// A bigger file: `n` messages over 50 conversations, 5 workspaces, 3 users.
fn generated_fixture(path: &Path, n: usize) {
    let mut db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(PHASE4_SCHEMA).unwrap();
    let tx = db.transaction().unwrap();
    for u in 0..3 {
        tx.execute(
            "INSERT INTO users VALUES (?1, ?2, NULL, '{}')",
            (format!("u{u}"), format!("User {u}")),
        )
        .unwrap();
    }
    for w in 0..5 {
        tx.execute(
            "INSERT INTO workspaces VALUES (?1, ?2, '', ?3, '{}')",
            (w, format!("W{w}"), format!("u{}", w % 3)),
        )
        .unwrap();
    }
    for c in 0..50 {
        tx.execute(
            "INSERT INTO conversations VALUES (?1, ?2, ?3, '[]', '{}')",
            (format!("c{c}"), c % 5, format!("C{c}")),
        )
        .unwrap();
    }
    for m in 0..n {
        tx.execute(
            "INSERT INTO messages VALUES (?1, ?2, ?3, ?4, '2025-05-05T05:05:05Z', ?5)",
            (
                m as i64,
                format!("c{}", m % 50),
                format!("u{}", m % 3),
                format!("message {m}"),
                format!("{{\"m\": {m}}}"),
            ),
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Starts an import of `file` into `db` and kills it with SIGKILL once 5,000
/// messages are in, whatever the importer is doing at that moment.
async fn kill_once_messages_are_in(file: &Path, db: &TestDb, args: &[&str]) {
    let mut child = common::cortex_command(&[("DATABASE_URL", &db.url)])
        .arg("import-sqlite")
        .arg(file)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut conn = db.conn().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = common::text_lines(&mut conn, "SELECT count(*)::text AS line FROM messages").await;
        if n[0].parse::<u64>().unwrap() >= 5_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import made no progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[tokio::test]
async fn parallel_writers_keep_the_first_row_of_a_repeated_id_like_a_single_writer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("phase4.db");
    {
        let db = rusqlite::Connection::open(&file).unwrap();
        db.execute_batch(PHASE4_SCHEMA).unwrap();
        db.execute_batch(
            "INSERT INTO users VALUES ('u', 'U', NULL, '{}');
             INSERT INTO workspaces VALUES (1, 'W', '', 'u', '{}');
             INSERT INTO conversations VALUES (1, 1, 'C', '[]', '{}');",
        )
        .unwrap();
        // Ten ids, each four times in a row of one-row batches: with four writers,
        // every copy of an id would be in flight at once.
        for id in 0..10 {
            for copy in 0..4 {
                db.execute(
                    "INSERT INTO messages VALUES (?1, 1, 'u', ?2, '2025-01-01T00:00:00Z', '{}')",
                    (id, format!("copy {copy}")),
                )
                .unwrap();
            }
        }
    }
    let db = TestDb::new().await;
    let out = assert_ok(&import(
        &file,
        &db.url,
        &["--batch-size", "1", "--jobs", "4"],
    ));
    assert_eq!(
        report_row(&out, "messages"),
        ["messages", "40", "10", "30", "0", ""]
    );
    let first = md5("copy 0");
    let rows = canonical(&db).await;
    let messages: Vec<&String> = rows.iter().filter(|l| l.starts_with("message|")).collect();
    assert_eq!(messages.len(), 10, "{rows:?}");
    for line in messages {
        assert!(line.contains(&first), "a later copy won: {line}");
    }
}

#[tokio::test]
async fn an_import_aborted_after_some_batches_then_resumed_equals_an_uninterrupted_one() {
    let (_dir, file) = edge_case_file();
    let (expected, _) = uninterrupted(&file, &["--batch-size", "2"]).await;

    // Abort after every possible number of committed batches, then resume.
    for k in [1, 3, 5, 8, 10] {
        let resumed = TestDb::new().await;
        let out = import(
            &file,
            &resumed.url,
            &["--batch-size", "2", "--abort-after-batches", &k.to_string()],
        );
        assert_eq!(
            out.status.code(),
            Some(75),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ok(&import(&file, &resumed.url, &["--batch-size", "2"]));
        assert_eq!(
            canonical(&resumed).await,
            expected,
            "aborted after {k} batches"
        );
    }
}

#[tokio::test]
async fn an_import_killed_with_sigkill_mid_run_then_resumed_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.db");
    generated_fixture(&file, 30_000);
    let (expected, _) = uninterrupted(&file, &["--batch-size", "500"]).await;
    assert!(expected.contains(&"count|3|5|50|30000|30055|0".to_string()));

    let killed = TestDb::new().await;
    kill_once_messages_are_in(&file, &killed, &["--batch-size", "500"]).await;
    assert_ne!(
        canonical(&killed).await,
        expected,
        "the import finished before it was killed"
    );

    assert_ok(&import(&file, &killed.url, &["--batch-size", "500"]));
    assert_eq!(canonical(&killed).await, expected);
}

#[tokio::test]
async fn bad_input_is_one_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new().await;
    let missing_table = dir.path().join("no-messages.db");
    rusqlite::Connection::open(&missing_table)
        .unwrap()
        .execute_batch(&PHASE4_SCHEMA.replace("CREATE TABLE messages", "CREATE TABLE notes"))
        .unwrap();
    let missing_column = dir.path().join("no-topic.db");
    rusqlite::Connection::open(&missing_column)
        .unwrap()
        .execute_batch(&PHASE4_SCHEMA.replace("topic,", ""))
        .unwrap();
    let not_sqlite = dir.path().join("notes.txt");
    std::fs::write(
        &not_sqlite,
        "this is not a database, just some text ".repeat(100),
    )
    .unwrap();
    let good = dir.path().join("good.db");
    edge_case_fixture(&good);

    let cases: [(&Path, &str, &str); 5] = [
        (&dir.path().join("nope.db"), &db.url, "no such file"),
        (&not_sqlite, &db.url, "not a SQLite database"),
        (&missing_table, &db.url, "the table `messages` is missing"),
        (
            &missing_column,
            &db.url,
            "the table `conversations` has no column `topic`",
        ),
        (
            &good,
            "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
            "cannot connect",
        ),
    ];
    for (file, url, expected) in cases {
        let out = import(file, url, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{expected}: succeeded");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{expected}: not one line:\n{stderr}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(expected),
            "{expected}: {stderr}"
        );
    }
    assert_eq!(canonical(&db).await, ["count|0|0|0|0|0|0"]);
}

/// Every index and constraint of the schema, with whether it is validated, and the
/// objects a bulk import still owes: two databases with the same lines have the
/// same structure.
async fn structure(db: &TestDb) -> Vec<String> {
    common::text_lines(
        &mut db.conn().await,
        r#"
        SELECT line FROM (
          SELECT 'index|' || pg_get_indexdef(i.indexrelid) AS line
            FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
           WHERE c.relnamespace = 'public'::regnamespace
          UNION ALL
          SELECT 'constraint|' || conrelid::regclass || '|' || conname || '|'
                 || pg_get_constraintdef(oid) || '|' || convalidated
            FROM pg_constraint WHERE connamespace = 'public'::regnamespace
          UNION ALL
          SELECT 'deferred|' || count(*) FROM import_deferred_objects
        ) t ORDER BY line
        "#,
    )
    .await
}

fn deferred_line(structure: &[String]) -> &str {
    structure
        .iter()
        .find(|l| l.starts_with("deferred|"))
        .expect("a deferred line")
}

fn migrate(url: &str) -> Output {
    common::cortex_command(&[("DATABASE_URL", url)])
        .arg("migrate")
        .output()
        .expect("run cortex migrate")
}

#[tokio::test]
async fn a_bulk_import_lands_the_same_rows_report_indexes_and_keys_as_an_incremental_one() {
    let (_dir, file) = edge_case_file();
    let incremental = TestDb::new().await;
    let bulk = TestDb::new().await;
    let migrated = structure(&TestDb::new().await).await;
    assert!(migrated.len() > 20, "{migrated:?}");
    assert_eq!(deferred_line(&migrated), "deferred|0");
    seed_existing_user(&incremental).await;
    seed_existing_user(&bulk).await;

    let args = ["--batch-size", "2", "--jobs", "2", "--mode"];
    let incremental_out = assert_ok(&import(
        &file,
        &incremental.url,
        &[&args[..], &["incremental"]].concat(),
    ));
    let bulk_out = assert_ok(&import(&file, &bulk.url, &[&args[..], &["bulk"]].concat()));
    assert!(
        incremental_out.contains("mode: incremental"),
        "{incremental_out}"
    );
    assert!(
        bulk_out.contains("mode: bulk (19 indexes and foreign keys rebuilt and validated in"),
        "{bulk_out}"
    );
    for table in ["users", "workspaces", "conversations", "messages"] {
        assert_eq!(
            report_row(&bulk_out, table),
            report_row(&incremental_out, table)
        );
    }
    assert_eq!(canonical(&bulk).await, canonical(&incremental).await);
    assert_eq!(structure(&bulk).await, migrated);

    // Run again, bulk or not: nothing changes.
    let again = assert_ok(&import(&file, &bulk.url, &["--mode", "bulk"]));
    assert_eq!(report_row(&again, "messages")[2], "0", "{again}");
    assert_eq!(canonical(&bulk).await, canonical(&incremental).await);
    assert_eq!(structure(&bulk).await, migrated);
}

#[tokio::test]
async fn a_small_file_is_imported_incrementally_unless_bulk_is_asked_for() {
    let (_dir, file) = edge_case_file();
    let db = TestDb::new().await;
    let out = assert_ok(&import(&file, &db.url, &[]));
    assert!(out.contains("mode: incremental"), "{out}");
}

#[tokio::test]
async fn a_bulk_import_stopped_while_loading_or_rebuilding_is_repaired_and_resumes_to_the_same_end()
{
    let (_dir, file) = edge_case_file();
    let (expected, migrated) = uninterrupted(&file, &["--batch-size", "2"]).await;

    // While loading (after k batches), then while rebuilding (after k objects: the
    // first indexes, the last index, between the foreign keys).
    let stops = [
        ("--abort-after-batches", 1),
        ("--abort-after-batches", 6),
        ("--abort-after-batches", 10),
        ("--abort-after-rebuilt", 1),
        ("--abort-after-rebuilt", 15),
        ("--abort-after-rebuilt", 17),
    ];
    for (i, (hook, k)) in stops.into_iter().enumerate() {
        let db = TestDb::new().await;
        let out = import(
            &file,
            &db.url,
            &["--batch-size", "2", "--mode", "bulk", hook, &k.to_string()],
        );
        assert_eq!(
            out.status.code(),
            Some(75),
            "{hook} {k}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stopped = structure(&db).await;
        assert_ne!(deferred_line(&stopped), "deferred|0", "{hook} {k}");
        assert_ne!(stopped, migrated, "{hook} {k}: nothing is missing");

        if i % 2 == 0 {
            // `cortex migrate` puts back what the stopped import had dropped...
            let out = migrate(&db.url);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("indexes and foreign keys an interrupted bulk import had dropped"),
                "{hook} {k}: {stdout}"
            );
            assert_eq!(structure(&db).await, migrated, "{hook} {k}: after migrate");
            // ...and the next import, chosen automatically, finishes the rows.
            let out = assert_ok(&import(&file, &db.url, &["--batch-size", "2"]));
            assert!(out.contains("mode: incremental"), "{out}");
        } else {
            // The next import, chosen automatically, resumes in bulk and rebuilds.
            let out = assert_ok(&import(&file, &db.url, &["--batch-size", "2"]));
            assert!(out.contains("mode: bulk ("), "{hook} {k}: {out}");
        }
        assert_eq!(canonical(&db).await, expected, "{hook} {k}");
        assert_eq!(structure(&db).await, migrated, "{hook} {k}");
    }
}

#[tokio::test]
async fn a_bulk_import_killed_with_sigkill_mid_load_then_resumed_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.db");
    generated_fixture(&file, 30_000);
    let (expected, migrated) = uninterrupted(&file, &["--batch-size", "500"]).await;

    let killed = TestDb::new().await;
    kill_once_messages_are_in(&file, &killed, &["--batch-size", "500", "--mode", "bulk"]).await;
    let stopped = structure(&killed).await;
    assert_ne!(
        canonical(&killed).await,
        expected,
        "the import finished before it was killed"
    );
    assert_ne!(deferred_line(&stopped), "deferred|0");

    let out = assert_ok(&import(&file, &killed.url, &["--batch-size", "500"]));
    assert!(out.contains("mode: bulk ("), "{out}");
    assert_eq!(canonical(&killed).await, expected);
    assert_eq!(structure(&killed).await, migrated);
}

#[tokio::test]
async fn a_second_bulk_import_into_the_same_database_is_refused_while_one_runs() {
    let (_dir, file) = edge_case_file();
    let db = TestDb::new().await;
    // Another importer's session holds the bulk lock.
    let mut holder = db.conn().await;
    common::text_lines(
        &mut holder,
        &format!(
            "SELECT pg_advisory_lock({})::text AS line",
            cortex::import::bulk::BULK_LOCK
        ),
    )
    .await;
    let out = import(&file, &db.url, &["--mode", "bulk"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("a bulk import into this database is running"),
        "{stderr}"
    );
    assert_eq!(canonical(&db).await, ["count|0|0|0|0|0|0"]);
    assert_eq!(deferred_line(&structure(&db).await), "deferred|0");
}

#[tokio::test]
async fn a_conversation_deleted_while_a_bulk_import_is_stopped_takes_its_messages_with_it() {
    let (_dir, file) = edge_case_file();
    let (_, migrated) = uninterrupted(&file, &["--batch-size", "2"]).await;

    // Stopped after its last batch, before the rebuild: the keys are still dropped.
    let db = TestDb::new().await;
    let out = import(
        &file,
        &db.url,
        &[
            "--batch-size",
            "2",
            "--mode",
            "bulk",
            "--abort-after-batches",
            "15",
        ],
    );
    assert_eq!(out.status.code(), Some(75));
    let mut conn = db.conn().await;
    let orphaned = "SELECT count(*)::text AS line FROM messages x
        JOIN import_id_map m ON m.entity = 'message' AND m.new_id = x.id
        WHERE m.old_id IN ('101', '106')";
    assert_eq!(common::text_lines(&mut conn, orphaned).await, ["2"]);
    // Deleted through the API's rule meanwhile: nothing cascades now...
    let deleted = common::text_lines(
        &mut conn,
        "WITH d AS (DELETE FROM conversations WHERE id = (SELECT new_id FROM import_id_map
             WHERE entity = 'conversation' AND old_id = 'c-text') RETURNING 1)
         SELECT count(*)::text AS line FROM d",
    )
    .await;
    assert_eq!(deleted, ["1"]);
    assert_eq!(common::text_lines(&mut conn, orphaned).await, ["2"]);

    // ...so the rebuild does what the cascade would have done, then validates.
    let resumed = import(&file, &db.url, &["--batch-size", "2"]);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_ok(&resumed);
    assert!(
        stderr.contains("warning: 2 rows of `messages` lost their parent"),
        "{stderr}"
    );
    assert_eq!(common::text_lines(&mut conn, orphaned).await, ["0"]);
    assert_eq!(structure(&db).await, migrated);
}

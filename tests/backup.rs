//! `cortex backup`, `cortex backups` and `cortex restore` through the real binary
//! against a real database: write rows, back up, change and delete rows, restore,
//! and find exactly the backed-up rows; a restore without `--yes` and no terminal
//! changes nothing; a failed dump leaves no file behind.

mod common;

use std::path::Path;
use std::process::Output;

use common::TestDb;
use diesel_async::SimpleAsyncConnection;

fn cortex(args: &[&str], url: &str) -> Output {
    common::cortex_command(&[("DATABASE_URL", url)])
        .args(args)
        .output()
        .expect("run cortex")
}

/// Every row of the four tables as text, in a stable order.
async fn rows(db: &TestDb) -> Vec<String> {
    common::text_lines(
        &mut db.conn().await,
        "SELECT line FROM (
           SELECT 'user|' || user_id || '|' || name || '|' || metadata::text AS line FROM users
           UNION ALL SELECT 'workspace|' || id || '|' || name || '|' || owner_id || '|' || metadata::text FROM workspaces
           UNION ALL SELECT 'conversation|' || id || '|' || topic FROM conversations
           UNION ALL SELECT 'message|' || id || '|' || content || '|' || \"timestamp\" FROM messages
         ) t ORDER BY line",
    )
    .await
}

fn dumps(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn backup_then_damage_then_restore_gives_back_exactly_the_backed_up_rows() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let mut conn = db.conn().await;
    conn.batch_execute(
        "INSERT INTO users (user_id, name, metadata) VALUES ('alice', 'Alice', '{\"plan\": \"pro\"}'), ('bob', 'Bob', '{}');
         INSERT INTO workspaces (id, name, owner_id, metadata) VALUES
           ('00000000-0000-0000-0000-0000000000a1', 'Alpha', 'alice', '{\"tier\": \"gold\"}'),
           ('00000000-0000-0000-0000-0000000000b1', 'Beta', 'bob', '{}');
         INSERT INTO conversations (id, workspace_id, topic) VALUES
           ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', 'Kickoff');
         INSERT INTO messages (id, conversation_id, sender_id, content, \"timestamp\") VALUES
           ('00000000-0000-0000-0000-0000000000d1', '00000000-0000-0000-0000-0000000000c1', 'alice', 'Zoë says hi 🚀', '2026-01-02T03:04:05Z');",
    )
    .await
    .unwrap();
    let backed_up = rows(&db).await;

    let out = common::stdout_of_success(&cortex(
        &["backup", "--dir", backups.to_str().unwrap()],
        &db.url,
    ));
    let files = dumps(&backups);
    assert_eq!(files.len(), 1, "{out}");
    let file = &files[0];
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("{}_", db.name)) && name.ends_with(".dump"),
        "{name}"
    );
    assert!(out.contains(&name), "{out}");
    let listed = common::stdout_of_success(&cortex(
        &["backups", "--dir", backups.to_str().unwrap()],
        &db.url,
    ));
    assert!(listed.contains(&name), "{listed}");

    // Damage: change a row, delete rows (with a cascade), add a row.
    conn.batch_execute(
        "UPDATE workspaces SET name = 'Changed' WHERE owner_id = 'alice';
         DELETE FROM workspaces WHERE owner_id = 'bob';
         DELETE FROM messages;
         INSERT INTO users (user_id, name) VALUES ('mallory', 'Mallory');",
    )
    .await
    .unwrap();
    assert_ne!(rows(&db).await, backed_up);
    let damaged = rows(&db).await;

    // No --yes and no terminal: refused, nothing changed.
    let refused = cortex(&["restore", file.to_str().unwrap()], &db.url);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--yes"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(rows(&db).await, damaged);

    drop(conn);
    common::stdout_of_success(&cortex(
        &["restore", file.to_str().unwrap(), "--yes"],
        &db.url,
    ));
    assert_eq!(rows(&db).await, backed_up);
}

#[tokio::test]
async fn a_failed_backup_or_restore_is_one_clear_error_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let unreachable = "postgresql://nobody:secret-password@localhost:1/none?host=/nonexistent";
    let out = cortex(&["backup", "--dir", backups.to_str().unwrap()], unreachable);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("secret-password"), "{stderr}");
    assert!(dumps(&backups).is_empty(), "a partial file was left");

    // Restoring a file that is not a backup changes nothing.
    let db = TestDb::new().await;
    let before = rows(&db).await;
    let bogus = dir.path().join("bogus.dump");
    std::fs::write(&bogus, b"not a dump").unwrap();
    let out = cortex(&["restore", bogus.to_str().unwrap(), "--yes"], &db.url);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pg_restore failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&db).await, before);
}

//! `cortex import-sqlite` throughput: generates a deterministic Phase 4 SQLite file
//! (1,000 users, 10,000 workspaces, 100,000 conversations, 1,000,000 messages),
//! imports it into a fresh database of a private PostgreSQL with the release
//! binary, and prints rows per second and the importer's peak memory; then runs it
//! again (which must change nothing) and times that too. In the same run, when
//! `pgloader` is installed (`apt-get install pgloader`), it copies the same file into
//! another database of the same cluster, for comparison.
//!
//! `cargo bench --bench import_sqlite` (set `IMPORT_BENCH_MESSAGES` for a smaller
//! file, `IMPORT_BENCH_ARGS` for extra importer arguments, e.g. `--mode incremental`,
//! `IMPORT_BENCH_BIN` for another build of `cortex`, e.g. an older commit's).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cortex::db::cluster::{ClusterOptions, EmbeddedCluster};
use cortex::db::connect_once;

const USERS: u64 = 1_000;
const WORKSPACES: u64 = 10_000;
const CONVERSATIONS: u64 = 100_000;
const DATABASE: &str = "cortex_bench_import";
const PGLOADER_DATABASE: &str = "cortex_bench_pgloader";

fn generate(path: &Path, messages: u64) -> rusqlite::Result<()> {
    let tmp = path.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let mut db = rusqlite::Connection::open(&tmp)?;
    db.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE TABLE users (user_id TEXT PRIMARY KEY, name TEXT, email TEXT, metadata TEXT);
         CREATE TABLE workspaces (id INTEGER PRIMARY KEY, name TEXT, description TEXT, owner_id TEXT, metadata TEXT);
         CREATE TABLE conversations (id TEXT PRIMARY KEY, workspace_id INTEGER, topic TEXT, participant_ids TEXT, metadata TEXT);
         CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id TEXT, sender_id TEXT, content TEXT, timestamp TEXT, metadata TEXT);",
    )?;
    let tx = db.transaction()?;
    {
        let mut users = tx.prepare("INSERT INTO users VALUES (?1, ?2, ?3, ?4)")?;
        for u in 1..=USERS {
            users.execute((
                format!("user-{u}"),
                format!("User {u}"),
                format!("user{u}@example.com"),
                format!(r#"{{"plan": "{}"}}"#, ["free", "pro"][(u % 2) as usize]),
            ))?;
        }
        let mut workspaces = tx.prepare("INSERT INTO workspaces VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for w in 1..=WORKSPACES {
            workspaces.execute((
                w as i64,
                format!("Workspace {w}"),
                "generated",
                format!("user-{}", (w - 1) % USERS + 1),
                format!(
                    r#"{{"tier": "{}", "priority": {}}}"#,
                    ["gold", "silver", "bronze"][(w % 3) as usize],
                    w % 5
                ),
            ))?;
        }
        let mut conversations =
            tx.prepare("INSERT INTO conversations VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for c in 1..=CONVERSATIONS {
            let w = (c - 1) % WORKSPACES + 1;
            let owner = (w - 1) % USERS + 1;
            conversations.execute((
                format!("conv-{c}"),
                w as i64,
                format!("Topic {c}"),
                format!(r#"["user-{owner}", "user-{}"]"#, owner % USERS + 1),
                r#"{"channel": "general"}"#,
            ))?;
        }
        let mut insert = tx.prepare("INSERT INTO messages VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        for m in 1..=messages {
            let c = (m - 1) % CONVERSATIONS + 1;
            let w = (c - 1) % WORKSPACES + 1;
            let sender = if m % 2 == 0 {
                (w - 1) % USERS + 1
            } else {
                w % USERS + 1
            };
            insert.execute((
                m as i64,
                format!("conv-{c}"),
                format!("user-{sender}"),
                format!(
                    "Message {m}: the quick brown fox jumps over the lazy dog in conversation {c}."
                ),
                format!(
                    "2025-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                    m % 12 + 1,
                    m % 28 + 1,
                    m % 24,
                    m % 60,
                    (m / 60) % 60
                ),
                format!(r#"{{"seq": {m}}}"#),
            ))?;
        }
    }
    tx.commit()?;
    drop(db);
    std::fs::rename(&tmp, path).expect("rename the generated file");
    Ok(())
}

/// Runs the release importer; returns its stdout, wall time and peak RSS (KiB).
fn import(url: &str, file: &Path) -> (String, f64, i64) {
    let started = Instant::now();
    let extra = std::env::var("IMPORT_BENCH_ARGS").unwrap_or_default();
    // Another build (say, an older commit's, for a before/after) when asked for.
    let binary = std::env::var("IMPORT_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_cortex").to_string());
    let output = Command::new(binary)
        .args(["import-sqlite"])
        .arg(file)
        .args(extra.split_whitespace())
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run cortex import-sqlite");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The largest resident set of any child so far: the importer is the only one.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        seconds,
        usage.ru_maxrss,
    )
}

/// Copies `file` with pgloader (its defaults: create tables, copy, create indexes)
/// into a fresh database of the same cluster; returns the wall time, or `None` when
/// pgloader is not installed.
fn pgloader(admin: &str, url: &str, file: &Path) -> anyhow::Result<Option<f64>> {
    if Command::new("pgloader").arg("--version").output().is_err() {
        return Ok(None);
    }
    recreate_database(admin, PGLOADER_DATABASE)?;
    // pgloader names a Unix socket as `unix:DIR:PORT`.
    let parsed = url::Url::parse(url)?;
    let socket_dir = parsed
        .query_pairs()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.into_owned())
        .expect("the embedded cluster's URL names its socket folder");
    let target = format!(
        "pgsql://{}@unix:{socket_dir}:{}/{PGLOADER_DATABASE}",
        parsed.username(),
        parsed.port().unwrap_or(5432)
    );
    let started = Instant::now();
    let output = Command::new("pgloader")
        .arg(format!("sqlite://{}", file.display()))
        .arg(target)
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        output.status.success(),
        "pgloader failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(Some(seconds))
}

fn recreate_database(admin: &str, name: &str) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        use diesel_async::RunQueryDsl;
        let mut conn = connect_once(admin).await?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        anyhow::Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    let messages: u64 = std::env::var("IMPORT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(root.join("bench-import"))?;
    let file = root.join(format!("bench-import/phase4-{messages}.db"));
    if !file.exists() {
        let started = Instant::now();
        generate(&file, messages)?;
        println!(
            "generated {} in {:.1} s",
            file.display(),
            started.elapsed().as_secs_f64()
        );
    }
    let size = std::fs::metadata(&file)?.len();

    let mut options = ClusterOptions::new(root.join("bench-pg"));
    options.extra_settings = vec!["max_wal_size = '4GB'".into()];
    let cluster = EmbeddedCluster::start(&options)?;
    let admin = cluster.database_url("postgres");
    let url = cluster.database_url(DATABASE);
    recreate_database(&admin, DATABASE)?;

    let rows = USERS + WORKSPACES + CONVERSATIONS + messages;
    println!(
        "source: {USERS} users, {WORKSPACES} workspaces, {CONVERSATIONS} conversations, {messages} messages ({:.0} MiB)\n",
        size as f64 / (1 << 20) as f64
    );
    let (report, seconds, peak_kib) = import(&url, &file);
    println!("first run:\n{report}");
    println!(
        "first run: {seconds:.1} s end to end, {:.0} rows/s, {:.0} messages/s (whole run), peak RSS {:.1} MiB\n",
        rows as f64 / seconds,
        messages as f64 / seconds,
        peak_kib as f64 / 1024.0
    );
    let (report, seconds, _) = import(&url, &file);
    println!("second run (changes nothing):\n{report}");
    println!(
        "second run: {seconds:.1} s, {:.0} rows/s checked",
        rows as f64 / seconds
    );
    match pgloader(&admin, &url, &file)? {
        Some(seconds) => println!(
            "pgloader (same file, same cluster, its defaults): {seconds:.1} s end to end, {:.0} messages/s (whole run)",
            messages as f64 / seconds
        ),
        None => println!("pgloader: not installed (apt-get install pgloader), not compared"),
    }
    cluster.stop()?;
    Ok(())
}

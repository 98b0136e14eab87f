//! The zero-configuration default, through the real binary: `cortex serve` with
//! nothing configured starts its own PostgreSQL, keeps data across a clean stop and
//! across `kill -9` of everything, and stops the cluster when it exits.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cortex::db::cluster::{ClusterOptions, EmbeddedCluster};
use cortex::db::users::{self, NewUser};

struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    // A failed assertion must not leave a server running (it would hold the test's output pipe).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cortex serve` on an ephemeral port with only `CORTEX_DATA_DIR` set.
fn serve(data_dir: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cortex"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CORTEX_DATA_DIR", data_dir)
        .env("PORT", "0")
        .env("RUST_LOG", "warn")
        .current_dir(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn cortex");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("cortex exited before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("Cortex is listening on ") {
            break url.trim().to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Running { child, base }
}

fn health(base: &str) -> u16 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        reqwest::get(format!("{base}/health"))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    })
}

fn interrupt(mut running: Running) {
    unsafe { libc::kill(running.child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            assert!(status.success(), "cortex exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "cortex did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Attaches to the cluster like a second `cortex` process would, and runs `work`.
fn with_cluster<T>(data_dir: &Path, work: impl AsyncFnOnce(&str) -> T) -> T {
    let cluster = EmbeddedCluster::start(&ClusterOptions::new(data_dir)).expect("attach");
    let url = cluster.database_url(cortex::server::EMBEDDED_DATABASE);
    let out = tokio::runtime::Runtime::new().unwrap().block_on(work(&url));
    cluster.stop().expect("leave");
    out
}

fn kept_row_present(data_dir: &Path) -> bool {
    with_cluster(data_dir, async |url| {
        let mut conn = cortex::db::connect_once(url).await.unwrap();
        users::get_by_user_id(&mut conn, "kept")
            .await
            .unwrap()
            .is_some()
    })
}

#[test]
fn serve_runs_its_own_postgres_and_keeps_data_across_restarts_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("state");
    std::fs::create_dir_all(&data_dir).unwrap();

    // First start: initdb, migrate, serve.
    let running = serve(&data_dir);
    assert_eq!(health(&running.base), 200);
    with_cluster(&data_dir, async |url| {
        let mut conn = cortex::db::connect_once(url).await.unwrap();
        let new = NewUser {
            user_id: "kept".into(),
            name: "Kept".into(),
            email: None,
            metadata: serde_json::json!({}),
        };
        users::create(&mut conn, &new).await.unwrap();
    });
    let real_data_dir = std::fs::canonicalize(data_dir.join("pgdata")).unwrap();
    interrupt(running);
    assert!(
        !real_data_dir.join("postmaster.pid").exists(),
        "Ctrl-C stops the embedded PostgreSQL cleanly"
    );

    // Second start: the row is still there.
    let running = serve(&data_dir);
    assert_eq!(health(&running.base), 200);
    assert!(kept_row_present(&data_dir));

    // kill -9 of everything: the server and every PostgreSQL process.
    let pid_text = std::fs::read_to_string(real_data_dir.join("postmaster.pid")).unwrap();
    let postmaster: i32 = pid_text.lines().next().unwrap().trim().parse().unwrap();
    drop(running); // kill -9
    unsafe { libc::kill(postmaster, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{postmaster}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Children notice the postmaster's death and exit; give them a moment.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        real_data_dir.join("postmaster.pid").exists(),
        "a stale postmaster.pid is left behind"
    );

    // Third start recovers from the stale pid file, with the data intact.
    let running = serve(&data_dir);
    assert_eq!(health(&running.base), 200);
    assert!(kept_row_present(&data_dir));
    interrupt(running);
    assert!(!real_data_dir.join("postmaster.pid").exists());
    cleanup_relocated(&real_data_dir, &data_dir);
}

#[test]
fn a_second_process_attaches_and_leaves_the_cluster_to_its_starter() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("state");
    let running = serve_dir(&data_dir);
    let real = std::fs::canonicalize(data_dir.join("pgdata")).unwrap();
    // `cortex migrate` in another terminal attaches, and leaves the cluster running.
    let out = Command::new(env!("CARGO_BIN_EXE_cortex"))
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CORTEX_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    assert_eq!(
        health(&running.base),
        200,
        "the server's database is still up"
    );
    interrupt(running);
    assert!(!real.join("postmaster.pid").exists());
    cleanup_relocated(&real, &data_dir);
}

fn serve_dir(data_dir: &Path) -> Running {
    std::fs::create_dir_all(data_dir).unwrap();
    serve(data_dir)
}

/// A temporary folder is private to root, so the data may have been relocated.
fn cleanup_relocated(real: &Path, data_dir: &Path) {
    if !real.starts_with(data_dir) {
        if let Some(parent) = real.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

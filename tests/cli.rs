//! The command line against a configured server: with `DATABASE_URL` that server is
//! used and nothing is started; bad configuration stops start-up with a clear line.

mod common;

use common::TestDb;

fn cortex(args: &[&str], envs: &[(&str, &str)], dir: &std::path::Path) -> std::process::Output {
    common::cortex_command(envs)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run cortex")
}

#[tokio::test]
async fn migrate_with_database_url_uses_that_server_and_starts_nothing() {
    let db = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    let out = cortex(&["migrate"], &[("DATABASE_URL", &db.url)], dir.path());
    let applied = format!("applied {} migration", common::migration_count());
    assert!(common::stdout_of_success(&out).contains(&applied));
    assert!(
        !dir.path().join(".cortex").exists(),
        "no embedded cluster was started"
    );
    let again = cortex(&["migrate"], &[("DATABASE_URL", &db.url)], dir.path());
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
    let down = cortex(
        &["migrate", "--down"],
        &[("DATABASE_URL", &db.url)],
        dir.path(),
    );
    let reverted = format!("reverted {} migration", common::migration_count());
    assert!(String::from_utf8_lossy(&down.stdout).contains(&reverted));
}

#[tokio::test]
async fn serve_with_database_url_serves_health_without_an_embedded_cluster() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = common::cortex_command(&[("DATABASE_URL", &db.url), ("PORT", "0")]);
    command.current_dir(dir.path());
    let common::Served {
        mut child, base, ..
    } = common::serve_until_listening(command);
    let body: serde_json::Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ok");
    assert!(
        !dir.path().join(".cortex/pgdata").exists(),
        "no embedded cluster was started"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, expected) in [
        ("DB_POOL_SIZE", "many", "integer"),
        ("PORT", "http", "port number"),
        ("DB_ECHO", "perhaps", "true or false"),
        ("DATABASE_URL", "mysql://x/y", "postgres"),
    ] {
        let out = cortex(&["serve"], &[(var, value)], dir.path());
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(var) && stderr.contains(expected),
            "{var}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    }
    assert!(!dir.path().join(".cortex").exists());
}

#[tokio::test]
async fn an_unreachable_database_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = cortex(
        &["migrate"],
        &[
            (
                "DATABASE_URL",
                "postgresql://nobody@localhost/none?host=/nonexistent",
            ),
            ("DB_POOL_TIMEOUT", "2"),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot connect to the database"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_logs_one_json_line_per_operation_with_request_id_and_sql_cost() {
    let db = TestDb::new().await;
    let secret = "log-test-secret-0123456789abcdef";
    let mut command = common::cortex_command(&[
        ("DATABASE_URL", &db.url),
        ("PORT", "0"),
        ("JWT_SECRET", secret),
        ("RUST_LOG", "warn,cortex::request=info"),
        ("LOG_FORMAT", "json"),
    ]);
    command.stderr(std::process::Stdio::piped());
    let common::Served { child, base, .. } = common::serve_until_listening(command);
    let token = cortex::auth::Authenticator::new(secret.as_bytes()).mint("alice", None, None, 60);
    let client = reqwest::Client::new();
    let mut request_ids = Vec::new();
    for (given, body) in [
        (
            Some("client-chosen-id-1"),
            serde_json::json!({"query": "query Mine { workspaces { nodes { conversations { totalCount } } } }", "operationName": "Mine"}),
        ),
        (
            None,
            serde_json::json!({"query": "{ workspace(id: \"00000000-0000-0000-0000-000000000000\") { id } }"}),
        ),
    ] {
        let mut request = client
            .post(format!("{base}/graphql"))
            .bearer_auth(&token)
            .json(&body);
        if let Some(id) = given {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        if let Some(given) = given {
            assert_eq!(id, given, "the client's id is kept");
        } else {
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "a generated id: {id}");
        }
        request_ids.push(id);
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let entries: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v: &serde_json::Value| v["target"] == "cortex::request")
        .collect();
    assert_eq!(entries.len(), 2, "{log}");
    let expected = [("Mine", "OK"), ("-", "NOT_FOUND")];
    for ((entry, (operation, outcome)), id) in entries.iter().zip(expected).zip(&request_ids) {
        assert_eq!(entry["request_id"], id.as_str(), "{entry}");
        assert_eq!(entry["operation"], operation, "{entry}");
        assert_eq!(entry["outcome"], outcome, "{entry}");
        assert_eq!(entry["user"], "alice", "{entry}");
        assert_eq!(entry["statements"], 1, "{entry}");
        assert!(
            entry["db_ms"].is_number() && entry["duration_ms"].is_number(),
            "{entry}"
        );
    }
}

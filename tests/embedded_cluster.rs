//! The zero-configuration default, through the real binary: `cortex serve` with
//! nothing configured starts its own PostgreSQL, keeps data across a clean stop and
//! across `kill -9` of everything, and stops the cluster when it exits.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
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
    let data = data_dir.to_str().expect("a UTF-8 path");
    let mut command = common::cortex_command(&[("CORTEX_DATA_DIR", data), ("PORT", "0")]);
    command
        .arg("serve")
        .current_dir(data_dir)
        .stderr(Stdio::inherit());
    let common::Served { child, base, .. } = common::serve_until_listening(command);
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
    let out = common::cortex_command(&[("CORTEX_DATA_DIR", data_dir.to_str().unwrap())])
        .arg("migrate")
        .output()
        .unwrap();
    assert!(common::stdout_of_success(&out).contains("up to date"));
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

#[test]
fn graphiql_runs_the_nested_example_and_a_live_subscription_with_the_prefilled_token_in_a_headless_browser(
) {
    use fantoccini::Locator;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let running = serve_dir(&data_dir);
    let base = running.base.clone();
    let result = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let browser = common::browser::Browser::start().await?;
        let c = &browser.client;
        c.goto(&format!("{base}/")).await.expect("open GraphiQL");
        // The prefilled example and token: one click on Run.
        let run = c
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(".graphiql-execute-button"))
            .await
            .expect("GraphiQL rendered (its assets come from Cortex itself)");
        run.click().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        // The result pane is a CodeMirror editor that renders only its visible
        // lines: read the whole value through the editor.
        let read_result = "var cm = document.querySelector('.result-window .CodeMirror'); \
             return cm ? cm.CodeMirror.getValue() : '';";
        let text = loop {
            let value = c
                .execute(read_result, vec![])
                .await
                .expect("read the result");
            let text = value.as_str().unwrap_or_default().to_string();
            if text.contains("\"data\"") || text.contains("\"errors\"") {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "no result in GraphiQL after 30 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // A subscription from the playground: over the WebSocket, with the
        // prefilled token; a message sent over HTTP shows up in the result pane.
        let secret = std::fs::read(data_dir.join("jwt_secret")).expect("the local secret");
        let token = cortex::auth::Authenticator::new(&secret).mint(cortex::seed::DEMO_USER, None, None, 600);
        let http = reqwest::Client::new();
        let post = |query: String| {
            let (http, token, base) = (http.clone(), token.clone(), base.clone());
            async move {
                http.post(format!("{base}/graphql"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({"query": query}))
                    .send()
                    .await
                    .unwrap()
                    .json::<serde_json::Value>()
                    .await
                    .unwrap()
            }
        };
        let found = post("{ workspaces(first: 1) { nodes { conversations(first: 1) { nodes { id } } } } }".into()).await;
        let conversation = found["data"]["workspaces"]["nodes"][0]["conversations"]["nodes"][0]["id"]
            .as_str()
            .expect("a demo conversation")
            .to_string();
        let subscription = format!("subscription {{ messageAdded(conversationId: \"{conversation}\") {{ message {{ content sender {{ name }} }} }} }}");
        c.execute(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(arguments[0]); return true;",
            vec![serde_json::Value::from(subscription)],
        )
        .await
        .expect("type the subscription");
        run.click().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sent = post(format!("mutation {{ sendMessage(input: {{conversationId: \"{conversation}\", content: \"live from the test\"}}) {{ id }} }}")).await;
        assert!(sent.get("errors").is_none(), "{sent}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let live = loop {
            let value = c.execute(read_result, vec![]).await.expect("read the result");
            let live = value.as_str().unwrap_or_default().to_string();
            if live.contains("live from the test") || live.contains("\"errors\"") {
                break live;
            }
            assert!(Instant::now() < deadline, "no event in GraphiQL after 30 s:\n{live}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let _ = browser.client.clone().close().await;
        Some((text, live))
    });
    interrupt(running);
    cleanup_relocated(
        &std::fs::canonicalize(&data_dir).unwrap_or(data_dir.clone()),
        &data_dir,
    );
    if let Some((text, live)) = result {
        assert!(
            !live.contains("\"errors\"") && live.contains("Demo User"),
            "GraphiQL's subscription showed:\n{live}"
        );
        assert!(
            !text.contains("\"errors\""),
            "GraphiQL showed errors:\n{text}"
        );
        for expected in ["Product", "Roadmap 2027", "Demo User"] {
            assert!(
                text.contains(expected),
                "{expected} missing from the result:\n{text}"
            );
        }
    }
}

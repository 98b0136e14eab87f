//! One small request must not cost the server more than one request's worth:
//! fragment "bombs" (fragments that each spread the next one twice) are refused
//! in milliseconds, before any SQL and before anything expands them, while
//! `/health` and other clients keep being served; and the CPU budget stops a
//! request whose work multiplies past what the limits foresee.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::bombs::{bomb, chain, inline, plain, with_directive};
use common::{code, graphql_post, statement_meter, statements_run, Api};
use serde_json::{json, Value};

async fn post(client: &reqwest::Client, base: &str, token: &str, query: &str) -> Value {
    client
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn limit(response: &Value) -> &str {
    response["errors"][0]["extensions"]["limit"]
        .as_str()
        .unwrap_or("<none>")
}

/// Polls `/health` until told to stop; returns the slowest answer and how many
/// were not 200.
fn watch_health(base: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(Duration, usize)> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let (mut slowest, mut failed) = (Duration::ZERO, 0);
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let ok = client
                .get(format!("{base}/health"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            slowest = slowest.max(started.elapsed());
            failed += usize::from(!ok);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (slowest, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_bombs_are_refused_in_milliseconds_without_sql_while_others_are_served() {
    let api = Api::new().await;
    api.ok("alice", "{ me { userId } }", json!({})).await; // the caller's row first
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "24 levels",
            bomb("", "Query", 24, plain, "__typename"),
            "selections",
        ),
        (
            "30 levels",
            bomb("", "Query", 30, plain, "__typename"),
            "selections",
        ),
        (
            "64 levels",
            bomb("", "Query", 64, plain, "__typename"),
            "nesting",
        ),
        (
            "through inline fragments",
            bomb("", "Query", 12, inline, "__typename"),
            "selections",
        ),
        (
            "inline fragments, 30 levels",
            bomb("", "Query", 30, inline, "__typename"),
            "nesting",
        ),
        (
            "with directives",
            bomb("", "Query", 24, with_directive, "__typename"),
            "selections",
        ),
        (
            "with a real field",
            bomb("", "Query", 24, plain, "me { userId email }"),
            "selections",
        ),
        (
            "aliased",
            bomb("", "Query", 24, plain, "a: __typename"),
            "selections",
        ),
        (
            "on the mutation root",
            bomb("mutation", "Mutation", 24, plain, "__typename"),
            "selections",
        ),
        (
            "on the subscription root",
            bomb("subscription", "Subscription", 30, plain, "__typename"),
            "selections",
        ),
        ("a chain of 1,100 fragments", chain(1100), "nesting"),
    ];

    // Alone, so that the statement count is theirs: no SQL, and answered fast.
    let mut meter = statement_meter(&api.db).await;
    for (what, query, expected) in &cases {
        let before = statements_run(&mut meter).await;
        let started = Instant::now();
        let response = api.gql("alice", query, json!({})).await;
        let took = started.elapsed();
        let spent = statements_run(&mut meter).await - before;
        assert_eq!(code(&response), "BAD_USER_INPUT", "{what}: {response:#}");
        assert_eq!(limit(&response), *expected, "{what}: {response:#}");
        assert!(response["data"].is_null(), "{what}: {response:#}");
        assert_eq!(spent, 0, "{what}: SQL ran for a refused document");
        // Milliseconds in a release build; a debug build on a busy CI machine
        // gets room, still far from the seconds a single expansion took.
        assert!(took < Duration::from_millis(500), "{what} took {took:?}");
    }
    // A cycle is not a bomb but would not end either: refused as invalid.
    let cycle = "{ ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A ...A }";
    let response = api.gql("alice", cycle, json!({})).await;
    assert_eq!(code(&response), "BAD_USER_INPUT", "{response:#}");
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("Cannot spread fragment"), "{message}");

    // Then all of them, from four clients at once, while `/health` and another
    // client are served.
    let stop = Arc::new(AtomicBool::new(false));
    let health = watch_health(api.http.base.clone(), stop.clone());
    let other = {
        let (base, token, stop) = (api.http.base.clone(), api.token("bob"), stop.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answered = 0;
            while !stop.load(Ordering::Relaxed) {
                let response = post(&client, &base, &token, "{ me { userId } }").await;
                assert_eq!(response["data"]["me"]["userId"], "bob", "{response:#}");
                answered += 1;
            }
            answered
        })
    };
    let queries: Arc<Vec<String>> = Arc::new(cases.into_iter().map(|(_, q, _)| q).collect());
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let (base, token, queries) =
                (api.http.base.clone(), api.token("alice"), queries.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for query in queries.iter().cycle().take(3 * queries.len()) {
                    let response = post(&client, &base, &token, query).await;
                    assert_eq!(code(&response), "BAD_USER_INPUT", "{response:#}");
                }
            })
        })
        .collect();
    for attacker in attackers {
        attacker.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (slowest, failed) = health.await.unwrap();
    assert_eq!(failed, 0, "/health failed while bombs were refused");
    assert!(
        slowest < Duration::from_millis(500),
        "/health took {slowest:?}"
    );
    assert!(other.await.unwrap() > 0, "the other client was served");
    // What fits the limits still runs (a 10-level bomb expands to 3,070).
    let fits = bomb("", "Query", 10, plain, "__typename");
    assert_eq!(
        api.ok("alice", &fits, json!({})).await,
        json!({"__typename": "Query"})
    );
}

#[tokio::test]
async fn the_selection_limit_is_configurable() {
    let api = Api::with_env(&[("QUERY_MAX_SELECTIONS", "100")]).await;
    // `levels` levels expand to 3 × 2^levels − 1 selections.
    let six_levels = bomb("", "Query", 6, plain, "__typename"); // 191
    let response = api.gql("alice", &six_levels, json!({})).await;
    assert_eq!(limit(&response), "selections", "{response:#}");
    let five_levels = bomb("", "Query", 5, plain, "__typename"); // 95
    api.ok("alice", &five_levels, json!({})).await;
}

/// 5 conversations × 100 messages, each message asking for a fragment that
/// expands to 3,070 `__typename`: within every limit (complexity does not count
/// `__typename`), 1.5 million fields to resolve without a single suspension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_its_cpu_budget_is_stopped_with_timeout() {
    let api = Api::with_env(&[("QUERY_CPU_BUDGET_MS", "50")]).await;
    let workspace = api
        .ok(
            "alice",
            r#"mutation { createWorkspace(input: {name: "w"}) { id } }"#,
            json!({}),
        )
        .await["createWorkspace"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..5 {
        api.ok(
            "alice",
            "mutation($w: ID!, $t: String!) { createConversation(input: {workspaceId: $w, topic: $t}) { id } }",
            json!({"w": workspace, "t": format!("c{i}")}),
        )
        .await;
    }
    use diesel_async::RunQueryDsl;
    let mut conn = api.db.conn().await;
    diesel::sql_query(
        "INSERT INTO messages (conversation_id, sender_id, content, \"timestamp\")
         SELECT c.id, 'alice', 'm' || n, now() FROM conversations c, generate_series(1, 100) n",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let typenames = bomb("", "Message", 10, plain, "__typename");
    let fragments = typenames.trim_start().trim_start_matches("{ ...F0 }");
    let query = format!(
        "{{ workspaces {{ nodes {{ conversations {{ nodes {{ messages(first: 100) {{ nodes {{ ...F0 }} }} }} }} }} }} }} {fragments}"
    );
    let token = api.token("alice");
    let started = Instant::now();
    let (status, _, body) = api
        .send(graphql_post(Some(&token), &json!({ "query": query })))
        .await;
    let took = started.elapsed();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body:#}");
    assert_eq!(code(&body), "TIMEOUT", "{body:#}");
    assert_eq!(limit(&body), "cpu", "{body:#}");
    assert!(took < Duration::from_secs(2), "stopped only after {took:?}");

    // The same shape on one message fits the budget; the server serves on.
    let small = query.replace("messages(first: 100)", "messages(first: 1)");
    let small = small.replace("conversations {", "conversations(first: 1) {");
    let data = api.ok("alice", &small, json!({})).await;
    let conversations = &data["workspaces"]["nodes"][0]["conversations"]["nodes"];
    assert_eq!(
        conversations[0]["messages"]["nodes"][0]["__typename"],
        "Message"
    );
    api.ok("alice", "{ me { userId } }", json!({})).await;
}

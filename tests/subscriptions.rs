//! Real time through the public interface: GraphQL subscriptions over a real
//! WebSocket (`graphql-transport-ws`), against real PostgreSQL, on one instance
//! and across two. Covers delivery, resume, every authorization change that
//! must end a subscription, every close code, backpressure and limits, and a
//! PostgreSQL restart under open subscriptions.

mod common;

use std::time::Duration;

use common::ws::{Got, WsClient};
use common::{HttpServer, PrivateCluster, TestDb, SECRET};
use cortex::auth::Authenticator;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// One Cortex instance in this process: its own pool, hub, event listener and
/// HTTP port, over `url`.
struct Instance {
    http: HttpServer,
    state: cortex::AppState,
    stop: CancellationToken,
}

impl Instance {
    async fn start(db: &TestDb, env: &[(&str, &str)]) -> Self {
        Self::start_on(&db.url, db.config_with(env)).await
    }

    async fn start_on(url: &str, config: cortex::config::Config) -> Self {
        let pool = cortex::db::Database::connect(url, &config.pool)
            .await
            .unwrap();
        let state = cortex::AppState::new(pool, config, SECRET);
        let stop = CancellationToken::new();
        cortex::realtime::listener::spawn(&state, url, stop.clone());
        assert!(state.realtime.hub.ready(Duration::from_secs(10)).await);
        Self {
            http: HttpServer::start(state.clone()).await,
            state,
            stop,
        }
    }

    fn base(&self) -> &str {
        &self.http.base
    }

    /// Waits until exactly `n` subscriptions are registered with the hub (then
    /// every later event reaches them).
    async fn until_open(&self, n: usize) {
        let hub = &self.state.realtime.hub;
        let deadline = std::time::Instant::now() + common::ws::WAIT;
        while hub.open() != n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} open, not {n}",
                hub.open()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The metrics token of the `cortex serve` processes these tests start.
const METRICS_TOKEN: &str = "subscriptions-test-metrics";

/// A `cortex serve` process on `db`, with the tests' secret and metrics token.
fn serve(db: &TestDb) -> common::Served {
    let secret = std::str::from_utf8(SECRET).unwrap();
    common::serve_until_listening(common::cortex_command(&[
        ("DATABASE_URL", db.url.as_str()),
        ("JWT_SECRET", secret),
        ("PORT", "0"),
        ("METRICS_TOKEN", METRICS_TOKEN),
    ]))
}

/// Waits until the `cortex serve` at `base` reports `n` open subscriptions.
async fn until_open_at(base: &str, n: usize) {
    let deadline = std::time::Instant::now() + common::ws::WAIT;
    let wanted = format!("cortex_subscriptions_open {n}");
    loop {
        let text = common::metrics_text(base, METRICS_TOKEN).await;
        if text.lines().any(|l| l.trim() == wanted) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not {wanted}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn token(user: &str) -> String {
    Authenticator::new(SECRET).mint(user, Some(&format!("{user} name")), None, 3600)
}

/// Runs `query` as `user` over HTTP against `base`; returns `data`, failing on errors.
async fn ok(base: &str, user: &str, query: &str, variables: Value) -> Value {
    let response = post(base, user, query, variables).await;
    assert!(response.get("errors").is_none(), "{response}");
    response["data"].clone()
}

/// Runs `query` as `user` over HTTP against `base`; the whole response.
async fn post(base: &str, user: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token(user))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
}

/// A workspace of `owner` with one conversation that `participants` take part in.
async fn conversation(base: &str, owner: &str, participants: &[&str]) -> (String, String) {
    let data = ok(
        base,
        owner,
        "mutation($p: [String!]!) { createWorkspaceWithConversation(workspace: {name: \"w\"}, conversation: {topic: \"t\", participantIds: $p}) { workspace { id } conversation { id } } }",
        json!({"p": participants}),
    )
    .await;
    let made = &data["createWorkspaceWithConversation"];
    (
        made["workspace"]["id"].as_str().unwrap().to_string(),
        made["conversation"]["id"].as_str().unwrap().to_string(),
    )
}

/// Makes sure `user`'s row exists (a first request creates it).
async fn known(base: &str, user: &str) {
    ok(base, user, "{ me { userId } }", json!({})).await;
}

const SEND: &str = "mutation($c: ID!, $t: String!) { sendMessage(input: {conversationId: $c, content: $t}) { id } }";

async fn send(base: &str, user: &str, conversation: &str, content: &str) -> String {
    let data = ok(base, user, SEND, json!({"c": conversation, "t": content})).await;
    data["sendMessage"]["id"].as_str().unwrap().to_string()
}

const MESSAGES_OF_CONVERSATION: &str = "subscription($c: ID, $after: String) { messageAdded(conversationId: $c, after: $after) { cursor message { id content senderId sender { name } conversation { topic } } } }";
const MESSAGES_OF_WORKSPACE: &str =
    "subscription($w: ID) { messageAdded(workspaceId: $w) { cursor message { content } } }";
const CONVERSATIONS_OF_WORKSPACE: &str = "subscription($w: ID!) { conversationChanged(workspaceId: $w) { cursor change conversationId conversation { topic } } }";

fn content(payload: &Value) -> &str {
    payload["data"]["messageAdded"]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {payload}"))
}

/// The `error` message that ends operation `id`; its first error's code.
async fn ended_with(client: &mut WsClient, id: &str) -> String {
    let m = client.message().await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str()),
        (Some("error"), Some(id)),
        "{m}"
    );
    m["payload"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in {m}"))
        .to_string()
}

// --- Delivery ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_over_http_arrives_as_the_same_message_object_with_its_nested_fields() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let (_, conv) = conversation(one.base(), "alice", &["bob"]).await;
    let mut bob = WsClient::ready(one.base(), &token("bob")).await;
    bob.subscribe("1", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    // No message says a subscription is live: the hub's count does.
    one.until_open(1).await;
    let id = send(one.base(), "alice", &conv, "hello").await;
    let payload = bob.next_of("1").await;
    let event = &payload["data"]["messageAdded"];
    assert_eq!(event["message"]["id"], json!(id));
    assert_eq!(event["message"]["content"], "hello");
    assert_eq!(event["message"]["senderId"], "alice");
    assert_eq!(event["message"]["sender"]["name"], "alice name");
    assert_eq!(event["message"]["conversation"]["topic"], "t");
    assert!(event["cursor"].is_string());
    // `complete` from the client stops it: nothing more arrives.
    bob.send(json!({"type": "complete", "id": "1"})).await;
    one.until_open(0).await;
    send(one.base(), "alice", &conv, "after complete").await;
    assert!(bob.quiet_for(Duration::from_millis(700)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_written_through_one_instance_reaches_subscribers_on_another_process() {
    let db = TestDb::new().await;
    let mut a = serve(&db);
    let mut b = serve(&db);
    let (ws, conv) = conversation(&a.base, "alice", &["bob"]).await;
    let mut on_b = WsClient::ready(&b.base, &token("alice")).await;
    on_b.subscribe("m", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    on_b.subscribe("w", MESSAGES_OF_WORKSPACE, json!({"w": ws}))
        .await;
    on_b.subscribe("c", CONVERSATIONS_OF_WORKSPACE, json!({"w": ws}))
        .await;
    until_open_at(&b.base, 3).await;
    send(&a.base, "bob", &conv, "from a").await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = on_b.message().await;
        got.push((
            m["id"].as_str().unwrap().to_string(),
            content(&m["payload"]).to_string(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("m".to_string(), "from a".to_string()),
            ("w".into(), "from a".into())
        ]
    );
    ok(
        &a.base,
        "alice",
        "mutation($w: ID!) { createConversation(input: {workspaceId: $w, topic: \"second\"}) { id } }",
        json!({"w": ws}),
    )
    .await;
    let change = on_b.next_of("c").await;
    assert_eq!(change["data"]["conversationChanged"]["change"], "CREATED");
    assert_eq!(
        change["data"]["conversationChanged"]["conversation"]["topic"],
        "second"
    );
    for served in [&mut a, &mut b] {
        served.child.kill().unwrap();
        served.child.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_subscribed_to_a_workspace_gets_only_the_conversations_they_read() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let (ws, theirs) = conversation(one.base(), "alice", &["bob"]).await;
    let other = ok(
        one.base(),
        "alice",
        "mutation($w: ID!) { createConversation(input: {workspaceId: $w, topic: \"private\"}) { id } }",
        json!({"w": ws}),
    )
    .await["createConversation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bob = WsClient::ready(one.base(), &token("bob")).await;
    bob.subscribe("w", MESSAGES_OF_WORKSPACE, json!({"w": ws}))
        .await;
    one.until_open(1).await;
    send(one.base(), "alice", &other, "not for bob").await;
    send(one.base(), "alice", &theirs, "for bob").await;
    assert_eq!(content(&bob.next_of("w").await), "for bob");
    assert!(bob.quiet_for(Duration::from_millis(500)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_and_mutations_also_run_over_the_socket_and_complete() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let mut alice = WsClient::ready(one.base(), &token("alice")).await;
    alice.subscribe("q", "{ me { userId } }", json!({})).await;
    assert_eq!(alice.next_of("q").await["data"]["me"]["userId"], "alice");
    assert_eq!(
        alice.message().await,
        json!({"type": "complete", "id": "q"})
    );
    // The same request limits as over HTTP.
    let eleven_deep = "{ workspaces { nodes { conversations { nodes { messages { nodes { conversation { workspace { conversations { nodes { id } } } } } } } } } } }";
    alice.subscribe("d", eleven_deep, json!({})).await;
    assert_eq!(ended_with(&mut alice, "d").await, "BAD_USER_INPUT");
}

// --- Resume -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_a_dropped_socket_delivers_exactly_the_missed_events_in_order() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let (_, conv) = conversation(one.base(), "alice", &[]).await;
    let mut first = WsClient::ready(one.base(), &token("alice")).await;
    first
        .subscribe("1", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    one.until_open(1).await;
    send(one.base(), "alice", &conv, "seen").await;
    let seen = first.next_of("1").await;
    let cursor = seen["data"]["messageAdded"]["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    drop(first);
    for n in 1..=3 {
        send(one.base(), "alice", &conv, &format!("missed {n}")).await;
    }
    let mut again = WsClient::ready(one.base(), &token("alice")).await;
    again
        .subscribe(
            "1",
            MESSAGES_OF_CONVERSATION,
            json!({"c": conv, "after": cursor}),
        )
        .await;
    for n in 1..=3 {
        assert_eq!(content(&again.next_of("1").await), format!("missed {n}"));
    }
    send(one.base(), "alice", &conv, "live").await;
    assert_eq!(content(&again.next_of("1").await), "live");
    assert!(again.quiet_for(Duration::from_millis(500)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_cursor_that_is_not_ours_or_is_past_retention_is_refused() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let (_, conv) = conversation(one.base(), "alice", &[]).await;
    let mut alice = WsClient::ready(one.base(), &token("alice")).await;
    alice
        .subscribe(
            "1",
            MESSAGES_OF_CONVERSATION,
            json!({"c": conv, "after": "garbage"}),
        )
        .await;
    assert_eq!(ended_with(&mut alice, "1").await, "BAD_USER_INPUT");
    // Events before the pruned horizon are gone: the client must refetch.
    let mut conn = db.conn().await;
    diesel::sql_query("UPDATE events_pruned SET txid = 1000000000000, id = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    let old = cortex::realtime::encode_cursor(cortex::db::events::EventCursor { txid: 5, id: 5 });
    alice
        .subscribe(
            "2",
            MESSAGES_OF_CONVERSATION,
            json!({"c": conv, "after": old}),
        )
        .await;
    assert_eq!(ended_with(&mut alice, "2").await, "CURSOR_EXPIRED");
}

async fn message_events(conn: &mut diesel_async::AsyncPgConnection) -> Vec<String> {
    common::text_lines(
        conn,
        "SELECT count(*)::text AS line FROM events WHERE kind = 'message_added'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_retention_are_pruned_and_the_horizon_moves_with_them() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let (_, conv) = conversation(one.base(), "alice", &[]).await;
    for n in 0..3 {
        send(one.base(), "alice", &conv, &format!("m{n}")).await;
    }
    let mut conn = db.conn().await;
    // The first two events are two hours old; the third is fresh.
    diesel::sql_query(
        "UPDATE events SET created_at = now() - interval '2 hours'
         WHERE (txid, id) IN (SELECT txid, id FROM events WHERE kind = 'message_added' ORDER BY txid, id LIMIT 2)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(message_events(&mut conn).await, ["3"]);
    let pruned = cortex::db::events::prune(&mut conn, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(pruned >= 2, "{pruned}");
    assert_eq!(message_events(&mut conn).await, ["1"]);
    let horizon = cortex::db::events::pruned_through(&mut conn).await.unwrap();
    let oldest_left = common::text_lines(
        &mut conn,
        "SELECT txid || ':' || id AS line FROM events WHERE kind = 'message_added' ORDER BY txid, id LIMIT 1",
    )
    .await;
    let (txid, id) = oldest_left[0].split_once(':').unwrap();
    let oldest = cortex::db::events::EventCursor {
        txid: txid.parse().unwrap(),
        id: id.parse().unwrap(),
    };
    assert!(horizon < oldest, "{horizon:?} {oldest:?}");
    assert!(horizon > cortex::db::events::EventCursor::default());
    // Pruning again moves nothing back.
    cortex::db::events::prune(&mut conn, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        cortex::db::events::pruned_through(&mut conn).await.unwrap(),
        horizon
    );
}

// --- Authorization ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_subscribes_to_what_they_may_not_read() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let (ws, conv) = conversation(one.base(), "alice", &["bob"]).await;
    let mut mallory = WsClient::ready(one.base(), &token("mallory")).await;
    mallory
        .subscribe("1", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    assert_eq!(ended_with(&mut mallory, "1").await, "FORBIDDEN");
    mallory
        .subscribe("2", MESSAGES_OF_WORKSPACE, json!({"w": ws}))
        .await;
    assert_eq!(ended_with(&mut mallory, "2").await, "FORBIDDEN");
    // A participant reads the conversation, not the workspace's list of them.
    let mut bob = WsClient::ready(one.base(), &token("bob")).await;
    bob.subscribe("3", CONVERSATIONS_OF_WORKSPACE, json!({"w": ws}))
        .await;
    assert_eq!(ended_with(&mut bob, "3").await, "FORBIDDEN");
    mallory
        .subscribe(
            "4",
            MESSAGES_OF_CONVERSATION,
            json!({"c": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(ended_with(&mut mallory, "4").await, "NOT_FOUND");
    // And nothing of alice's conversation reaches mallory's socket.
    send(one.base(), "alice", &conv, "secret").await;
    assert!(mallory.quiet_for(Duration::from_millis(500)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_removed_gets_no_more_events_and_the_subscription_ends() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let (_, conv) = conversation(one.base(), "alice", &["bob"]).await;
    let mut bob = WsClient::ready(one.base(), &token("bob")).await;
    bob.subscribe("1", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    one.until_open(1).await;
    ok(
        one.base(),
        "alice",
        "mutation($c: ID!) { updateConversation(id: $c, input: {participantIds: []}) { id } }",
        json!({"c": conv}),
    )
    .await;
    send(one.base(), "alice", &conv, "after bob left").await;
    assert_eq!(ended_with(&mut bob, "1").await, "FORBIDDEN");
    assert!(bob.quiet_for(Duration::from_millis(500)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_workspace_ends_every_subscription_into_it() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let (ws, conv) = conversation(one.base(), "alice", &["bob"]).await;
    let mut alice = WsClient::ready(one.base(), &token("alice")).await;
    alice
        .subscribe("c", CONVERSATIONS_OF_WORKSPACE, json!({"w": ws}))
        .await;
    alice
        .subscribe("w", MESSAGES_OF_WORKSPACE, json!({"w": ws}))
        .await;
    let mut bob = WsClient::ready(one.base(), &token("bob")).await;
    bob.subscribe("m", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    one.until_open(3).await;
    ok(
        one.base(),
        "alice",
        "mutation($w: ID!) { deleteWorkspace(id: $w) }",
        json!({"w": ws}),
    )
    .await;
    assert_eq!(ended_with(&mut bob, "m").await, "NOT_FOUND");
    let mut ended = vec![];
    for _ in 0..2 {
        let m = alice.message().await;
        assert_eq!(m["type"], "error", "{m}");
        ended.push((
            m["id"].as_str().unwrap().to_string(),
            m["payload"][0]["extensions"]["code"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }
    ended.sort();
    assert_eq!(
        ended,
        [
            ("c".to_string(), "NOT_FOUND".to_string()),
            ("w".into(), "NOT_FOUND".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_user_is_cut_off_at_once() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let (_, conv) = conversation(one.base(), "alice", &["bob"]).await;
    known(one.base(), "bob").await;
    let mut bob = WsClient::ready(one.base(), &token("bob")).await;
    bob.subscribe("1", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    one.until_open(1).await;
    let mut conn = db.conn().await;
    diesel::sql_query("UPDATE users SET is_active = false WHERE user_id = 'bob'")
        .execute(&mut conn)
        .await
        .unwrap();
    // No message needed: the deactivation is an event of its own.
    assert_eq!(ended_with(&mut bob, "1").await, "UNAUTHENTICATED");
    // And a new socket is refused at once (the instance forgot its cached caller).
    let mut again = WsClient::connect(one.base(), Some("graphql-transport-ws")).await;
    again
        .send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", token("bob"))}}))
        .await;
    assert_eq!(again.closed().await.0, 4403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_when_its_token_expires() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[]).await;
    let (_, conv) = conversation(one.base(), "alice", &[]).await;
    let short = Authenticator::new(SECRET).mint("alice", None, None, 2);
    let mut alice = WsClient::ready(one.base(), &short).await;
    alice
        .subscribe("1", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    let started = std::time::Instant::now();
    assert_eq!(ended_with(&mut alice, "1").await, "UNAUTHENTICATED");
    assert!(started.elapsed() < Duration::from_secs(5));
}

// --- The protocol's close codes ---------------------------------------------------

async fn raw(base: &str) -> WsClient {
    WsClient::connect(base, Some("graphql-transport-ws")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_violation_closes_with_its_code() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[("SUBSCRIPTION_INIT_TIMEOUT", "1")]).await;
    let base = one.base();
    let init = |t: &str| json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {t}")}});

    // 4408: no connection_init in time.
    let mut c = raw(base).await;
    let started = std::time::Instant::now();
    assert_eq!(c.closed().await.0, 4408);
    assert!(started.elapsed() < Duration::from_secs(3));

    // 4401: subscribe before the ack.
    let mut c = raw(base).await;
    c.subscribe("1", "{ me { userId } }", json!({})).await;
    assert_eq!(c.closed().await.0, 4401);

    // 4403: a bad token, a missing one, an expired one.
    for payload in [
        init("not-a-token"),
        json!({"type": "connection_init", "payload": {}}),
        init(&Authenticator::new(SECRET).mint("alice", None, None, -60)),
        init(
            &Authenticator::new(b"another-secret-another-secret-xx").mint("alice", None, None, 60),
        ),
    ] {
        let mut c = raw(base).await;
        c.send(payload).await;
        let (code, reason) = c.closed().await;
        assert_eq!(code, 4403, "{reason}");
        assert!(reason.starts_with("Forbidden"), "{reason}");
    }

    // 4429: a second connection_init.
    let mut c = WsClient::ready(base, &token("alice")).await;
    c.send(init(&token("alice"))).await;
    assert_eq!(c.closed().await.0, 4429);

    // 4409: a subscribe whose id is in use.
    let (_, conv) = conversation(base, "alice", &[]).await;
    let mut c = WsClient::ready(base, &token("alice")).await;
    c.subscribe("same", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    c.subscribe("same", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    assert_eq!(c.closed().await.0, 4409);

    // 4400: not the protocol's messages.
    for text in [
        "not json",
        r#"{"type":"subscribe"}"#,
        r#"{"type":"nonsense"}"#,
    ] {
        let mut c = WsClient::ready(base, &token("alice")).await;
        c.send_text(text.to_string()).await;
        assert_eq!(c.closed().await.0, 4400, "{text}");
    }

    // 4406: no graphql-transport-ws subprotocol.
    let mut c = WsClient::connect(base, None).await;
    assert_eq!(c.closed().await.0, 4406);

    // ping → pong, with its payload.
    let mut c = WsClient::ready(base, &token("alice")).await;
    c.send(json!({"type": "ping", "payload": {"n": 1}})).await;
    assert_eq!(
        c.message().await,
        json!({"type": "pong", "payload": {"n": 1}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_pings_an_idle_socket() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[("SUBSCRIPTION_KEEPALIVE", "1")]).await;
    let mut c = WsClient::ready(one.base(), &token("alice")).await;
    let _ = c.quiet_for(Duration::from_millis(2500)).await;
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.message().await["type"], "pong");
    assert!(c.pings >= 2, "pings: {}", c.pings);
}

// --- Backpressure and limits ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_is_closed_with_1013_and_resumes_without_loss() {
    let db = TestDb::new().await;
    let one = Instance::start(&db, &[("SUBSCRIPTION_BUFFER", "4")]).await;
    let (_, conv) = conversation(one.base(), "alice", &[]).await;
    let mut alice = WsClient::ready(one.base(), &token("alice")).await;
    alice
        .subscribe("1", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    one.until_open(1).await;
    // 50 messages in one statement: 50 events at once, far past a buffer of 4.
    let mut conn = db.conn().await;
    diesel::sql_query(
        "INSERT INTO messages (conversation_id, sender_id, content)
         SELECT $1::uuid, 'alice', 'bulk ' || lpad(n::text, 2, '0') FROM generate_series(1, 50) n",
    )
    .bind::<diesel::sql_types::Text, _>(&conv)
    .execute(&mut conn)
    .await
    .unwrap();
    let mut received = Vec::new();
    let mut last_cursor = None;
    let (code, reason) = loop {
        match alice.recv().await {
            Got::Message(m) if m["type"] == "next" => {
                received.push(content(&m["payload"]).to_string());
                last_cursor = m["payload"]["data"]["messageAdded"]["cursor"]
                    .as_str()
                    .map(str::to_string);
            }
            Got::Message(m) => assert_eq!(m["type"], "error", "{m}"),
            Got::Closed(code, reason) => break (code, reason),
        }
    };
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("after"), "{reason}");
    assert!(received.len() < 50, "{}", received.len());
    // Resuming from the last event received gets the rest, in order.
    let mut again = WsClient::ready(one.base(), &token("alice")).await;
    again
        .subscribe(
            "1",
            MESSAGES_OF_CONVERSATION,
            json!({"c": conv, "after": last_cursor}),
        )
        .await;
    while received.len() < 50 {
        received.push(content(&again.next_of("1").await).to_string());
    }
    let expected: Vec<String> = (1..=50).map(|n| format!("bulk {n:02}")).collect();
    assert_eq!(received, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_bounded_per_connection_and_per_instance() {
    let db = TestDb::new().await;
    let one = Instance::start(
        &db,
        &[
            ("SUBSCRIPTION_MAX_PER_CONNECTION", "2"),
            ("SUBSCRIPTION_MAX_PER_INSTANCE", "3"),
        ],
    )
    .await;
    let (_, conv) = conversation(one.base(), "alice", &[]).await;
    let vars = json!({"c": conv});
    let mut first = WsClient::ready(one.base(), &token("alice")).await;
    first
        .subscribe("1", MESSAGES_OF_CONVERSATION, vars.clone())
        .await;
    first
        .subscribe("2", MESSAGES_OF_CONVERSATION, vars.clone())
        .await;
    first
        .subscribe("3", MESSAGES_OF_CONVERSATION, vars.clone())
        .await;
    assert_eq!(ended_with(&mut first, "3").await, "LIMIT_EXCEEDED");
    let mut second = WsClient::ready(one.base(), &token("alice")).await;
    second
        .subscribe("1", MESSAGES_OF_CONVERSATION, vars.clone())
        .await;
    second
        .subscribe("2", MESSAGES_OF_CONVERSATION, vars.clone())
        .await;
    assert_eq!(ended_with(&mut second, "2").await, "LIMIT_EXCEEDED");
    // Completing one frees its place.
    first.send(json!({"type": "complete", "id": "1"})).await;
    one.until_open(2).await;
    second
        .subscribe("3", MESSAGES_OF_CONVERSATION, vars.clone())
        .await;
    one.until_open(3).await;
    send(one.base(), "alice", &conv, "counted").await;
    // Both of the second socket's subscriptions get it, in either order.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let m = second.message().await;
        assert_eq!(content(&m["payload"]), "counted", "{m}");
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    assert_eq!(ids, ["1", "3"]);
}

// --- Faults -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_survive_a_postgresql_restart_without_losing_events() {
    let private = PrivateCluster::new("realtime-restart-pg", &[]);
    let cluster = private.start().await;
    let url = PrivateCluster::fresh_database(&cluster, "cortex_realtime").await;
    let config = cortex::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "DB_POOL_TIMEOUT" => Some("2".into()),
        _ => None,
    })
    .unwrap();
    let one = Instance::start_on(&url, config).await;
    let (_, conv) = conversation(one.base(), "alice", &[]).await;
    let mut alice = WsClient::ready(one.base(), &token("alice")).await;
    alice
        .subscribe("1", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    one.until_open(1).await;
    send(one.base(), "alice", &conv, "before").await;
    assert_eq!(content(&alice.next_of("1").await), "before");

    PrivateCluster::stop(cluster).await;
    let mut connected = one.state.realtime.hub.connected();
    tokio::time::timeout(Duration::from_secs(10), connected.wait_for(|up| !*up))
        .await
        .expect("the listener notices")
        .unwrap();
    let cluster = private.start().await;
    // Written at once, before the listener is back: read from the table when it is.
    let mut sent = Vec::new();
    for n in 1..=3 {
        let text = format!("after {n}");
        let mut tries = 0;
        loop {
            let response = post(one.base(), "alice", SEND, json!({"c": conv, "t": text})).await;
            if response.get("errors").is_none() {
                break;
            }
            tries += 1;
            assert!(tries < 50, "{response}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sent.push(text);
    }
    for text in &sent {
        assert_eq!(content(&alice.next_of("1").await), text);
    }
    drop(one);
    PrivateCluster::stop(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_closes_its_sockets_with_1001() {
    let db = TestDb::new().await;
    let mut served = serve(&db);
    let (_, conv) = conversation(&served.base, "alice", &[]).await;
    let mut alice = WsClient::ready(&served.base, &token("alice")).await;
    alice
        .subscribe("1", MESSAGES_OF_CONVERSATION, json!({"c": conv}))
        .await;
    until_open_at(&served.base, 1).await;
    unsafe { libc::kill(served.child.id() as i32, libc::SIGTERM) };
    let mut saw_complete = false;
    let code = loop {
        match alice.recv().await {
            Got::Message(m) => saw_complete |= m == json!({"type": "complete", "id": "1"}),
            Got::Closed(code, _) => break code,
        }
    };
    assert_eq!(code, 1001);
    assert!(saw_complete);
    let status = served.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

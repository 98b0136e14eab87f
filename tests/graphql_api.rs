//! The GraphQL API over real HTTP (the router on a loopback port) against a real database: queries,
//! mutations, error codes, the authorization matrix, pagination, filters, the SQL
//! statement counts, the playground and the schema snapshot.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{code, statement_meter, statements_run, Api};
use cortex::auth::Authenticator;
use serde_json::{json, Value};

const CREATE_WS: &str = "mutation($name: String!, $m: JSON) { createWorkspace(input: {name: $name, metadata: $m}) { id name ownerId } }";
const CREATE_CONV: &str =
    "mutation($w: ID!, $t: String!) { createConversation(input: {workspaceId: $w, topic: $t, participantIds: [\"carol\"]}) { id participantIds } }";
const SEND: &str = "mutation($c: ID!, $text: String!) { sendMessage(input: {conversationId: $c, content: $text}) { id senderId content } }";

/// alice owns a workspace with a conversation (carol takes part) and a message; bob owns nothing yet.
async fn alice_world(api: &Api) -> (String, String, String) {
    let ws = api
        .ok(
            "alice",
            CREATE_WS,
            json!({"name": "Alice's", "m": {"tier": "gold"}}),
        )
        .await;
    let ws_id = ws["createWorkspace"]["id"].as_str().unwrap().to_string();
    let conv = api
        .ok("alice", CREATE_CONV, json!({"w": ws_id, "t": "Plans"}))
        .await;
    let conv_id = conv["createConversation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let msg = api
        .ok(
            "alice",
            SEND,
            json!({"c": conv_id, "text": "secret migration plans"}),
        )
        .await;
    let msg_id = msg["sendMessage"]["id"].as_str().unwrap().to_string();
    (ws_id, conv_id, msg_id)
}

#[tokio::test]
async fn schema_graphql_matches_the_running_schema() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert!(
        committed == cortex::graphql::sdl(),
        "schema.graphql is out of date: refresh it with `cargo run -- print-schema > schema.graphql`"
    );
}

#[tokio::test]
async fn the_first_request_of_a_new_user_creates_their_row_and_me_returns_it() {
    let api = Api::new().await;
    let data = api
        .ok(
            "carol",
            "{ me { userId name isActive metadata } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["me"],
        json!({"userId": "carol", "name": "carol name", "isActive": true, "metadata": {}})
    );
}

#[tokio::test]
async fn missing_bad_expired_and_unsigned_tokens_are_unauthenticated() {
    let api = Api::new().await;
    let (_, r) = api.raw(None, json!({"query": "{ me { id } }"})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED");
    let expired = api.auth.mint("alice", None, None, -3600);
    let forged =
        Authenticator::new(b"someone-else-entirely-0123456789").mint("alice", None, None, 3600);
    for token in [
        expired.as_str(),
        forged.as_str(),
        "not-a-jwt",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.",
    ] {
        let (status, r) = api
            .raw(Some(token), json!({"query": "{ me { id } }"}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(code(&r), "UNAUTHENTICATED", "{token}");
    }
}

#[tokio::test]
async fn a_deactivated_user_is_refused() {
    let api = Api::new().await;
    let mut conn = api.db.conn().await;
    let new = cortex::db::users::NewUser {
        user_id: "gone".into(),
        name: "Gone".into(),
        email: None,
        metadata: json!({}),
    };
    let user = cortex::db::users::create(&mut conn, &new).await.unwrap();
    let changes = cortex::db::users::UserChanges {
        is_active: Some(false),
        ..Default::default()
    };
    cortex::db::users::update(&mut conn, user.id, &changes)
        .await
        .unwrap();
    let (status, r) = api
        .raw(Some(&api.token("gone")), json!({"query": "{ me { id } }"}))
        .await;
    assert_eq!(
        (status, code(&r)),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
}

#[tokio::test]
async fn another_owners_rows_are_forbidden_on_every_read_path() {
    let api = Api::new().await;
    let (ws, conv, msg) = alice_world(&api).await;
    for (query, id) in [
        ("query($id: ID!) { workspace(id: $id) { name } }", &ws),
        ("query($id: ID!) { conversation(id: $id) { topic } }", &conv),
        ("query($id: ID!) { message(id: $id) { content } }", &msg),
    ] {
        let r = api.gql("bob", query, json!({"id": id})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{query}");
        assert!(r["data"].is_null(), "{r}");
        let missing = api
            .gql("bob", query, json!({"id": uuid::Uuid::new_v4()}))
            .await;
        assert_eq!(code(&missing), "NOT_FOUND", "{query}");
    }
    let data = api
        .ok(
            "bob",
            "{ workspaces(first: 10) { totalCount nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["workspaces"], json!({"totalCount": 0, "nodes": []}));
    let hits = api
        .ok(
            "bob",
            "{ searchMessages(query: \"migration\") { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(hits["searchMessages"]["edges"], json!([]));
    let scoped = api.gql("bob", "query($w: ID!) { searchMessages(query: \"migration\", workspaceId: $w) { edges { rank } } }", json!({"w": ws})).await;
    assert_eq!(code(&scoped), "FORBIDDEN");
    let scoped = api.gql("bob", "query($c: ID!) { searchMessages(query: \"migration\", conversationId: $c) { edges { rank } } }", json!({"c": conv})).await;
    assert_eq!(code(&scoped), "FORBIDDEN");
    // Alice herself sees everything.
    let own = api
        .ok(
            "alice",
            "{ searchMessages(query: \"migration\") { edges { node { id } headline } } }",
            json!({}),
        )
        .await;
    assert_eq!(own["searchMessages"]["edges"][0]["node"]["id"], json!(msg));
}

#[tokio::test]
async fn nested_fields_never_reach_another_owners_rows() {
    let api = Api::new().await;
    let (_, alice_conv, _) = alice_world(&api).await;
    // Bob's own world, with a conversation he names alice as participant in.
    let ws =
        api.ok("bob", CREATE_WS, json!({"name": "Bob's"})).await["createWorkspace"]["id"].clone();
    let conv = api
        .ok("bob", CREATE_CONV, json!({"w": ws, "t": "Mine"}))
        .await["createConversation"]["id"]
        .clone();
    api.ok("bob", SEND, json!({"c": conv, "text": "hello"}))
        .await;
    let data = api
        .ok(
            "bob",
            "{ workspaces(first: 10) { nodes { name conversations(first: 10) { totalCount nodes { id messages(last: 5) { totalCount nodes { content conversation { id workspace { name } } } } } } } } }",
            json!({}),
        )
        .await;
    let text = data.to_string();
    assert!(
        !text.contains("secret") && !text.contains(&alice_conv),
        "{text}"
    );
    assert_eq!(
        data["workspaces"]["nodes"][0]["conversations"]["nodes"][0]["messages"]["totalCount"],
        1
    );
}

#[tokio::test]
async fn another_owners_rows_cannot_be_changed_by_any_mutation() {
    let api = Api::new().await;
    let (ws, conv, msg) = alice_world(&api).await;
    let attempts = [
        ("mutation($id: ID!) { updateWorkspace(id: $id, input: {name: \"pwned\"}) { id } }", json!({"id": ws})),
        ("mutation($id: ID!) { deleteWorkspace(id: $id) }", json!({"id": ws})),
        ("mutation($id: ID!) { createConversation(input: {workspaceId: $id, topic: \"x\"}) { id } }", json!({"id": ws})),
        ("mutation($id: ID!) { updateConversation(id: $id, input: {topic: \"pwned\"}) { id } }", json!({"id": conv})),
        ("mutation($id: ID!) { deleteConversation(id: $id) }", json!({"id": conv})),
        ("mutation($id: ID!) { sendMessage(input: {conversationId: $id, content: \"x\"}) { id } }", json!({"id": conv})),
        ("mutation($id: ID!) { updateMessage(id: $id, input: {content: \"pwned\"}) { id } }", json!({"id": msg})),
        ("mutation($id: ID!) { deleteMessage(id: $id) }", json!({"id": msg})),
    ];
    for (query, vars) in attempts {
        let r = api.gql("bob", query, vars).await;
        assert_eq!(code(&r), "FORBIDDEN", "{query}: {r}");
    }
    let data = api
        .ok("alice", "query($id: ID!) { message(id: $id) { content conversation { topic workspace { name } } } }", json!({"id": msg}))
        .await;
    assert_eq!(
        data["message"],
        json!({"content": "secret migration plans", "conversation": {"topic": "Plans", "workspace": {"name": "Alice's"}}})
    );
    let count = api
        .ok(
            "alice",
            "query($id: ID!) { workspace(id: $id) { conversationCount } }",
            json!({"id": ws}),
        )
        .await;
    assert_eq!(count["workspace"]["conversationCount"], 1);
}

#[tokio::test]
async fn mutations_create_update_and_delete_with_validation() {
    let api = Api::new().await;
    let (ws, conv, msg) = alice_world(&api).await;
    let sent = api
        .ok("alice", SEND, json!({"c": conv, "text": "second"}))
        .await;
    assert_eq!(
        sent["sendMessage"]["senderId"], "alice",
        "the caller is the sender"
    );
    let conv_row = api
        .ok(
            "alice",
            "query($id: ID!) { conversation(id: $id) { participantIds participants { userId } } }",
            json!({"id": conv}),
        )
        .await;
    assert_eq!(
        conv_row["conversation"]["participantIds"],
        json!(["alice", "carol"])
    );
    let updated = api
        .ok("alice", "mutation($id: ID!) { updateWorkspace(id: $id, input: {description: \"new\"}) { name description } }", json!({"id": ws}))
        .await;
    assert_eq!(
        updated["updateWorkspace"],
        json!({"name": "Alice's", "description": "new"})
    );
    let edited = api.ok("alice", "mutation($id: ID!) { updateMessage(id: $id, input: {content: \"edited\"}) { content } }", json!({"id": msg})).await;
    assert_eq!(edited["updateMessage"]["content"], "edited");

    for (query, vars, field) in [
        (CREATE_WS, json!({"name": ""}), "name"),
        (CREATE_WS, json!({"name": "x".repeat(101)}), "name"),
        (CREATE_WS, json!({"name": "ok", "m": [1, 2]}), "metadata"),
        (CREATE_CONV, json!({"w": ws, "t": "t".repeat(201)}), "topic"),
        (SEND, json!({"c": conv, "text": "   "}), "content"),
        (SEND, json!({"c": conv, "text": "nul\u{0}byte"}), "content"),
    ] {
        let r = api.gql("alice", query, vars).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        assert_eq!(r["errors"][0]["extensions"]["field"], field, "{r}");
    }
    let r = api
        .gql(
            "alice",
            "query($id: ID!) { workspace(id: $id) { id } }",
            json!({"id": "not-a-uuid"}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT");

    let both = api
        .ok(
            "alice",
            "mutation { createWorkspaceWithConversation(workspace: {name: \"Both\"}, conversation: {topic: \"First\"}) { workspace { id name } conversation { topic workspaceId } } }",
            json!({}),
        )
        .await;
    let pair = &both["createWorkspaceWithConversation"];
    assert_eq!(pair["conversation"]["workspaceId"], pair["workspace"]["id"]);

    let deleted = api
        .ok(
            "alice",
            "mutation($id: ID!) { deleteWorkspace(id: $id) }",
            json!({"id": ws}),
        )
        .await;
    assert_eq!(deleted["deleteWorkspace"], json!(ws));
    let gone = api
        .gql(
            "alice",
            "query($id: ID!) { message(id: $id) { id } }",
            json!({"id": msg}),
        )
        .await;
    assert_eq!(code(&gone), "NOT_FOUND", "cascaded");
}

#[tokio::test]
async fn connections_paginate_both_ways_with_stable_cursors() {
    let api = Api::new().await;
    for i in 0..5 {
        api.ok("alice", CREATE_WS, json!({"name": format!("w{i}")}))
            .await;
    }
    let q = "query($f: Int, $a: String, $l: Int, $b: String) { workspaces(first: $f, after: $a, last: $l, before: $b) { edges { cursor node { name } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    let names = |d: &Value| {
        d["workspaces"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let p1 = api.ok("alice", q, json!({"f": 2})).await;
    assert_eq!(names(&p1), ["w4", "w3"]);
    assert_eq!(p1["workspaces"]["pageInfo"]["hasNextPage"], true);
    let end = p1["workspaces"]["pageInfo"]["endCursor"].clone();
    api.ok("alice", CREATE_WS, json!({"name": "inserted"}))
        .await;
    let p2 = api.ok("alice", q, json!({"f": 2, "a": end})).await;
    assert_eq!(
        names(&p2),
        ["w2", "w1"],
        "an insert between pages does not shift them"
    );
    let p3 = api
        .ok(
            "alice",
            q,
            json!({"f": 2, "a": p2["workspaces"]["pageInfo"]["endCursor"]}),
        )
        .await;
    assert_eq!(names(&p3), ["w0"]);
    assert_eq!(p3["workspaces"]["pageInfo"]["hasNextPage"], false);
    let back = api
        .ok(
            "alice",
            q,
            json!({"l": 2, "b": p3["workspaces"]["edges"][0]["cursor"]}),
        )
        .await;
    assert_eq!(names(&back), ["w2", "w1"]);
    assert_eq!(back["workspaces"]["pageInfo"]["hasPreviousPage"], true);
    let exact = api.ok("alice", q, json!({"f": 6})).await;
    assert_eq!(
        exact["workspaces"]["pageInfo"]["hasNextPage"], false,
        "exactly a page"
    );
    let empty = api.ok("bob", q, json!({"f": 2})).await;
    assert_eq!(
        empty["workspaces"]["pageInfo"],
        json!({"hasNextPage": false, "hasPreviousPage": false, "startCursor": null, "endCursor": null})
    );
    for vars in [
        json!({"f": 101}),
        json!({"f": -1}),
        json!({"f": 2, "a": "bogus"}),
        json!({"l": 2, "b": "eyJ4Ijox"}),
    ] {
        assert_eq!(
            code(&api.gql("alice", q, vars.clone()).await),
            "BAD_USER_INPUT",
            "{vars}"
        );
    }
}

#[tokio::test]
async fn metadata_filters_compare_nested_numbers_and_strings() {
    let api = Api::new().await;
    for (name, m) in [
        (
            "gold",
            json!({"tier": "gold", "priority": 10, "labels": {"team": "core"}}),
        ),
        (
            "silver",
            json!({"tier": "silver", "priority": "9", "labels": {"team": "web"}}),
        ),
        ("plain", json!({})),
    ] {
        api.ok("alice", CREATE_WS, json!({"name": name, "m": m}))
            .await;
    }
    let q = "query($f: WorkspaceFilter) { workspaces(first: 10, filter: $f) { totalCount nodes { name } } }";
    let names = |d: Value| {
        d["workspaces"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let cases = [
        (
            json!({"metadata": {"contains": {"tier": "gold"}}}),
            vec!["gold"],
        ),
        (
            json!({"metadata": {"hasKey": "labels"}}),
            vec!["silver", "gold"],
        ),
        (
            json!({"metadata": {"hasAnyKeys": ["nope", "tier"]}}),
            vec!["silver", "gold"],
        ),
        (
            json!({"metadata": {"hasAllKeys": ["tier", "nope"]}}),
            vec![],
        ),
        (
            json!({"metadata": {"path": [{"path": ["labels", "team"], "eq": "web"}]}}),
            vec!["silver"],
        ),
        (
            json!({"metadata": {"path": [{"path": ["priority"], "gt": 5}]}}),
            vec!["gold"],
        ),
        (
            json!({"metadata": {"path": [{"path": ["priority"], "gte": "9"}]}}),
            vec!["silver"],
        ),
        (
            json!({"metadata": {"path": [{"path": ["priority"], "in": [10, "x"]}]}}),
            vec!["gold"],
        ),
        (
            json!({"metadata": {"path": [{"path": ["priority"], "exists": false}]}}),
            vec!["plain"],
        ),
        (
            json!({"metadata": {"or": [{"contains": {"tier": "gold"}}, {"contains": {"tier": "silver"}}]}}),
            vec!["silver", "gold"],
        ),
        (
            json!({"metadata": {"not": {"hasKey": "tier"}}}),
            vec!["plain"],
        ),
        (json!({"nameContains": "SIL"}), vec!["silver"]),
    ];
    for (filter, expected) in cases {
        let data = api.ok("alice", q, json!({"f": filter})).await;
        assert_eq!(data["workspaces"]["totalCount"], expected.len(), "{filter}");
        assert_eq!(names(data), expected, "{filter}");
    }
    let deep =
        json!({"metadata": {"not": {"not": {"not": {"not": {"not": {"not": {"hasKey": "x"}}}}}}}});
    assert_eq!(
        code(&api.gql("alice", q, json!({"f": deep})).await),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        code(
            &api.gql("alice", q, json!({"f": {"metadata": {"contains": 5}}}))
                .await
        ),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        code(
            &api.gql(
                "alice",
                q,
                json!({"f": {"metadata": {"path": [{"path": ["a"], "gt": [1]}]}}})
            )
            .await
        ),
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn a_nested_query_costs_one_statement_per_level() {
    // Default settings, with the other tests running in parallel: a level is one
    // batch by the query's structure, not by a timing window.
    let api = Api::new().await;
    // One measuring connection, opened before the first reading.
    let mut meter = statement_meter(&api.db).await;
    // Ten workspaces × three conversations × four messages from two senders.
    for w in 0..10 {
        let ws = api
            .ok("alice", CREATE_WS, json!({"name": format!("w{w}")}))
            .await["createWorkspace"]["id"]
            .clone();
        for c in 0..3 {
            let conv = api
                .ok("alice", CREATE_CONV, json!({"w": ws, "t": format!("c{c}")}))
                .await["createConversation"]["id"]
                .clone();
            for m in 0..4 {
                let sender = if m % 2 == 0 { "alice" } else { "bob" };
                if sender == "bob" {
                    let mut conn = api.db.conn().await;
                    let new = cortex::db::messages::NewMessage {
                        conversation_id: conv.as_str().unwrap().parse().unwrap(),
                        sender_id: "bob".into(),
                        content: format!("m{m}"),
                        timestamp: chrono::Utc::now(),
                        metadata: json!({}),
                    };
                    let bob = cortex::db::users::NewUser {
                        user_id: "bob".into(),
                        name: "Bob".into(),
                        email: None,
                        metadata: json!({}),
                    };
                    cortex::db::users::get_or_create(&mut conn, &bob)
                        .await
                        .unwrap();
                    cortex::db::messages::create(&mut conn, &new).await.unwrap();
                } else {
                    api.ok("alice", SEND, json!({"c": conv, "text": format!("m{m}")}))
                        .await;
                }
            }
        }
    }
    // Authenticated and cached before measuring.
    api.ok("alice", "{ me { id } }", json!({})).await;

    let deep = "{ workspaces(first: 10) { nodes { conversations(first: 10) { nodes { messages(last: 20) { nodes { content sender { name } } } } } } } }";
    let before = statements_run(&mut meter).await;
    let data = api.ok("alice", deep, json!({})).await;
    let spent = statements_run(&mut meter).await - before;
    let convs = data["workspaces"]["nodes"].as_array().unwrap();
    assert_eq!(convs.len(), 10);
    assert_eq!(
        convs[0]["conversations"]["nodes"].as_array().unwrap().len(),
        3
    );
    assert_eq!(
        convs[0]["conversations"]["nodes"][0]["messages"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(spent, 4, "workspaces, conversations, messages, users");
    let senders: Vec<&str> = convs[0]["conversations"]["nodes"][0]["messages"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sender"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(senders, ["alice name", "Bob", "alice name", "Bob"]);

    // Senders reached through edges, a fragment and an alias are batched the same way.
    let edges = "fragment Who on Message { from: sender { name } } { workspaces(first: 10) { nodes { conversations(first: 10) { nodes { messages(last: 20) { edges { node { content ...Who } } } } } } } }";
    let before = statements_run(&mut meter).await;
    let data = api.ok("alice", edges, json!({})).await;
    assert_eq!(
        statements_run(&mut meter).await - before,
        4,
        "edges, fragment, alias"
    );
    assert_eq!(
        data["workspaces"]["nodes"][0]["conversations"]["nodes"][0]["messages"]["edges"][1]["node"]
            ["from"]["name"],
        "Bob"
    );

    let wide = "{ workspaces(first: 10) { totalCount nodes { owner { name } conversationCount conversations(first: 10) { totalCount nodes { workspace { name } participants { name } latestMessages(limit: 2) { id } messageCountsBySender { senderId count } } } } } }";
    api.ok("alice", wide, json!({})).await; // the pool opens the connections a level runs in parallel
    let before = statements_run(&mut meter).await;
    let data = api.ok("alice", wide, json!({})).await;
    let spent = statements_run(&mut meter).await - before;
    assert_eq!(data["workspaces"]["totalCount"], 10);
    assert_eq!(
        data["workspaces"]["nodes"][0]["conversations"]["nodes"][0]["messageCountsBySender"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // workspaces + total; users (owners) + conversationCount + conversation pages;
    // conversation totals + workspaces + users (participants) + latest + sender counts.
    assert_eq!(spent, 10, "one statement per loader per level");
}

#[tokio::test]
async fn get_mutations_form_posts_and_oversized_batches_are_refused() {
    let api = Api::new().await;
    let token = api.token("alice");
    let get = Request::get("/graphql?query=mutation%7BdeleteWorkspace(id%3A%2200000000-0000-0000-0000-000000000000%22)%7D")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = api.send(get).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers.get("allow").unwrap(), "POST");

    let get_query = Request::get("/graphql?query=%7Bme%7BuserId%7D%7D")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = api.send(get_query).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["data"]["me"]["userId"],
        "alice"
    );

    let form = Request::post("/graphql")
        .header("content-type", "text/plain")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(
            r#"{"query":"mutation { createWorkspace(input: {name: \"csrf\"}) { id } }"}"#,
        ))
        .unwrap();
    let (status, _, _) = api.send(form).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let count = api
        .ok("alice", "{ workspaces { totalCount } }", json!({}))
        .await;
    assert_eq!(count["workspaces"]["totalCount"], 0, "nothing was written");

    let batch: Vec<Value> = (0..11).map(|_| json!({"query": "{ me { id } }"})).collect();
    let (status, r) = api.raw(Some(&token), Value::Array(batch)).await;
    assert_eq!(
        (status, code(&r)),
        (StatusCode::BAD_REQUEST, "BAD_USER_INPUT")
    );
    let batch: Vec<Value> = (0..2)
        .map(|i| json!({"query": CREATE_WS, "variables": {"name": format!("b{i}")}}))
        .collect();
    let (status, r) = api.raw(Some(&token), Value::Array(batch)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn graphiql_and_its_assets_are_served_locally() {
    let api = Api::new().await;
    for path in ["/", "/graphiql"] {
        let (status, headers, body) = api
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK);
        let html = String::from_utf8(body).unwrap();
        assert!(
            html.contains("/graphiql/assets/graphiql.min.js") && !html.contains("https://"),
            "no CDN"
        );
        assert!(headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("default-src 'self'"));
    }
    let sums = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/graphql/assets/SHA256SUMS"
    ))
    .unwrap();
    for line in sums.lines() {
        let (digest, name) = line.split_once("  ").unwrap();
        let (status, _, body) = api
            .send(
                Request::get(format!("/graphiql/assets/{name}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name}");
        let out = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(&body)?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with(digest),
            "{name} differs from SHA256SUMS"
        );
    }
    let (status, _, _) = api
        .send(
            Request::get("/graphiql/assets/nope.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn introspection_works_without_a_token() {
    let api = Api::new().await;
    let (status, r) = api
        .raw(
            None,
            json!({"query": "{ __schema { queryType { name } } }"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["data"]["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn syntax_errors_and_unknown_fields_are_bad_user_input() {
    let api = Api::new().await;
    assert_eq!(
        code(&api.gql("alice", "{ me { ", json!({})).await),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        code(&api.gql("alice", "{ nope }", json!({})).await),
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn the_standard_introspection_query_of_client_tools_is_answered() {
    let api = Api::new().await;
    let query = include_str!("fixtures/introspection.graphql");
    let data = api.ok("alice", query, json!({})).await;
    let types: Vec<&str> = data["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for expected in [
        "Workspace",
        "MetadataFilter",
        "JsonPathPredicate",
        "Node",
        "DateTime",
        "JSON",
    ] {
        assert!(types.contains(&expected), "{expected} missing: {types:?}");
    }
}

#[tokio::test]
async fn sending_a_message_and_a_scoped_search_cost_one_statement_each() {
    let api = Api::new().await;
    let (ws, conv, _) = alice_world(&api).await;
    let mut meter = statement_meter(&api.db).await;
    // The ownership check is part of the insert (INSERT … SELECT), not a statement before it.
    let before = statements_run(&mut meter).await;
    api.ok("alice", SEND, json!({"c": conv, "text": "budget review"}))
        .await;
    assert_eq!(statements_run(&mut meter).await - before, 1, "sendMessage");
    // Hits prove the scope is the caller's: no separate check of the workspace.
    let search = "query($w: ID!) { searchMessages(query: \"budget\", workspaceId: $w) { edges { headline node { content } } } }";
    let before = statements_run(&mut meter).await;
    let hits = api.ok("alice", search, json!({"w": ws})).await;
    assert_eq!(
        statements_run(&mut meter).await - before,
        1,
        "searchMessages"
    );
    assert_eq!(
        hits["searchMessages"]["edges"][0]["node"]["content"],
        "budget review"
    );
    // No hits: the scope is checked so that a missing or foreign one is an error.
    let nothing = api
        .ok("alice", "query($w: ID!) { searchMessages(query: \"nowhere\", workspaceId: $w) { edges { rank } } }", json!({"w": ws}))
        .await;
    assert_eq!(nothing["searchMessages"]["edges"], json!([]));
    let missing = api
        .gql(
            "alice",
            SEND,
            json!({"c": uuid::Uuid::new_v4(), "text": "lost"}),
        )
        .await;
    assert_eq!(code(&missing), "NOT_FOUND", "{missing}");
}

#[tokio::test]
async fn a_repeated_operation_is_served_from_its_parsed_document_and_still_checked() {
    let api = Api::new().await;
    let (ws, _, _) = alice_world(&api).await;
    let q = "query($id: ID!) { workspace(id: $id) { name } }";
    for _ in 0..2 {
        let data = api.ok("alice", q, json!({"id": ws})).await;
        assert_eq!(data["workspace"]["name"], "Alice's");
    }
    // The same text again: its variables are still coerced and its rows still scoped.
    let bad = api.gql("alice", q, json!({"id": "not-a-uuid"})).await;
    assert_eq!(code(&bad), "BAD_USER_INPUT", "{bad}");
    let foreign = api.gql("bob", q, json!({"id": ws})).await;
    assert_eq!(code(&foreign), "FORBIDDEN", "{foreign}");
    // A refused text is never kept: refused again, the same way.
    let deep = "{ workspaces(first: 1) { nodes { conversations(first: 1) { nodes { messages(first: 1) { nodes { conversation { workspace { conversations(first: 1) { nodes { messages(first: 1) { nodes { conversation { workspace { owner { name } } } } } } } } } } } } } } } }";
    for _ in 0..2 {
        let refused = api.gql("alice", deep, json!({})).await;
        assert_eq!(
            refused["errors"][0]["extensions"]["limit"], "depth",
            "{refused}"
        );
    }
}

#[tokio::test]
async fn a_query_deeper_than_the_limit_is_refused_before_any_sql() {
    let api = Api::new().await;
    // The caller's row exists and is cached before measuring.
    api.ok("alice", "{ me { id } }", json!({})).await;
    // 16 levels: workspaces → … → message → conversation → workspace, twice, then owner → name.
    let deep = "{ workspaces(first: 1) { nodes { conversations(first: 1) { nodes { messages(first: 1) { nodes { conversation { workspace { conversations(first: 1) { nodes { messages(first: 1) { nodes { conversation { workspace { owner { name } } } } } } } } } } } } } } } }";
    let mut meter = statement_meter(&api.db).await;
    let before = statements_run(&mut meter).await;
    let response = api.gql("alice", deep, json!({})).await;
    let spent = statements_run(&mut meter).await - before;
    assert_eq!(code(&response), "BAD_USER_INPUT", "{response:#}");
    assert_eq!(response["errors"][0]["extensions"]["limit"], "depth");
    assert!(response["data"].is_null(), "{response:#}");
    assert_eq!(spent, 0, "SQL ran for a refused query");
}

/// The response to `query(marker)` (data only), asserted byte for byte the same
/// with `marker` = `__typename`, which keeps a list on the fast path, and
/// `__typename __typename` (a key selected twice, which async-graphql merges), which
/// sends every object through async-graphql's own resolution.
async fn same_on_both_paths(
    api: &Api,
    query: impl Fn(&str) -> String,
    variables: Value,
    what: &str,
) -> Value {
    let mut bodies = Vec::new();
    for marker in ["__typename", "__typename __typename"] {
        let body = json!({"query": query(marker), "variables": variables});
        let (status, _, bytes) = api
            .send(common::graphql_post(Some(&api.token("alice")), &body))
            .await;
        assert_eq!(status, StatusCode::OK);
        // The cost extension (times) differs from run to run; the data must not.
        let body = String::from_utf8(bytes).unwrap();
        let data = match body.split_once(",\"extensions\":") {
            Some((data, _)) => format!("{data}}}"),
            None => body,
        };
        bodies.push(data);
    }
    assert_eq!(bodies[0], bodies[1], "{what}");
    let response: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert!(response.get("errors").is_none(), "{response:#}");
    response
}

#[tokio::test]
async fn messages_and_senders_resolve_the_same_on_the_fast_path_as_through_async_graphql() {
    let api = Api::new().await;
    let (_, conv, _) = alice_world(&api).await;
    // More messages: nested metadata, and a sender with an e-mail address.
    let mut conn = api.db.conn().await;
    let bob = cortex::db::users::NewUser {
        user_id: "bob".into(),
        name: "Bob \"B\"".into(),
        email: Some("bob@example.com".into()),
        metadata: json!({"plan": "pro", "since": 2020}),
    };
    cortex::db::users::get_or_create(&mut conn, &bob)
        .await
        .unwrap();
    for (sender, metadata) in [
        (
            "alice",
            json!({"priority": 2.5, "tags": ["a", "b"], "labels": {"team": "x"}, "none": null}),
        ),
        ("bob", json!({})),
    ] {
        let new = cortex::db::messages::NewMessage {
            conversation_id: conv.parse().unwrap(),
            sender_id: sender.into(),
            content: format!("from {sender} \"quoted\" \u{e9}"),
            timestamp: chrono::Utc::now(),
            metadata,
        };
        cortex::db::messages::create(&mut conn, &new).await.unwrap();
    }
    // `{F}` is where each selection is marked: `__typename` keeps the fast path,
    // `__typename __typename` (a key selected twice, which async-graphql merges) sends
    // every message through async-graphql's own resolution. Both must answer the same,
    // byte for byte.
    let selections = [
        "nodes { {F} id conversationId senderId content timestamp createdAt updatedAt metadata sender { __typename userId name } }",
        "edges { cursor node { {F} ...M text: content ... on Message { sender { ...U } } } }",
        "nodes { {F} content content }",
        "nodes { {F} ... { id } conversation { topic } }",
        "nodes { {F} content @skip(if: true) id @include(if: true) sender @include(if: false) { name } }",
    ];
    for selection in selections {
        let fragments = if selection.contains("...M") {
            "fragment M on Message { id timestamp } fragment U on UserProfile { name who: userId }"
        } else {
            ""
        };
        let query = |marker: &str| {
            format!(
                "query($c: ID!) {{ conversation(id: $c) {{ messages(first: 10) {{ {} }} }} }} {fragments}",
                selection.replace("{F}", marker)
            )
        };
        let response = same_on_both_paths(&api, query, json!({"c": conv}), selection).await;
        let messages = &response["data"]["conversation"]["messages"];
        let list = messages.get("nodes").or(messages.get("edges")).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 3, "{response:#}");
    }
}

#[tokio::test]
async fn conversations_resolve_the_same_on_the_fast_path_as_through_async_graphql() {
    let api = Api::new().await;
    let (ws, _, _) = alice_world(&api).await;
    let create = "mutation($w: ID!, $t: String!, $m: JSON) { createConversation(input: {workspaceId: $w, topic: $t, participantIds: [\"bob\", \"carol\"], metadata: $m}) { id } }";
    let metadata = json!({"tier": "gold", "n": 2.5, "tags": ["a"], "nested": {"k": null}});
    let topic = "t \"quoted\" \u{e9}";
    api.ok("alice", create, json!({"w": ws, "t": topic, "m": metadata}))
        .await;
    // `{F}` is marked as in the messages' test above.
    let selections = [
        "nodes { {F} id workspaceId topic participantIds metadata createdAt updatedAt }",
        "edges { cursor node { {F} ...C about: topic } }",
        "nodes { {F} topic topic }",
        "nodes { {F} id messages(last: 1) { nodes { content } } }",
        "nodes { {F} topic @skip(if: true) id @include(if: true) workspace { name } }",
    ];
    for selection in selections {
        let fragments = if selection.contains("...C") {
            "fragment C on Conversation { id metadata }"
        } else {
            ""
        };
        let query = |marker: &str| {
            format!(
                "query($w: ID!) {{ workspace(id: $w) {{ conversations(first: 10) {{ {} }} }} }} {fragments}",
                selection.replace("{F}", marker)
            )
        };
        let response = same_on_both_paths(&api, query, json!({"w": ws}), selection).await;
        let conversations = &response["data"]["workspace"]["conversations"];
        let list = conversations
            .get("nodes")
            .or(conversations.get("edges"))
            .unwrap();
        assert_eq!(list.as_array().unwrap().len(), 2, "{response:#}");
    }
}

#[tokio::test]
async fn message_metadata_is_read_only_when_shown_and_shown_however_it_is_selected() {
    let api = Api::new().await;
    let (_, conv, _) = alice_world(&api).await;
    let mut meter = statement_meter(&api.db).await;
    let mut conn = api.db.conn().await;
    let new = cortex::db::messages::NewMessage {
        conversation_id: conv.parse().unwrap(),
        sender_id: "alice".into(),
        content: "tagged".into(),
        timestamp: chrono::Utc::now(),
        metadata: json!({"tier": "gold", "tags": ["x"]}),
    };
    cortex::db::messages::create(&mut conn, &new).await.unwrap();
    let page = |selection: &str| {
        format!(
            "query($c: ID!) {{ conversation(id: $c) {{ messages(last: 1) {{ {selection} }} }} }}"
        )
    };
    let shown = [
        (page("nodes { metadata }"), "/nodes/0/metadata"),
        (page("edges { node { m: metadata } }"), "/edges/0/node/m"),
        (
            page("nodes { ...F }") + " fragment F on Message { metadata }",
            "/nodes/0/metadata",
        ),
        (
            page("all: nodes { content ... on Message { metadata } }"),
            "/all/0/metadata",
        ),
    ];
    for (query, pointer) in shown {
        let data = api.ok("alice", &query, json!({"c": conv})).await;
        let messages = &data["conversation"]["messages"];
        assert_eq!(
            messages.pointer(pointer),
            Some(&json!({"tier": "gold", "tags": ["x"]})),
            "{query}: {data:#}"
        );
    }
    // Not shown: the page's statement reads a constant (JSON null) in its place, which
    // pg_stat_statements records as a parameter.
    let reads_null = "SELECT count(*)::text AS line FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND query LIKE '%CROSS JOIN LATERAL%\"timestamp\", $%::jsonb, \"messages\"%'";
    assert_eq!(common::text_lines(&mut meter, reads_null).await, ["0"]);
    let data = api
        .ok("alice", &page("nodes { content }"), json!({"c": conv}))
        .await;
    assert_eq!(
        data["conversation"]["messages"]["nodes"][0]["content"],
        "tagged"
    );
    assert_eq!(common::text_lines(&mut meter, reads_null).await, ["1"]);
}

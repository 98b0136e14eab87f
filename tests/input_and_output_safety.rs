//! What independent clients found in inputs and outputs, over real HTTP: search
//! headlines are HTML-escaped text with only Cortex's `<b>` marks; a NUL in any
//! string input is `BAD_USER_INPUT` naming its input field, and writes nothing; a
//! participant named twice is stored once.

mod common;

use common::{code, Api};
use serde_json::{json, Value};

async fn workspace(api: &Api, user: &str) -> String {
    api.ok(
        user,
        r#"mutation { createWorkspace(input: {name: "w"}) { id } }"#,
        json!({}),
    )
    .await["createWorkspace"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn conversation(api: &Api, user: &str, workspace: &str, participants: Value) -> Value {
    api.ok(
        user,
        "mutation($w: ID!, $p: [String!]!) { createConversation(input: {workspaceId: $w, topic: \"t\", participantIds: $p}) { id participantIds } }",
        json!({"w": workspace, "p": participants}),
    )
    .await["createConversation"]
        .clone()
}

#[tokio::test]
async fn search_headlines_are_escaped_text_with_only_bold_marks() {
    let api = Api::new().await;
    let ws = workspace(&api, "alice").await;
    let conv = conversation(&api, "alice", &ws, json!([])).await;
    let content =
        "xsstest <img src=x onerror=alert(1)> & \"quoted\" 'single' \u{E000}fake\u{E001} kiwi";
    api.ok(
        "alice",
        "mutation($c: ID!, $t: String!) { sendMessage(input: {conversationId: $c, content: $t}) { id } }",
        json!({"c": conv["id"], "t": content}),
    )
    .await;
    let hits = api
        .ok(
            "alice",
            "{ searchMessages(query: \"kiwi\") { edges { headline node { content } } } }",
            json!({}),
        )
        .await;
    let edge = &hits["searchMessages"]["edges"][0];
    assert_eq!(
        edge["node"]["content"], content,
        "the message itself is unchanged"
    );
    let headline = edge["headline"].as_str().unwrap();
    assert_eq!(
        headline,
        "xsstest &lt;img src=x onerror=alert(1)&gt; &amp; &quot;quoted&quot; &#39;single&#39; fake <b>kiwi</b>"
    );
}

#[tokio::test]
async fn a_nul_in_any_string_input_is_bad_user_input_naming_it_and_writes_nothing() {
    let api = Api::new().await;
    let ws = workspace(&api, "alice").await;
    let conv = conversation(&api, "alice", &ws, json!([])).await;
    let nul = "a\u{0}b";
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "workspace name",
            "mutation($n: String!) { createWorkspace(input: {name: $n}) { id } }",
            json!({"n": nul}),
            "name",
        ),
        (
            "workspace description, in an input variable",
            "mutation($i: CreateWorkspaceInput!) { createWorkspace(input: $i) { id } }",
            json!({"i": {"name": "ok", "description": nul}}),
            "description",
        ),
        (
            "a literal topic",
            "mutation($w: ID!) { createConversation(input: {workspaceId: $w, topic: \"a\\u0000b\"}) { id } }",
            json!({"w": ws}),
            "topic",
        ),
        (
            "participantIds",
            "mutation($w: ID!, $p: [String!]!) { createConversation(input: {workspaceId: $w, topic: \"t\", participantIds: $p}) { id } }",
            json!({"w": ws, "p": ["bob", nul]}),
            "participantIds",
        ),
        (
            "a metadata string",
            "mutation($c: ID!, $m: JSON) { sendMessage(input: {conversationId: $c, content: \"hi\", metadata: $m}) { id } }",
            json!({"c": conv["id"], "m": {"tags": ["x", nul]}}),
            "metadata",
        ),
        (
            "a metadata key",
            "mutation($id: ID!, $m: JSON) { updateWorkspace(id: $id, input: {metadata: $m}) { id } }",
            json!({"id": ws, "m": {"a\u{0}": 1}}),
            "metadata",
        ),
        (
            "the search query",
            "query($q: String!) { searchMessages(query: $q) { edges { rank } } }",
            json!({"q": nul}),
            "query",
        ),
        (
            "a text filter",
            "query($f: ConversationFilter) { workspaces { nodes { conversations(filter: $f) { nodes { id } } } } }",
            json!({"f": {"topicContains": nul}}),
            "topicContains",
        ),
    ];
    let count = "{ workspaces { totalCount nodes { conversations { totalCount nodes { messages { totalCount } } } } } }";
    let before = api.ok("alice", count, json!({})).await;
    for (what, query, variables, field) in cases {
        let response = api.gql("alice", query, variables).await;
        assert_eq!(code(&response), "BAD_USER_INPUT", "{what}: {response:#}");
        assert_eq!(
            response["errors"][0]["extensions"]["field"], field,
            "{what}: {response:#}"
        );
        assert!(response["data"].is_null(), "{what}: {response:#}");
    }
    assert_eq!(
        api.ok("alice", count, json!({})).await,
        before,
        "nothing written"
    );
}

#[tokio::test]
async fn a_participant_named_twice_is_stored_once_in_the_order_first_given() {
    let api = Api::new().await;
    let ws = workspace(&api, "alice").await;
    let conv = conversation(
        &api,
        "alice",
        &ws,
        json!(["bob", "carol", "bob", "alice", "carol"]),
    )
    .await;
    assert_eq!(conv["participantIds"], json!(["bob", "carol", "alice"]));
    let updated = api
        .ok(
            "alice",
            "mutation($id: ID!) { updateConversation(id: $id, input: {participantIds: [\"dan\", \"dan\"]}) { participantIds } }",
            json!({"id": conv["id"]}),
        )
        .await;
    assert_eq!(
        updated["updateConversation"]["participantIds"],
        json!(["alice", "dan"])
    );
    // `participants(first:)` reads the first ids only, within 0..=1000.
    let q = "query($id: ID!, $n: Int!) { conversation(id: $id) { participants(first: $n) { userId } } }";
    let none = api.ok("alice", q, json!({"id": conv["id"], "n": 0})).await;
    assert_eq!(none["conversation"]["participants"], json!([]));
    let one = api.ok("alice", q, json!({"id": conv["id"], "n": 1})).await;
    assert_eq!(
        one["conversation"]["participants"],
        json!([{"userId": "alice"}])
    );
    let too_many = api
        .gql("alice", q, json!({"id": conv["id"], "n": 1001}))
        .await;
    assert_eq!(code(&too_many), "BAD_USER_INPUT", "{too_many:#}");
    assert_eq!(too_many["errors"][0]["extensions"]["field"], "first");
}

#[tokio::test]
async fn a_failed_non_null_root_field_makes_data_null_as_the_spec_says() {
    let api = Api::new().await;
    let response = api
        .gql(
            "alice",
            "{ me { userId } workspace(id: \"00000000-0000-0000-0000-000000000001\") { id } }",
            json!({}),
        )
        .await;
    assert!(response["data"].is_null(), "{response:#}");
    assert_eq!(code(&response), "NOT_FOUND", "{response:#}");
    assert_eq!(response["errors"][0]["path"], json!(["workspace"]));
}

#[tokio::test]
async fn keys_come_back_in_the_order_they_were_selected() {
    let api = Api::new().await;
    // `__typename` answers at once, `workspaces` after a statement: without
    // completion the keys came back in the order they finished (b d a c).
    let query = "{ a: workspaces { totalCount } b: __typename c: workspaces(first: 1) { totalCount } d: __typename ...F } fragment F on Query { e: me { userId name } }";
    let token = api.token("alice");
    let (_, _, body) = api
        .send(common::graphql_post(
            Some(&token),
            &json!({ "query": query }),
        ))
        .await;
    let text = String::from_utf8(body).unwrap();
    let order: Vec<usize> = [
        "\"a\"",
        "\"b\"",
        "\"c\"",
        "\"d\"",
        "\"e\"",
        "\"userId\"",
        "\"name\"",
    ]
    .iter()
    .map(|key| text.find(key).unwrap_or_else(|| panic!("{key} in {text}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[tokio::test]
async fn path_comparisons_read_array_positions_and_json_null() {
    let api = Api::new().await;
    api.ok(
        "alice",
        "mutation($m: JSON) { createWorkspace(input: {name: \"w\", metadata: $m}) { id } }",
        json!({"m": {"arr": [1, 2, 3], "n": null, "s": "x", "o": {"1": 7}}}),
    )
    .await;
    let matches = |path: Value| {
        let api = &api;
        async move {
            let response = api
                .gql(
                    "alice",
                    "query($p: [JsonPathPredicate!]) { workspaces(filter: {metadata: {path: $p}}) { totalCount } }",
                    json!({"p": path}),
                )
                .await;
            assert!(response.get("errors").is_none(), "{response:#}");
            response["data"]["workspaces"]["totalCount"]
                .as_i64()
                .unwrap()
                == 1
        }
    };
    for (predicate, expected) in [
        (json!({"path": ["arr", "1"], "eq": 2}), true),
        (json!({"path": ["arr", "1"], "eq": 3}), false),
        (json!({"path": ["arr", "1"], "ne": 2}), false),
        (json!({"path": ["arr", "1"], "ne": 3}), true),
        (json!({"path": ["arr", "1"], "gt": 1}), true),
        (json!({"path": ["arr", "1"], "lt": 2}), false),
        (json!({"path": ["arr", "1"], "gte": 2, "lte": 2}), true),
        (json!({"path": ["arr", "1"], "in": [2, 9]}), true),
        (json!({"path": ["arr", "-1"], "eq": 3}), true),
        (json!({"path": ["arr", "5"], "exists": false}), true),
        (json!({"path": ["arr", "0"], "exists": true}), true),
        (json!({"path": ["o", "1"], "eq": 7}), true), // an object's key of digits
        (json!({"path": ["n"], "eq": null}), true),
        (json!({"path": ["s"], "eq": null}), false),
        (json!({"path": ["n"], "ne": null}), false),
        (json!({"path": ["s"], "ne": null}), true),
        (json!({"path": ["missing"], "eq": null}), false),
    ] {
        assert_eq!(matches(json!([predicate])).await, expected, "{predicate}");
    }
    let empty_or = api
        .gql(
            "alice",
            "{ workspaces(filter: {metadata: {or: []}}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&empty_or), "BAD_USER_INPUT", "{empty_or:#}");
    assert_eq!(
        empty_or["errors"][0]["extensions"]["field"],
        "filter.metadata"
    );
}

#[tokio::test]
async fn other_users_are_public_profiles_and_do_not_tell_whether_they_exist() {
    let api = Api::new().await;
    // alice exists (she has made a request); nobody has ever been "ghost".
    api.ok("alice", "{ me { userId email } }", json!({})).await;
    let ws = workspace(&api, "bob").await;
    let created = api
        .ok(
            "bob",
            "mutation($w: ID!) { createConversation(input: {workspaceId: $w, topic: \"x\", participantIds: [\"alice\", \"ghost\"]}) { id participants { userId name } } }",
            json!({"w": ws}),
        )
        .await;
    assert_eq!(
        created["createConversation"]["participants"],
        json!([
            {"userId": "bob", "name": "bob name"},
            {"userId": "alice", "name": null},
            {"userId": "ghost", "name": null},
        ]),
        "alice and ghost look the same to bob"
    );
    // Private fields are not in the profile at all.
    for field in ["email", "metadata", "isActive", "id"] {
        let query =
            format!("query($id: ID!) {{ conversation(id: $id) {{ participants {{ {field} }} }} }}");
        let response = api
            .gql(
                "bob",
                &query,
                json!({"id": created["createConversation"]["id"]}),
            )
            .await;
        assert_eq!(code(&response), "BAD_USER_INPUT", "{field}: {response:#}");
        assert!(response["data"].is_null(), "{field}: {response:#}");
    }
    // A sender is met through their message: name, and still no private field.
    let conv = created["createConversation"]["id"].clone();
    let sent = api
        .ok(
            "bob",
            "mutation($c: ID!) { sendMessage(input: {conversationId: $c, content: \"hi\"}) { sender { userId name } } }",
            json!({"c": conv}),
        )
        .await;
    assert_eq!(
        sent["sendMessage"]["sender"],
        json!({"userId": "bob", "name": "bob name"})
    );
    let response = api
        .gql(
            "bob",
            "{ workspaces { nodes { owner { email } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&response), "BAD_USER_INPUT", "{response:#}");
}

#[tokio::test]
async fn search_pages_are_keyset_so_a_better_hit_between_pages_repeats_nothing() {
    let api = Api::new().await;
    let ws = workspace(&api, "alice").await;
    let conv = conversation(&api, "alice", &ws, json!([])).await;
    let send = |content: String| {
        let (api, conv) = (&api, conv["id"].clone());
        async move {
            api.ok(
                "alice",
                "mutation($c: ID!, $t: String!) { sendMessage(input: {conversationId: $c, content: $t}) { id } }",
                json!({"c": conv, "t": content}),
            )
            .await["sendMessage"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(send(format!("kiwi note {i} with some other words around it")).await);
    }
    let page = "query($after: String) { searchMessages(query: \"kiwi\", first: 2, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
    let ids = |data: &Value| -> Vec<String> {
        data["searchMessages"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    let first = api.ok("alice", page, json!({})).await;
    assert_eq!(
        first["searchMessages"]["pageInfo"]["hasPreviousPage"],
        false
    );
    let mut seen = ids(&first);
    // A better hit arrives between the pages: it ranks before the cursor.
    send("kiwi kiwi kiwi kiwi".into()).await;
    let mut after = first["searchMessages"]["pageInfo"]["endCursor"].clone();
    loop {
        let next = api.ok("alice", page, json!({"after": after})).await;
        assert_eq!(next["searchMessages"]["pageInfo"]["hasPreviousPage"], true);
        seen.extend(ids(&next));
        if next["searchMessages"]["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = next["searchMessages"]["pageInfo"]["endCursor"].clone();
    }
    let mut expected = sent.clone();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(
        got, expected,
        "each of the first five exactly once: {seen:?}"
    );
    // Offsets and other lists' cursors are not search cursors.
    use base64::Engine;
    let offset = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("search:2");
    for bad in [offset.as_str(), "not-a-cursor"] {
        let response = api.gql("alice", page, json!({"after": bad})).await;
        assert_eq!(code(&response), "BAD_USER_INPUT", "{response:#}");
        assert_eq!(response["errors"][0]["extensions"]["field"], "after");
    }
}

#[tokio::test]
async fn a_conversation_holds_at_most_1000_participants_the_caller_included() {
    let api = Api::new().await;
    let ws = workspace(&api, "alice").await;
    let ids = |n: usize| (0..n).map(|i| format!("u{i}")).collect::<Vec<_>>();
    let create = "mutation($w: ID!, $p: [String!]!) { createConversation(input: {workspaceId: $w, topic: \"t\", participantIds: $p}) { participantIds } }";
    // 1,000 others plus the caller: one too many.
    let response = api
        .gql("alice", create, json!({"w": ws, "p": ids(1000)}))
        .await;
    assert_eq!(code(&response), "BAD_USER_INPUT", "{response:#}");
    assert_eq!(
        response["errors"][0]["extensions"]["field"],
        "participantIds"
    );
    // 999 others, named twice each, plus the caller: exactly 1,000.
    let mut twice = ids(999);
    twice.extend(ids(999));
    let data = api.ok("alice", create, json!({"w": ws, "p": twice})).await;
    let stored = data["createConversation"]["participantIds"]
        .as_array()
        .unwrap();
    assert_eq!(stored.len(), 1000);
    assert_eq!(stored[0], "alice");
}

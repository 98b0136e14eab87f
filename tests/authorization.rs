//! The two-user probe, as a test: every root field, nested field, filter, search
//! and mutation tried as the owner (alice), a participant (carol) and a stranger
//! (bob, who owns a workspace of his own), over HTTP against a real database.
//!
//! The rules (`src/db/scope.rs`): a workspace is its owner's alone; a conversation
//! is read by the workspace's owner and its participants, changed and deleted by
//! the owner; participants send messages, and change or delete their own. A row
//! that exists but is not the caller's to see or change is `FORBIDDEN`; an id no
//! row has is `NOT_FOUND`.

mod common;

use common::{code, statement_meter, statements_run, Api};
use serde_json::{json, Value};

const CREATE_WS: &str = "mutation($name: String!) { createWorkspace(input: {name: $name}) { id } }";
const CREATE_CONV: &str = "mutation($w: ID!, $t: String!, $p: [String!]!) { createConversation(input: {workspaceId: $w, topic: $t, participantIds: $p}) { id } }";
const SEND: &str = "mutation($c: ID!, $text: String!) { sendMessage(input: {conversationId: $c, content: $text}) { id senderId } }";

/// What the probe runs against.
struct World {
    api: Api,
    /// alice's workspace.
    ws: String,
    /// In it, with carol and dave (who never writes) and "ghost" (no such user).
    shared: String,
    /// Also in it, without carol.
    private: String,
    /// alice's message in `shared`.
    alices_message: String,
    /// carol's message in `shared`.
    carols_message: String,
    /// alice's message in `private`.
    private_message: String,
    /// bob's own workspace and conversation.
    bobs_ws: String,
    bobs_conv: String,
}

fn id(data: &Value, field: &str) -> String {
    data[field]["id"].as_str().unwrap().to_string()
}

async fn world() -> World {
    let api = Api::new().await;
    // dave signs in once (his row exists); ghost never does.
    api.ok("dave", "{ me { userId } }", json!({})).await;
    let ws = id(
        &api.ok("alice", CREATE_WS, json!({"name": "Alice's"})).await,
        "createWorkspace",
    );
    let shared = id(
        &api.ok(
            "alice",
            CREATE_CONV,
            json!({"w": ws, "t": "Shared kiwi", "p": ["carol", "dave", "ghost"]}),
        )
        .await,
        "createConversation",
    );
    let private = id(
        &api.ok(
            "alice",
            CREATE_CONV,
            json!({"w": ws, "t": "Private", "p": []}),
        )
        .await,
        "createConversation",
    );
    let alices_message = id(
        &api.ok(
            "alice",
            SEND,
            json!({"c": shared, "text": "alice says kiwi"}),
        )
        .await,
        "sendMessage",
    );
    let carols_message = id(
        &api.ok(
            "carol",
            SEND,
            json!({"c": shared, "text": "carol says kiwi"}),
        )
        .await,
        "sendMessage",
    );
    let private_message = id(
        &api.ok(
            "alice",
            SEND,
            json!({"c": private, "text": "private kiwi plans"}),
        )
        .await,
        "sendMessage",
    );
    let bobs_ws = id(
        &api.ok("bob", CREATE_WS, json!({"name": "Bob's"})).await,
        "createWorkspace",
    );
    let bobs_conv = id(
        &api.ok(
            "bob",
            CREATE_CONV,
            json!({"w": bobs_ws, "t": "Bob's own", "p": ["alice"]}),
        )
        .await,
        "createConversation",
    );
    World {
        api,
        ws,
        shared,
        private,
        alices_message,
        carols_message,
        private_message,
        bobs_ws,
        bobs_conv,
    }
}

/// `Ok(data)` or `Err(code)`.
async fn try_as(api: &Api, user: &str, query: &str, vars: Value) -> Result<Value, String> {
    let r = api.gql(user, query, vars).await;
    match r.get("errors") {
        None => Ok(r["data"].clone()),
        Some(_) => Err(code(&r).to_string()),
    }
}

fn forbidden() -> Result<Value, String> {
    Err("FORBIDDEN".into())
}

#[tokio::test]
async fn node_and_nodes_return_only_what_the_caller_may_read() {
    let w = world().await;
    let me = |user: &str| {
        let api = &w.api;
        let user = user.to_string();
        async move { api.ok(&user, "{ me { id } }", json!({})).await["me"]["id"].clone() }
    };
    let (alice, carol) = (me("alice").await, me("carol").await);
    let every = json!([
        w.ws,
        w.shared,
        w.private,
        w.alices_message,
        w.carols_message,
        w.private_message,
        w.bobs_ws,
        w.bobs_conv,
        alice,
        carol,
    ]);
    // Every private field of every type, through fragments, for every id.
    let query = "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Workspace { name ownerId } ... on Conversation { topic participantIds } ... on Message { content } ... on User { userId email metadata } } }";
    let seen = |data: &Value| -> Vec<bool> {
        data["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| !n.is_null())
            .collect()
    };
    let cases = [
        // ws, shared, private, alice's, carol's, private msg, bob's ws, bob's conv, alice, carol
        (
            "alice",
            [true, true, true, true, true, true, false, true, true, false],
        ),
        // carol takes part in `shared` only: not the workspace, nor another user.
        (
            "carol",
            [
                false, true, false, true, true, false, false, false, false, true,
            ],
        ),
        (
            "bob",
            [
                false, false, false, false, false, false, true, true, false, false,
            ],
        ),
        ("mallory", [false; 10]),
    ];
    for (user, expected) in cases {
        let data = w.api.ok(user, query, json!({"ids": every})).await;
        assert_eq!(seen(&data), expected, "{user}: {data:#}");
        // One at a time, the same answer: `null` for what is not theirs (no error
        // that would tell that the id exists).
        for (id, visible) in every.as_array().unwrap().iter().zip(expected) {
            let one = w
                .api
                .gql(
                    user,
                    "query($id: ID!) { node(id: $id) { id } }",
                    json!({"id": id}),
                )
                .await;
            assert!(one.get("errors").is_none(), "{user}: {one}");
            assert_eq!(
                !one["data"]["node"].is_null(),
                visible,
                "{user} {id}: {one}"
            );
        }
    }
}

#[tokio::test]
async fn root_lookups_by_id_answer_each_role_as_documented() {
    let w = world().await;
    let missing = uuid::Uuid::new_v4().to_string();
    let cases = [
        (
            "query($id: ID!) { workspace(id: $id) { id } }",
            &w.ws,
            [true, false, false],
        ),
        (
            "query($id: ID!) { conversation(id: $id) { id } }",
            &w.shared,
            [true, true, false],
        ),
        (
            "query($id: ID!) { conversation(id: $id) { id } }",
            &w.private,
            [true, false, false],
        ),
        (
            "query($id: ID!) { message(id: $id) { id } }",
            &w.alices_message,
            [true, true, false],
        ),
        (
            "query($id: ID!) { message(id: $id) { id } }",
            &w.carols_message,
            [true, true, false],
        ),
        (
            "query($id: ID!) { message(id: $id) { id } }",
            &w.private_message,
            [true, false, false],
        ),
    ];
    for (query, row, allowed) in cases {
        for (user, allowed) in ["alice", "carol", "bob"].into_iter().zip(allowed) {
            let got = try_as(&w.api, user, query, json!({"id": row})).await;
            if allowed {
                let data = got.unwrap_or_else(|e| panic!("{user} {query}: {e}"));
                let field = data.as_object().unwrap().values().next().unwrap();
                assert_eq!(field["id"], json!(row), "{user} {query}");
            } else {
                assert_eq!(got, forbidden(), "{user} {query}");
            }
            let gone = try_as(&w.api, user, query, json!({"id": missing})).await;
            assert_eq!(gone, Err("NOT_FOUND".into()), "{user} {query}");
        }
    }
}

#[tokio::test]
async fn lists_at_the_root_hold_only_what_each_role_may_read() {
    let w = world().await;
    let workspaces = "{ workspaces(first: 10) { totalCount nodes { id } } }";
    let alice = w.api.ok("alice", workspaces, json!({})).await;
    assert_eq!(
        alice["workspaces"],
        json!({"totalCount": 1, "nodes": [{"id": w.ws}]})
    );
    let carol = w.api.ok("carol", workspaces, json!({})).await;
    assert_eq!(
        carol["workspaces"],
        json!({"totalCount": 0, "nodes": []}),
        "participants do not see the workspace"
    );
    let bob = w.api.ok("bob", workspaces, json!({})).await;
    assert_eq!(bob["workspaces"]["nodes"], json!([{"id": w.bobs_ws}]));

    let taking_part = "{ participatingConversations(first: 10, orderBy: CREATED_AT_ASC) { totalCount nodes { id } } }";
    let ids = |data: &Value| -> Vec<String> {
        data["participatingConversations"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect()
    };
    let carol = w.api.ok("carol", taking_part, json!({})).await;
    assert_eq!(ids(&carol), vec![w.shared.clone()]);
    assert_eq!(carol["participatingConversations"]["totalCount"], 1);
    // alice is added to her own conversations, and bob added her to his.
    let alice = w.api.ok("alice", taking_part, json!({})).await;
    assert_eq!(
        ids(&alice),
        vec![w.shared.clone(), w.private.clone(), w.bobs_conv.clone()]
    );
    assert_eq!(alice["participatingConversations"]["totalCount"], 3);
    let bob = w.api.ok("bob", taking_part, json!({})).await;
    assert_eq!(ids(&bob), vec![w.bobs_conv.clone()]);
    // A filter narrows, never widens: bob naming carol finds none of alice's rows.
    let filtered = "query($p: String!) { participatingConversations(filter: {participantId: $p}) { totalCount nodes { id } } }";
    let bob = w.api.ok("bob", filtered, json!({"p": "carol"})).await;
    assert_eq!(
        bob["participatingConversations"],
        json!({"totalCount": 0, "nodes": []})
    );
    let dave = w.api.ok("dave", filtered, json!({"p": "carol"})).await;
    assert_eq!(
        dave["participatingConversations"]["nodes"],
        json!([{"id": w.shared}])
    );
}

#[tokio::test]
async fn a_participant_reads_the_conversation_and_its_messages_but_not_the_workspace() {
    let w = world().await;
    let q = "query($id: ID!) { conversation(id: $id) { topic workspaceId workspace { name conversations { nodes { id } } } participantIds
        messages(first: 10) { totalCount nodes { content sender { userId name } conversation { id workspace { id } } } }
        latestMessages(limit: 5) { content } messageCountsBySender { senderId count } } }";
    let data = w.api.ok("carol", q, json!({"id": w.shared})).await;
    let c = &data["conversation"];
    assert_eq!(c["topic"], "Shared kiwi");
    assert_eq!(
        c["workspaceId"],
        json!(w.ws),
        "the id is part of the conversation"
    );
    assert_eq!(
        c["workspace"],
        Value::Null,
        "the workspace itself is the owner's"
    );
    assert_eq!(c["messages"]["totalCount"], 2);
    assert_eq!(
        c["messages"]["nodes"][1],
        json!({"content": "carol says kiwi", "sender": {"userId": "carol", "name": "carol name"}, "conversation": {"id": w.shared, "workspace": null}})
    );
    assert_eq!(c["latestMessages"].as_array().unwrap().len(), 2);
    // Two senders through the API, now that participants write.
    assert_eq!(
        c["messageCountsBySender"],
        json!([{"senderId": "alice", "count": 1}, {"senderId": "carol", "count": 1}])
    );
    // The owner sees the same conversation with its workspace.
    let data = w.api.ok("alice", q, json!({"id": w.shared})).await;
    assert_eq!(data["conversation"]["workspace"]["name"], "Alice's");
    assert_eq!(
        data["conversation"]["workspace"]["conversations"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn participants_show_names_only_of_people_met_and_never_private_fields() {
    let w = world().await;
    let q = "query($id: ID!) { conversation(id: $id) { participants { userId name } } }";
    for user in ["carol", "alice"] {
        let data = w.api.ok(user, q, json!({"id": w.shared})).await;
        assert_eq!(
            data["conversation"]["participants"],
            json!([
                {"userId": "alice", "name": "alice name"},
                {"userId": "carol", "name": "carol name"},
                // dave exists but never wrote; ghost does not exist: they look the same.
                {"userId": "dave", "name": null},
                {"userId": "ghost", "name": null},
            ]),
            "{user}"
        );
    }
    // A profile has no private fields to ask for.
    let r = w
        .api
        .gql(
            "carol",
            "query($id: ID!) { conversation(id: $id) { participants { email } } }",
            json!({"id": w.shared}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    let r = w
        .api
        .gql(
            "carol",
            "query($id: ID!) { message(id: $id) { sender { isActive metadata } } }",
            json!({"id": w.alices_message}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
}

#[tokio::test]
async fn search_finds_what_each_role_may_read_and_refuses_scopes_it_may_not() {
    let w = world().await;
    let q = "query($w: ID, $c: ID) { searchMessages(query: \"kiwi\", workspaceId: $w, conversationId: $c) { edges { node { id } } } }";
    let found = |data: &Value| -> Vec<String> {
        let mut ids: Vec<String> = data["searchMessages"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let all_three = sorted(vec![
        w.alices_message.clone(),
        w.carols_message.clone(),
        w.private_message.clone(),
    ]);
    let shared_two = sorted(vec![w.alices_message.clone(), w.carols_message.clone()]);
    assert_eq!(found(&w.api.ok("alice", q, json!({})).await), all_three);
    assert_eq!(found(&w.api.ok("carol", q, json!({})).await), shared_two);
    assert_eq!(
        found(&w.api.ok("bob", q, json!({})).await),
        Vec::<String>::new()
    );
    // Narrowed to the workspace: carol sees her conversation's hits only.
    assert_eq!(
        found(&w.api.ok("carol", q, json!({"w": w.ws})).await),
        shared_two
    );
    assert_eq!(
        found(&w.api.ok("carol", q, json!({"c": w.shared})).await),
        shared_two
    );
    assert_eq!(
        try_as(&w.api, "carol", q, json!({"c": w.private})).await,
        forbidden()
    );
    for vars in [
        json!({"w": w.ws}),
        json!({"c": w.shared}),
        json!({"c": w.private}),
    ] {
        assert_eq!(
            try_as(&w.api, "bob", q, vars.clone()).await,
            forbidden(),
            "{vars}"
        );
    }
    let missing = uuid::Uuid::new_v4();
    for vars in [json!({"w": missing}), json!({"c": missing})] {
        assert_eq!(
            try_as(&w.api, "carol", q, vars.clone()).await,
            Err("NOT_FOUND".into()),
            "{vars}"
        );
    }
}

#[tokio::test]
async fn nested_paths_from_a_strangers_own_rows_never_reach_alices() {
    let w = world().await;
    let q = "{ workspaces(first: 2) { nodes { conversations(first: 5) { nodes { id workspace { id } participants(first: 5) { userId name }
        messages(first: 5) { nodes { content sender { name } conversation { topic } } } } } } }
        participatingConversations(first: 5) { nodes { id messages(first: 5) { nodes { content } } } } }";
    let data = w.api.ok("bob", q, json!({})).await;
    let text = data.to_string();
    assert!(!text.contains("kiwi") && !text.contains(&w.ws), "{text}");
    // alice is a participant of bob's conversation and has not written there: her
    // name is not bob's to learn from it.
    assert_eq!(
        data["workspaces"]["nodes"][0]["conversations"]["nodes"][0]["participants"],
        json!([{"userId": "bob", "name": "bob name"}, {"userId": "alice", "name": null}])
    );
}

#[tokio::test]
async fn every_mutation_answers_each_role_as_documented() {
    let w = world().await;
    let api = &w.api;
    let update_ws =
        "mutation($id: ID!) { updateWorkspace(id: $id, input: {name: \"pwned\"}) { id } }";
    let empty_update_ws = "mutation($id: ID!) { updateWorkspace(id: $id, input: {}) { id } }";
    let create_conv =
        "mutation($id: ID!) { createConversation(input: {workspaceId: $id, topic: \"x\"}) { id } }";
    let update_conv =
        "mutation($id: ID!) { updateConversation(id: $id, input: {topic: \"pwned\"}) { id } }";
    let empty_update_conv = "mutation($id: ID!) { updateConversation(id: $id, input: {}) { id } }";
    let update_msg = "mutation($id: ID!) { updateMessage(id: $id, input: {content: \"edited\"}) { id content } }";
    let empty_update_msg = "mutation($id: ID!) { updateMessage(id: $id, input: {}) { id } }";
    let send = "mutation($id: ID!) { sendMessage(input: {conversationId: $id, content: \"hi\"}) { id senderId } }";
    for user in ["carol", "bob"] {
        for (q, row) in [
            (update_ws, &w.ws),
            (empty_update_ws, &w.ws),
            ("mutation($id: ID!) { deleteWorkspace(id: $id) }", &w.ws),
            (create_conv, &w.ws),
            (update_conv, &w.shared),
            (empty_update_conv, &w.shared),
            (
                "mutation($id: ID!) { deleteConversation(id: $id) }",
                &w.shared,
            ),
            (update_msg, &w.alices_message),
            (empty_update_msg, &w.alices_message),
            (
                "mutation($id: ID!) { deleteMessage(id: $id) }",
                &w.alices_message,
            ),
            (send, &w.private),
            (update_msg, &w.private_message),
        ] {
            assert_eq!(
                try_as(api, user, q, json!({"id": row})).await,
                forbidden(),
                "{user} {q}"
            );
        }
    }
    // Missing rows are NOT_FOUND for everyone.
    let missing = uuid::Uuid::new_v4();
    for q in [update_ws, create_conv, update_conv, update_msg, send] {
        assert_eq!(
            try_as(api, "carol", q, json!({"id": missing})).await,
            Err("NOT_FOUND".into()),
            "{q}"
        );
    }
    // Bob cannot send into the shared conversation; carol can; her message is hers to edit.
    assert_eq!(
        try_as(api, "bob", send, json!({"id": w.shared})).await,
        forbidden()
    );
    let sent = api.ok("carol", send, json!({"id": w.shared})).await;
    assert_eq!(sent["sendMessage"]["senderId"], "carol");
    let edited = api
        .ok("carol", update_msg, json!({"id": w.carols_message}))
        .await;
    assert_eq!(edited["updateMessage"]["content"], "edited");
    assert_eq!(
        try_as(api, "bob", update_msg, json!({"id": w.carols_message})).await,
        forbidden()
    );
    // The owner may change any message in her workspace, and delete it.
    api.ok("alice", update_msg, json!({"id": w.carols_message}))
        .await;
    let carols_new = sent["sendMessage"]["id"].clone();
    api.ok(
        "carol",
        "mutation($id: ID!) { deleteMessage(id: $id) }",
        json!({"id": carols_new}),
    )
    .await;
    // Nothing the refused calls tried was written.
    let data = api
        .ok("alice", "query($w: ID!, $c: ID!) { workspace(id: $w) { name conversationCount } conversation(id: $c) { topic messages { totalCount } } }", json!({"w": w.ws, "c": w.shared}))
        .await;
    assert_eq!(
        data,
        json!({"workspace": {"name": "Alice's", "conversationCount": 2}, "conversation": {"topic": "Shared kiwi", "messages": {"totalCount": 2}}})
    );
}

#[tokio::test]
async fn a_participant_removed_loses_the_conversation_and_their_old_messages_stay() {
    let w = world().await;
    let api = &w.api;
    api.ok(
        "alice",
        "mutation($id: ID!) { updateConversation(id: $id, input: {participantIds: [\"dave\"]}) { participantIds } }",
        json!({"id": w.shared}),
    )
    .await;
    for (q, row) in [
        ("query($id: ID!) { conversation(id: $id) { id } }", &w.shared),
        ("query($id: ID!) { message(id: $id) { id } }", &w.carols_message),
        ("mutation($id: ID!) { sendMessage(input: {conversationId: $id, content: \"still here?\"}) { id } }", &w.shared),
        ("mutation($id: ID!) { updateMessage(id: $id, input: {content: \"x\"}) { id } }", &w.carols_message),
        ("mutation($id: ID!) { deleteMessage(id: $id) }", &w.carols_message),
    ] {
        assert_eq!(try_as(api, "carol", q, json!({"id": row})).await, forbidden(), "{q}");
    }
    let taking_part = api
        .ok(
            "carol",
            "{ participatingConversations { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(taking_part["participatingConversations"]["totalCount"], 0);
    let kept = api
        .ok(
            "alice",
            "query($id: ID!) { message(id: $id) { content } }",
            json!({"id": w.carols_message}),
        )
        .await;
    assert_eq!(kept["message"]["content"], "carol says kiwi");
}

#[tokio::test]
async fn a_participants_nested_read_costs_one_statement_per_level() {
    let w = world().await;
    let mut meter = statement_meter(&w.api.db).await;
    let q = "{ participatingConversations(first: 10) { nodes { topic messages(first: 10) { nodes { content sender { name } } } } } }";
    w.api.ok("carol", q, json!({})).await; // warm: the caller cache, prepared statements
    let before = statements_run(&mut meter).await;
    let data = w.api.ok("carol", q, json!({})).await;
    let spent = statements_run(&mut meter).await - before;
    assert_eq!(
        data["participatingConversations"]["nodes"][0]["messages"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(spent, 3, "conversations, messages, senders");
}

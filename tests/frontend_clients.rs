//! What frontend clients do by default, over HTTP against a real database:
//! Relay's `node`/`nodes`, Apollo's automatic persisted queries and trusted
//! documents (`PERSISTED_DOCUMENTS`, `PERSISTED_ONLY`), GET with `operationName`,
//! CORS preflights with Apollo's headers, production mode's answers, and the
//! README's examples under the default limits, with the figures it states.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{code, graphql_post, statement_meter, statements_run, Api};
use serde_json::{json, Value};

const CREATE_WS: &str = "mutation($name: String!) { createWorkspace(input: {name: $name}) { id } }";
const CREATE_CONV: &str = "mutation($w: ID!, $t: String!, $p: [String!]!) { createConversation(input: {workspaceId: $w, topic: $t, participantIds: $p}) { id } }";
const SEND: &str =
    "mutation($c: ID!, $text: String!) { sendMessage(input: {conversationId: $c, content: $text}) { id } }";

/// A workspace of `owner` named `name` with one conversation (`topic`, with
/// `participants`): their ids.
async fn workspace_with_conversation(
    api: &Api,
    owner: &str,
    name: &str,
    topic: &str,
    participants: Value,
) -> (String, String) {
    let ws = api.ok(owner, CREATE_WS, json!({"name": name})).await;
    let ws = ws["createWorkspace"]["id"].as_str().unwrap().to_string();
    let conv = api
        .ok(
            owner,
            CREATE_CONV,
            json!({"w": ws, "t": topic, "p": participants}),
        )
        .await;
    let conv = conv["createConversation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (ws, conv)
}

/// alice's workspace, a conversation in it with carol, and a message: their ids.
async fn alice_world(api: &Api) -> (String, String, String) {
    let (ws, conv) =
        workspace_with_conversation(api, "alice", "Alice's", "Plans", json!(["carol"])).await;
    let msg = api
        .ok("alice", SEND, json!({"c": conv, "text": "hello"}))
        .await;
    let msg = msg["sendMessage"]["id"].as_str().unwrap().to_string();
    (ws, conv, msg)
}

fn get(path_and_query: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path_and_query);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

/// `GET /graphql` with these parameters, URL-encoded.
fn get_graphql(params: &[(&str, &str)], token: Option<&str>) -> Request<Body> {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    get(&format!("/graphql?{query}"), token)
}

async fn json_of(api: &Api, request: Request<Body>) -> (StatusCode, Value) {
    let (status, _, body) = api.send(request).await;
    (status, serde_json::from_slice(&body).unwrap())
}

fn sha256(text: &str) -> String {
    cortex::graphql::persisted::sha256_hex(text)
}

// --- Relay: Node, node(id:), nodes(ids:) ----------------------------------------------

#[tokio::test]
async fn relay_refetches_any_object_by_its_id_through_node() {
    let api = Api::new().await;
    let (ws, conv, msg) = alice_world(&api).await;
    let me = api.ok("alice", "{ me { id } }", json!({})).await["me"]["id"].clone();
    // Relay's refetch query: `node(id:)` with a fragment on the concrete type.
    let refetch = "query($id: ID!) { node(id: $id) { __typename id ... on Workspace { name } ... on Conversation { topic workspace { id } } ...M ... on User { userId } } } fragment M on Message { content conversation { topic } }";
    let cases = [
        (
            &ws,
            json!({"__typename": "Workspace", "id": ws, "name": "Alice's"}),
        ),
        (
            &conv,
            json!({"__typename": "Conversation", "id": conv, "topic": "Plans", "workspace": {"id": ws}}),
        ),
        (
            &msg,
            json!({"__typename": "Message", "id": msg, "content": "hello", "conversation": {"topic": "Plans"}}),
        ),
    ];
    for (id, expected) in cases {
        let data = api.ok("alice", refetch, json!({"id": id})).await;
        // Exactly the fields selected for that type, in order, no marker left in.
        assert_eq!(
            serde_json::to_string(&data["node"]).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }
    let data = api.ok("alice", refetch, json!({"id": me})).await;
    assert_eq!(
        data["node"],
        json!({"__typename": "User", "id": me, "userId": "alice"})
    );
    // Every id the API hands out is an `ID` that `node` takes back.
    let ids = "query($id: ID!) { workspace(id: $id) { id conversations(first: 1) { nodes { workspaceId messages(first: 1) { nodes { id conversationId } } } } } }";
    let data = api.ok("alice", ids, json!({"id": ws})).await;
    let conversation = &data["workspace"]["conversations"]["nodes"][0];
    assert_eq!(conversation["workspaceId"], json!(ws));
    assert_eq!(conversation["messages"]["nodes"][0]["id"], json!(msg));
    assert_eq!(
        conversation["messages"]["nodes"][0]["conversationId"],
        json!(conv)
    );
}

#[tokio::test]
async fn nodes_reads_every_type_in_one_statement_in_the_order_asked() {
    let api = Api::new().await;
    let (ws, conv, msg) = alice_world(&api).await;
    let me = api.ok("alice", "{ me { id } }", json!({})).await["me"]["id"].clone();
    let missing = uuid::Uuid::new_v4().to_string();
    let query = "query($ids: [ID!]!) { nodes(ids: $ids) { id __typename } }";
    let ids = json!([msg, missing, ws, me, conv, ws]);
    let mut meter = statement_meter(&api.db).await;
    let before = statements_run(&mut meter).await;
    let data = api.ok("alice", query, json!({"ids": ids})).await;
    let spent = statements_run(&mut meter).await - before;
    assert_eq!(
        data["nodes"],
        json!([
            {"id": msg, "__typename": "Message"},
            null,
            {"id": ws, "__typename": "Workspace"},
            {"id": me, "__typename": "User"},
            {"id": conv, "__typename": "Conversation"},
            {"id": ws, "__typename": "Workspace"},
        ])
    );
    assert_eq!(spent, 1, "one statement for every id of the level");
    // A malformed id is the caller's mistake, named, before any read.
    let bad = api
        .gql("alice", "{ node(id: \"not-an-id\") { id } }", json!({}))
        .await;
    assert_eq!(code(&bad), "BAD_USER_INPUT", "{bad}");
    assert!(bad["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not-an-id"));
}

// --- GET --------------------------------------------------------------------------------

#[tokio::test]
async fn get_runs_the_operation_that_operation_name_names() {
    let api = Api::new().await;
    let token = api.token("alice");
    let document =
        "query Me { me { userId } } mutation Make { createWorkspace(input: {name: \"x\"}) { id } }";
    let (status, body) = json_of(
        &api,
        get_graphql(
            &[("query", document), ("operationName", "Me")],
            Some(&token),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["me"]["userId"], "alice");
    // The mutation of the same document, chosen over GET: refused, nothing written.
    let (status, headers, _) = api
        .send(get_graphql(
            &[("query", document), ("operationName", "Make")],
            Some(&token),
        ))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    let count = api
        .ok("alice", "{ workspaces { totalCount } }", json!({}))
        .await;
    assert_eq!(count["workspaces"]["totalCount"], 0);
    // Without a name, a document of two operations runs neither.
    let (_, body) = json_of(&api, get_graphql(&[("query", document)], Some(&token))).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    // Variables come as JSON text.
    let (_, body) = json_of(
        &api,
        get_graphql(
            &[
                (
                    "query",
                    "query($n: Int) { workspaces(first: $n) { totalCount } }",
                ),
                ("variables", "{\"n\": 1}"),
            ],
            Some(&token),
        ),
    )
    .await;
    assert_eq!(body["data"]["workspaces"]["totalCount"], 0, "{body}");
    let (status, body) = json_of(
        &api,
        get_graphql(
            &[("query", "{ me { id } }"), ("variables", "{")],
            Some(&token),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["extensions"]["field"], "variables");
}

// --- Persisted queries --------------------------------------------------------------------

#[tokio::test]
async fn automatic_persisted_queries_work_as_apollo_sends_them_over_post_and_get() {
    let api = Api::new().await;
    let token = api.token("alice");
    let query = "query Me { me { userId } }";
    let hash = sha256(query);
    let extensions = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
    // 1. The hash alone: not known yet, a 200 that Apollo's link recognises.
    let (status, body) = api
        .raw(
            Some(&token),
            json!({"operationName": "Me", "extensions": extensions}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND");
    // 2. The retry with the text registers it and runs it.
    let (_, body) = api
        .raw(
            Some(&token),
            json!({"query": query, "operationName": "Me", "extensions": extensions}),
        )
        .await;
    assert_eq!(body["data"]["me"]["userId"], "alice", "{body}");
    // 3. From then on the hash alone runs it, over POST and over GET (for CDNs).
    let (_, body) = api
        .raw(Some(&token), json!({"extensions": extensions}))
        .await;
    assert_eq!(body["data"]["me"]["userId"], "alice", "{body}");
    let (status, body) = json_of(
        &api,
        get_graphql(
            &[
                ("operationName", "Me"),
                ("extensions", &extensions.to_string()),
            ],
            Some(&token),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["me"]["userId"], "alice", "{body}");
    // A text that is not what its hash says is refused.
    let wrong = json!({"persistedQuery": {"version": 1, "sha256Hash": sha256("{ other }")}});
    let (_, body) = api
        .raw(Some(&token), json!({"query": query, "extensions": wrong}))
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    // A persisted mutation still goes over POST only.
    let mutation = "mutation { createWorkspace(input: {name: \"x\"}) { id } }";
    let mutation_ext = json!({"persistedQuery": {"version": 1, "sha256Hash": sha256(mutation)}});
    api.raw(
        Some(&token),
        json!({"query": mutation, "extensions": mutation_ext}),
    )
    .await;
    let (status, _, _) = api
        .send(get_graphql(
            &[("extensions", &mutation_ext.to_string())],
            Some(&token),
        ))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

/// A manifest as Apollo's `generate-persisted-query-manifest` writes it.
fn apollo_manifest(operations: &[(&str, &str)]) -> tempfile::NamedTempFile {
    let operations: Vec<Value> = operations
        .iter()
        .map(
            |(name, body)| json!({"id": sha256(body), "name": name, "type": "query", "body": body}),
        )
        .collect();
    let manifest = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": operations,
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest.to_string()).unwrap();
    file
}

#[tokio::test]
async fn persisted_only_mode_runs_registered_operations_and_nothing_else() {
    let me = "query Me { me { userId } }";
    let manifest = apollo_manifest(&[("Me", me)]);
    let path = manifest.path().to_str().unwrap();
    let api = Api::with_env(&[("PERSISTED_DOCUMENTS", path), ("PERSISTED_ONLY", "true")]).await;
    let token = api.token("alice");
    let id = sha256(me);
    // By `documentId` (GraphQL over HTTP; `sha256:` prefixed or not), by Relay's
    // `doc_id`, by Apollo's persisted-query hash, over POST and GET.
    for body in [
        json!({"documentId": format!("sha256:{id}")}),
        json!({"documentId": id}),
        json!({"doc_id": id}),
        json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": id}}}),
    ] {
        let (_, response) = api.raw(Some(&token), body.clone()).await;
        assert_eq!(
            response["data"]["me"]["userId"], "alice",
            "{body}: {response}"
        );
    }
    let (_, response) = json_of(&api, get_graphql(&[("documentId", &id)], Some(&token))).await;
    assert_eq!(response["data"]["me"]["userId"], "alice", "{response}");
    // Freeform text, even the registered text itself, is refused.
    let (_, response) = api.raw(Some(&token), json!({"query": me})).await;
    assert_eq!(code(&response), "PERSISTED_QUERY_ID_REQUIRED", "{response}");
    // An unknown id or hash, and an attempt to register a new one.
    let other = "{ workspaces { totalCount } }";
    for body in [
        json!({"documentId": sha256(other)}),
        json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(other)}}}),
        json!({"query": other, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(other)}}}),
    ] {
        let (status, response) = api.raw(Some(&token), body.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            code(&response),
            "PERSISTED_QUERY_NOT_IN_LIST",
            "{body}: {response}"
        );
    }
    // The same rules over the WebSocket.
    let mut socket = common::ws::WsClient::ready(&api.http.base, &token).await;
    socket
        .send(json!({"id": "1", "type": "subscribe", "payload": {"query": other}}))
        .await;
    let refused = socket.message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "PERSISTED_QUERY_ID_REQUIRED"
    );
    socket
        .send(json!({"id": "2", "type": "subscribe", "payload": {"documentId": id}}))
        .await;
    let answered = socket.next_of("2").await;
    assert_eq!(answered["data"]["me"]["userId"], "alice", "{answered}");
}

#[test]
fn a_manifest_that_cannot_be_read_stops_start_up_with_its_reason() {
    let broken = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(broken.path(), r#"{"Me": "query Me { me { "}"#).unwrap();
    let path = broken.path().to_str().unwrap();
    let out = common::cortex_command(&[
        ("DATABASE_URL", "postgres://127.0.0.1:1/none"),
        ("PERSISTED_DOCUMENTS", path),
    ])
    .arg("serve")
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PERSISTED_DOCUMENTS"), "{stderr}");
}

// --- CORS and production mode -------------------------------------------------------------

fn preflight(origin: &str) -> Request<Body> {
    Request::options("/graphql")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,apollographql-client-name,apollographql-client-version,x-request-id",
        )
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_listed_origin_passes_the_preflight_apollo_client_sends_and_reads_the_request_id() {
    let origin = "http://app.example";
    let api = Api::with_env(&[("CORS_ORIGINS", origin)]).await;
    let (status, headers, _) = api.send(preflight(origin)).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(headers["access-control-allow-origin"], origin);
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    for header in [
        "authorization",
        "content-type",
        "apollographql-client-name",
        "apollographql-client-version",
        "x-request-id",
        "cortex-lsn",
    ] {
        assert!(allowed.contains(header), "{header} not in {allowed}");
    }
    assert_eq!(headers["access-control-max-age"], "7200");
    // The actual request: the browser may read `x-request-id`, and the position a
    // write answers with (`cortex-lsn`, README: Running more than one).
    let mut request = graphql_post(
        Some(&api.token("alice")),
        &json!({"query": "{ me { userId } }"}),
    );
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    let (_, headers, _) = api.send(request).await;
    assert_eq!(
        headers["access-control-expose-headers"],
        "x-request-id,cortex-lsn"
    );
    assert!(headers.contains_key("x-request-id"));
    // Another origin gets no grant.
    let (_, headers, _) = api.send(preflight("http://evil.example")).await;
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn production_mode_returns_no_cost_extension_and_development_does() {
    let query = json!({"query": "{ me { userId } }"});
    let development = Api::new().await;
    let (_, body) = development
        .raw(Some(&development.token("alice")), query.clone())
        .await;
    assert_eq!(body["extensions"]["cost"]["sqlStatements"], 1, "{body}");
    let secret = std::str::from_utf8(common::SECRET).unwrap();
    let production = Api::with_env(&[("JWT_SECRET", secret)]).await;
    let (_, body) = production
        .raw(Some(&production.token("alice")), query.clone())
        .await;
    assert_eq!(body["data"]["me"]["userId"], "alice", "{body}");
    assert!(body.get("extensions").is_none(), "{body}");
    let opted_in = Api::with_env(&[("JWT_SECRET", secret), ("COST_EXTENSION", "true")]).await;
    let (_, body) = opted_in.raw(Some(&opted_in.token("alice")), query).await;
    assert!(body["extensions"]["cost"].is_object(), "{body}");
}

// --- Errors clients show --------------------------------------------------------------------

#[tokio::test]
async fn parse_and_validation_errors_say_where_and_what_without_parser_dumps() {
    let api = Api::new().await;
    let broken = api.gql("alice", "{ me { id ", json!({})).await;
    assert_eq!(code(&broken), "BAD_USER_INPUT", "{broken}");
    let error = &broken["errors"][0];
    let message = error["message"].as_str().unwrap();
    assert!(
        !message.contains('\n') && !message.contains("-->"),
        "a parser dump: {message}"
    );
    assert!(message.starts_with("Syntax error: expected"), "{message}");
    assert_eq!(error["locations"][0]["line"], 1, "{broken}");
    let unknown = api.gql("alice", "{ me { nope } }", json!({})).await;
    let error = &unknown["errors"][0];
    assert_eq!(code(&unknown), "BAD_USER_INPUT", "{unknown}");
    assert_eq!(error["extensions"]["field"], "nope", "{unknown}");
    assert_eq!(
        error["locations"][0],
        json!({"line": 1, "column": 8}),
        "{unknown}"
    );
}

// --- The README's examples ----------------------------------------------------------------

const README: &str = include_str!("../README.md");

/// The ```graphql blocks of the README.
fn readme_operations() -> Vec<String> {
    README
        .split("```graphql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().to_string())
        .collect()
}

/// `query` written Relay-style: every `nodes { … }` as `edges { cursor node { … } }`.
fn edges_style(query: &str) -> String {
    let mut out = String::new();
    let mut closers: Vec<bool> = Vec::new();
    let mut rest = query;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("nodes {") {
            out.push_str("edges { cursor node {");
            closers.push(true);
            rest = &rest["nodes {".len()..];
            continue;
        }
        if c == '{' {
            closers.push(false);
        } else if c == '}' && closers.pop() == Some(true) {
            out.push_str("} ");
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[tokio::test]
async fn every_readme_example_passes_the_default_limits_in_nodes_and_edges_style() {
    let api = Api::new().await;
    let operations = readme_operations();
    assert!(operations.len() >= 5, "{operations:?}");
    for operation in operations {
        for text in [operation.clone(), edges_style(&operation)] {
            let response = api.gql("alice", &text, json!({})).await;
            let refused = response["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["extensions"]["limit"].is_string());
            assert!(refused.is_none(), "{text}\n{response:#}");
        }
    }
    let deepest = edges_style(&readme_operations()[0]);
    assert!(deepest.contains("edges { cursor node { content timestamp sender { name } } }"));
}

/// A number the README states in `before … after`, digits and commas.
fn readme_figure(before: &str, after: &str) -> u64 {
    let start = README
        .find(before)
        .unwrap_or_else(|| panic!("README: {before}"))
        + before.len();
    let figure = README[start..].split(after).next().unwrap();
    figure
        .replace(',', "")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{figure}"))
}

#[tokio::test]
async fn the_readme_states_what_its_nested_query_costs() {
    let nested = &readme_operations()[0];
    let statements = readme_figure("It costs ", " SQL statements");
    let complexity = readme_figure("(the README query costs ", ")");
    // Full pages, so that the count holds "however many rows come back".
    let api = Api::new().await;
    for w in 0..2 {
        let name = format!("w{w}");
        let (_, conv) =
            workspace_with_conversation(&api, "alice", &name, "t", json!(["bob"])).await;
        api.ok("bob", SEND, json!({"c": conv, "text": "hi"})).await;
    }
    let (_, body) = api
        .raw(Some(&api.token("alice")), json!({"query": nested}))
        .await;
    assert!(body.get("errors").is_none(), "{body:#}");
    assert_eq!(body["data"]["workspaces"]["totalCount"], 2);
    assert_eq!(
        body["extensions"]["cost"]["sqlStatements"], statements,
        "{body}"
    );
    // The complexity: it passes a limit of exactly that, and not one less.
    for (limit, passes) in [(complexity, true), (complexity - 1, false)] {
        let limit = limit.to_string();
        let api = Api::with_env(&[("QUERY_MAX_COMPLEXITY", &limit)]).await;
        let response = api.gql("alice", nested, json!({})).await;
        let refused = response["errors"][0]["extensions"]["limit"] == "complexity";
        assert_eq!(!refused, passes, "limit {limit}: {response}");
    }
}

// --- A real browser on another origin -----------------------------------------------------

/// Serves a blank page on its own loopback port: an origin other than the API's.
async fn serve_page() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let page = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html("<html><body>app</body></html>") }),
    );
    tokio::spawn(async move { axum::serve(listener, page).await.unwrap() });
    origin
}

/// What `fetch` from the page saw: status, the `x-request-id` it could read, the
/// body, or the error the browser gave the page.
const FETCH_AS_APOLLO: &str = r#"
const [url, token, done] = arguments;
fetch(url, {
  method: 'POST',
  headers: {
    'content-type': 'application/json',
    'authorization': 'Bearer ' + token,
    'apollographql-client-name': 'web-app',
    'apollographql-client-version': '1.2.3',
    'x-request-id': 'from-the-browser-1',
  },
  body: JSON.stringify({ query: '{ me { userId } }' }),
})
  .then(async (r) => done({ status: r.status, requestId: r.headers.get('x-request-id'), body: await r.json() }))
  .catch((e) => done({ error: String(e) }));
"#;

#[tokio::test]
async fn a_browser_page_on_a_listed_origin_calls_the_api_with_apollos_headers() {
    let (listed, unlisted) = (serve_page().await, serve_page().await);
    let api = Api::with_env(&[("CORS_ORIGINS", &listed)]).await;
    let Some(browser) = common::browser::Browser::start().await else {
        return;
    };
    let c = &browser.client;
    let url = format!("{}/graphql", api.http.base);
    let token = api.token("alice");
    let args = || vec![json!(url), json!(token)];
    c.goto(&listed).await.unwrap();
    let seen = c.execute_async(FETCH_AS_APOLLO, args()).await.unwrap();
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(seen["body"]["data"]["me"]["userId"], "alice", "{seen}");
    // The page reads the request id it sent (exposed), to quote it in bug reports.
    assert_eq!(seen["requestId"], "from-the-browser-1", "{seen}");
    // From an origin not listed, the browser refuses the page the response.
    c.goto(&unlisted).await.unwrap();
    let seen = c.execute_async(FETCH_AS_APOLLO, args()).await.unwrap();
    assert!(
        seen["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{seen}"
    );
    browser.client.clone().close().await.unwrap();
}

// --- Apollo Client itself -------------------------------------------------------------------

/// `node` and `npm` (the machine's Node.js), `None` outside CI when missing.
fn node_tools() -> Option<()> {
    let found = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found("node") && found("npm") {
        return Some(());
    }
    assert!(std::env::var_os("CI").is_none(), "CI needs node and npm");
    eprintln!("SKIPPED: node and npm are not installed");
    None
}

/// `tests/clients` with its packages installed from its lock file.
fn client_packages() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    if !dir.join("node_modules/@apollo/client").exists() {
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .expect("run npm ci");
        assert!(
            out.status.success(),
            "npm ci: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

#[tokio::test]
async fn apollo_client_with_persisted_queries_over_batch_http_link_and_a_node_refetch() {
    if node_tools().is_none() {
        return;
    }
    let dir = client_packages();
    let api = Api::new().await;
    let (ws, conv, _) = alice_world(&api).await;
    let url = format!("{}/graphql", api.http.base);
    let token = api.token("alice");
    let out = tokio::process::Command::new("node")
        .arg(dir.join("apollo.mjs"))
        .args([&url, &token, &ws])
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["me"]["userId"], "alice", "{seen:#}");
    assert_eq!(seen["workspaces"][0]["id"], json!(ws), "{seen:#}");
    let edge = &seen["workspaces"][0]["conversations"]["edges"][0];
    assert_eq!(edge["node"]["id"], json!(conv), "{seen:#}");
    // First round: one batch of the two hashes, then the retry with texts.
    let first = &seen["requests"][0]["operations"];
    assert_eq!(first.as_array().unwrap().len(), 2, "one batch: {seen:#}");
    assert!(first
        .as_array()
        .unwrap()
        .iter()
        .all(|op| op["withText"] == false));
    assert!(
        seen["requests"][1]["operations"][0]["withText"] == true,
        "{seen:#}"
    );
    // Second round: hashes only, one request, both answered.
    let second = seen["secondRound"].as_array().unwrap();
    assert_eq!(second.len(), 1, "{seen:#}");
    assert!(second[0]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|op| op["withText"] == false));
    assert_eq!(seen["again"][0]["me"]["userId"], "alice", "{seen:#}");
    // The Relay-style refetch, before and after the mutation, and one cache entry.
    assert_eq!(seen["refetched"]["name"], "Alice's", "{seen:#}");
    assert_eq!(seen["after"]["name"], "Renamed by Apollo", "{seen:#}");
    assert_eq!(seen["cached"]["name"], "Renamed by Apollo", "{seen:#}");
}

//! Hostile queries and bad input over real HTTP against a real database: every
//! query limit refuses with `BAD_USER_INPUT` naming the limit before any SQL runs;
//! request-level limits (body size, batch size, content type, malformed bodies)
//! answer with a status and a code; production mode turns off introspection,
//! suggestions and the playground; and the server keeps serving afterwards.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{code, graphql_post, statement_meter, statements_run, Api};
use serde_json::{json, Value};

/// The README's nested example: it must pass every limit.
const README_QUERY: &str = "{ workspaces(first: 10) { nodes { name conversations(first: 10) { nodes { topic messages(last: 20) { nodes { content timestamp sender { name } } } } } } } }";

/// Sends `query` as alice and returns the response, asserting it ran no SQL.
async fn refused_without_sql(api: &Api, query: &str) -> Value {
    let mut meter = statement_meter(&api.db).await;
    let before = statements_run(&mut meter).await;
    let response = api.gql("alice", query, json!({})).await;
    let spent = statements_run(&mut meter).await - before;
    assert_eq!(spent, 0, "SQL ran for a refused query: {response:#}");
    assert!(response["data"].is_null(), "{response:#}");
    response
}

fn limit(response: &Value) -> &str {
    response["errors"][0]["extensions"]["limit"]
        .as_str()
        .unwrap_or("<none>")
}

fn aliases(n: usize) -> String {
    let fields: Vec<String> = (0..n).map(|i| format!("a{i}: __typename")).collect();
    format!("{{ {} }}", fields.join(" "))
}

#[tokio::test]
async fn each_query_limit_refuses_with_its_name_before_any_sql() {
    let api = Api::new().await;
    // The caller's row exists before measuring (authentication reads it).
    api.ok("alice", "{ me { id } }", json!({})).await;

    let directives: String = (0..51)
        .map(|_| "__typename @include(if: true)".to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let ten_times_readme = README_QUERY.replace("workspaces(first: 10)", "workspaces(first: 100)");
    let cases: Vec<(&str, String, &str)> = vec![
        ("16 aliases", aliases(16), "aliases"),
        ("graphql-cop's 101 aliases", aliases(101), "aliases"),
        ("51 directives", format!("{{ {directives} }}"), "directives"),
        (
            "graphql-cop's directive overloading",
            "query cop { __typename @aa@aa@aa@aa@aa@aa@aa@aa@aa@aa }".into(),
            "directives",
        ),
        (
            "10,001 tokens",
            format!("{{ {} }}", "a ".repeat(9_999)),
            "tokens",
        ),
        ("ten times the README query", ten_times_readme, "complexity"),
        (
            "a page of 100 × 100 × 100",
            "{ workspaces(first: 100) { nodes { conversations(first: 100) { nodes { messages(first: 100) { nodes { id } } } } } } }".into(),
            "complexity",
        ),
        (
            "graphql-cop's circular introspection",
            "query cop { __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }".into(),
            "introspection",
        ),
        (
            "1,600 nested lists",
            format!("{{ me(x: {}1{}) {{ id }} }}", "[".repeat(1600), "]".repeat(1600)),
            "nesting",
        ),
        (
            "1,300 nested input objects",
            format!("{{ me(x: {}1{}) {{ id }} }}", "{a: ".repeat(1300), "}".repeat(1300)),
            "nesting",
        ),
    ];
    for (what, query, expected) in cases {
        let response = refused_without_sql(&api, &query).await;
        assert_eq!(code(&response), "BAD_USER_INPUT", "{what}: {response:#}");
        assert_eq!(limit(&response), expected, "{what}: {response:#}");
        assert_eq!(
            response["errors"].as_array().unwrap().len(),
            1,
            "{what}: one error, not one per offending item"
        );
    }

    // At the limits, queries pass; and the server is alive after all of the above.
    for query in [aliases(15), README_QUERY.to_string()] {
        let response = api.gql("alice", &query, json!({})).await;
        assert!(response.get("errors").is_none(), "{response:#}");
    }
    let introspection = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/introspection.graphql"
    ))
    .unwrap();
    let response = api.gql("alice", &introspection, json!({})).await;
    assert!(response["data"]["__schema"].is_object(), "{response:#}");
}

#[tokio::test]
async fn the_limits_are_configurable() {
    let api = Api::with_env(&[
        ("QUERY_MAX_ALIASES", "2"),
        ("QUERY_MAX_DEPTH", "2"),
        ("QUERY_MAX_COMPLEXITY", "50"),
        ("BATCH_MAX_OPERATIONS", "2"),
    ])
    .await;
    assert_eq!(
        limit(&api.gql("alice", &aliases(3), json!({})).await),
        "aliases"
    );
    api.ok("alice", &aliases(2), json!({})).await;
    let deep = "{ workspaces { nodes { name } } }";
    assert_eq!(limit(&api.gql("alice", deep, json!({})).await), "depth");
    let wide = "{ me { id } workspaces(first: 60) { totalCount } }";
    let api = Api::with_env(&[("QUERY_MAX_COMPLEXITY", "50")]).await;
    assert_eq!(
        limit(&api.gql("alice", wide, json!({})).await),
        "complexity"
    );
}

#[tokio::test]
async fn request_level_limits_answer_with_a_status_and_a_code() {
    let api = Api::with_env(&[("BATCH_MAX_OPERATIONS", "3")]).await;
    let token = api.token("alice");
    let post = |content_type: &str, body: Vec<u8>| {
        Request::post("/graphql")
            .header("content-type", content_type)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body))
            .unwrap()
    };
    let json_of = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).unwrap();

    // A body over MAX_BODY_BYTES (100 KiB): 413, with a JSON error naming the limit.
    let big = json!({"query": "{ me { id } }", "variables": {"x": "y".repeat(200_000)}});
    let (status, _, body) = api
        .send(post("application/json", big.to_string().into_bytes()))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json_of(&body)["errors"][0]["extensions"]["limit"], "body");

    // Malformed JSON, invalid UTF-8, a body that is not a request: 400 with a code.
    for bad in [
        b"{\"query\": ".to_vec(),
        b"{\"query\": \"{ me { id } }\xff\"}".to_vec(),
        b"42".to_vec(),
    ] {
        let (status, _, body) = api.send(post("application/json", bad.clone())).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(&bad)
        );
        assert_eq!(code(&json_of(&body)), "BAD_USER_INPUT");
    }

    // graphql-cop's url-encoded POST and a form's text/plain: refused, nothing runs.
    for content_type in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
    ] {
        let (status, _, body) = api
            .send(post(content_type, b"query=%7Bme%7Bid%7D%7D".to_vec()))
            .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        assert_eq!(code(&json_of(&body)), "BAD_USER_INPUT");
    }

    // Array batching: up to BATCH_MAX_OPERATIONS, then refused as a whole.
    let batch = |n: usize| {
        Value::Array(
            (0..n)
                .map(|_| json!({"query": "query cop { __typename }"}))
                .collect(),
        )
    };
    let (status, r) = api.raw(Some(&token), batch(3)).await;
    assert_eq!(
        (status, r.as_array().map(Vec::len)),
        (StatusCode::OK, Some(3))
    );
    let (status, r) = api.raw(Some(&token), batch(4)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(r["errors"][0]["extensions"]["limit"], "batch");

    // A GET mutation is refused (graphql-cop's "GET mutation"); a GET query works.
    let get = Request::get("/graphql?query=mutation%7BdeleteWorkspace(id%3A%2200000000-0000-0000-0000-000000000000%22)%7D")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = api.send(get).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers.get("allow").unwrap(), "POST");
}

#[tokio::test]
async fn errors_carry_a_code_and_no_internals_and_no_trace() {
    let api = Api::new().await;
    // graphql-cop's "unhandled errors" probe and friends: every error has a code,
    // none shows a stack, SQL or a Rust type; no tracing extension is ever sent.
    for query in [
        "qwerty cop { abc }",
        "query cop { __typenam }",
        "{ workspace(id: \"not-a-uuid\") { id } }",
        "{ workspaces(first: -1) { totalCount } }",
        "{ workspaces(after: \"bm90IGEgY3Vyc29y\") { totalCount } }",
        "{ workspaces(filter: {metadata: {contains: 5}}) { totalCount } }",
        "{",
    ] {
        let response = api.gql("alice", query, json!({})).await;
        let text = response.to_string();
        assert!(response["errors"].is_array(), "{query}: {response:#}");
        for error in response["errors"].as_array().unwrap() {
            assert!(
                error["extensions"]["code"].is_string(),
                "{query}: {error:#}"
            );
        }
        for leak in [
            "panicked",
            "SELECT",
            "diesel",
            "src/",
            "Traceback",
            "exception",
        ] {
            assert!(!text.contains(leak), "{query} leaks {leak:?}: {text}");
        }
        assert!(response["extensions"]["tracing"].is_null(), "{text}");
    }
}

#[tokio::test]
async fn production_mode_turns_off_introspection_suggestions_and_the_playground() {
    let production = Api::with_env(&[("JWT_SECRET", "production-secret-0123456789abcdef")]).await;
    let token = production.token("alice");
    let query = |q: &'static str| json!({"query": q});

    let (_, r) = production
        .raw(
            Some(&token),
            query("query cop { __schema { queryType { name } } }"),
        )
        .await;
    assert!(
        r["data"].is_null() || r["data"]["__schema"].is_null(),
        "{r:#}"
    );
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r:#}");
    let (_, r) = production
        .raw(
            Some(&token),
            query("query cop { __type(name: \"Query\") { name } }"),
        )
        .await;
    assert!(
        r["data"].is_null() || r["data"]["__type"].is_null(),
        "{r:#}"
    );

    // Field suggestions ("did you mean") would leak the schema.
    let (_, r) = production.raw(Some(&token), query("{ workspace }")).await;
    assert_eq!(code(&r), "BAD_USER_INPUT");
    assert!(!r.to_string().contains("Did you mean"), "{r:#}");
    let (_, r) = production
        .raw(Some(&token), query("{ workspacez { totalCount } }"))
        .await;
    assert!(
        !r.to_string().to_lowercase().contains("did you mean"),
        "{r:#}"
    );

    // No IDE: GraphiQL and its assets are not served.
    for path in ["/", "/graphiql", "/graphiql/assets/graphiql.min.js"] {
        let (status, _, _) = production
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // Real queries still work.
    let (_, r) = production
        .raw(Some(&token), query("{ me { userId } }"))
        .await;
    assert_eq!(r["data"]["me"]["userId"], "alice", "{r:#}");

    // INTROSPECTION=true turns introspection back on (suggestions stay off);
    // CORTEX_DEV=true is development mode, with both.
    let opted_in = Api::with_env(&[
        ("JWT_SECRET", "production-secret-0123456789abcdef"),
        ("INTROSPECTION", "true"),
    ])
    .await;
    let (_, r) = opted_in
        .raw(Some(&token), query("{ __schema { queryType { name } } }"))
        .await;
    assert_eq!(r["data"]["__schema"]["queryType"]["name"], "Query", "{r:#}");
    let (_, r) = opted_in
        .raw(Some(&token), query("{ workspacez { totalCount } }"))
        .await;
    assert!(
        !r.to_string().to_lowercase().contains("did you mean"),
        "{r:#}"
    );

    let dev = Api::with_env(&[
        ("JWT_SECRET", "production-secret-0123456789abcdef"),
        ("CORTEX_DEV", "true"),
    ])
    .await;
    let (_, r) = dev
        .raw(Some(&token), query("{ workspacez { totalCount } }"))
        .await;
    assert!(
        r.to_string().to_lowercase().contains("did you mean"),
        "{r:#}"
    );
}

#[tokio::test]
async fn a_statement_over_db_statement_timeout_is_cancelled_as_timeout() {
    let db = common::TestDb::new().await;
    let config = cortex::config::PoolConfig {
        statement_timeout: std::time::Duration::from_secs(1),
        ..common::test_pool_config()
    };
    let pool = cortex::db::Database::connect(&db.url, &config)
        .await
        .unwrap();
    let mut conn = pool.conn(None).await.unwrap();
    let started = std::time::Instant::now();
    let result =
        diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT pg_sleep(5)"), &mut *conn)
            .await;
    let error = cortex::error::AppError::from(result.unwrap_err());
    assert_eq!(error.code(), "TIMEOUT");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn an_exhausted_pool_answers_unavailable_after_the_pool_timeout() {
    let db = common::TestDb::new().await;
    let config = db.config_with(&[("DB_POOL_SIZE", "1"), ("DB_POOL_TIMEOUT", "1")]);
    let pool = cortex::db::Database::connect(&db.url, &config.pool)
        .await
        .unwrap();
    let api_state = cortex::AppState::new(pool.clone(), config, common::SECRET);
    let http = common::HttpServer::start(api_state).await;
    let token = cortex::auth::Authenticator::new(common::SECRET).mint("alice", None, None, 60);
    // A slow request holds the only connection.
    let held = pool.conn(None).await.unwrap();
    let started = std::time::Instant::now();
    let request = graphql_post(Some(&token), &json!({"query": "{ me { id } }"}));
    let (status, _, body) = http.send(request).await;
    let waited = started.elapsed();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(code(&body), "UNAVAILABLE", "{body:#}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_secs(3),
        "waited {waited:?} for a 1 s pool timeout"
    );
    // Once the connection is back, the same request succeeds.
    drop(held);
    let request = graphql_post(Some(&token), &json!({"query": "{ me { userId } }"}));
    let (status, _, body) = http.send(request).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn bad_values_are_bad_user_input_and_write_nothing() {
    let api = Api::new().await;
    let ws = api
        .ok(
            "alice",
            "mutation { createWorkspaceWithConversation(workspace: {name: \"w\"}, conversation: {topic: \"t\"}) { conversation { id } } }",
            json!({}),
        )
        .await;
    let conv = ws["createWorkspaceWithConversation"]["conversation"]["id"].clone();
    let send = "mutation($c: ID!, $text: String!) { sendMessage(input: {conversationId: $c, content: $text}) { id } }";
    for (what, query, variables) in [
        ("a NUL byte in content", send, json!({"c": conv, "text": "nul\u{0}byte"})),
        ("an invalid UUID", send, json!({"c": "not-a-uuid", "text": "x"})),
        ("first: 100000", "{ workspaces(first: 100000) { totalCount } }", json!({})),
        ("last: -1", "{ workspaces(last: -1) { totalCount } }", json!({})),
        ("a forged cursor", "{ workspaces(after: \"AAAA\") { totalCount } }", json!({})),
        ("a non-object contains", "{ workspaces(filter: {metadata: {contains: [1]}}) { totalCount } }", json!({})),
        (
            "filter nesting over 5",
            "{ workspaces(filter: {not: {not: {not: {not: {not: {not: {name: {eq: \"x\"}}}}}}}}) { totalCount } }",
            json!({}),
        ),
    ] {
        let response = api.gql("alice", query, variables).await;
        assert_eq!(code(&response), "BAD_USER_INPUT", "{what}: {response:#}");
    }
    let count = api
        .ok(
            "alice",
            "{ workspaces { nodes { conversations { nodes { messages { totalCount } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        count["workspaces"]["nodes"][0]["conversations"]["nodes"][0]["messages"]["totalCount"],
        0
    );
}

/// graphql-cop's probes, each with the rule it uses to report a finding, against
/// production mode (`JWT_SECRET` set, no `CORTEX_DEV`): none reports, except
/// array batching at the default cap of 10 (see the end).
#[tokio::test]
async fn graphql_cop_probes_against_production_mode() {
    let api = Api::with_env(&[("JWT_SECRET", "production-secret-0123456789abcdef")]).await;
    let token = api.token("alice");
    let post = |body: Value| {
        let token = token.clone();
        let api = &api;
        async move { api.raw(Some(&token), body).await.1 }
    };
    let get = |path: String| {
        let token = token.clone();
        let api = &api;
        async move {
            let request = Request::get(path)
                .header("authorization", format!("Bearer {token}"))
                .header("accept", "text/html,application/json")
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = api.send(request).await;
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };

    // Introspection: finding when `__schema` comes back.
    let r =
        post(json!({"query": "query cop { __schema { types { name fields { name } } } }"})).await;
    assert!(r["data"]["__schema"].is_null(), "introspection: {r:#}");
    // Field suggestions: finding when an error says "Did you mean".
    let r = post(json!({"query": "query cop { __schema { directive } }"})).await;
    assert!(
        !r.to_string().contains("Did you mean"),
        "suggestions: {r:#}"
    );
    let r = post(json!({"query": "query cop { workspace }"})).await;
    assert!(
        !r.to_string().contains("Did you mean"),
        "suggestions: {r:#}"
    );
    // IDE: finding when the endpoint or the usual IDE paths serve GraphiQL/Playground.
    for path in ["/graphql", "/", "/graphiql", "/playground"] {
        let (_, body) = get(path.to_string()).await;
        let body = body.to_lowercase();
        assert!(
            !body.contains("graphiql") && !body.contains("graphql playground"),
            "IDE at {path}: {body}"
        );
    }
    // Trace mode: finding when `extensions.tracing` comes back.
    let r = post(json!({"query": "query cop { __typename }"})).await;
    assert_eq!(r["data"]["__typename"], "Query");
    assert!(r["extensions"]["tracing"].is_null(), "tracing: {r:#}");
    // Unhandled errors: finding when an error shows an exception or a stack.
    let r = post(json!({"query": "query cop { __typename {}"})).await;
    let text = r.to_string();
    assert!(r["errors"][0]["extensions"]["code"].is_string(), "{r:#}");
    assert!(
        !text.contains("Exception") && !text.contains("stack"),
        "{text}"
    );
    // 101 aliases: finding when the query runs.
    let r = post(json!({"query": aliases(101).replacen('{', "query cop {", 1)})).await;
    assert!(r["data"].is_null(), "aliases: {r:#}");
    // Directive overloading: finding when 10 repeated directives give 10 errors.
    let r = post(json!({"query": "query cop { __typename @aa@aa@aa@aa@aa@aa@aa@aa@aa@aa }"})).await;
    assert_eq!(
        r["errors"].as_array().map(Vec::len),
        Some(1),
        "directives: {r:#}"
    );
    // Field duplication: finding when 500 copies of a field run.
    let r = post(json!({"query": format!("query cop {{ {} }}", "__typename ".repeat(500))})).await;
    assert!(r["data"].is_null(), "field duplication: {r:#}");
    assert_eq!(limit(&r), "duplicates");
    // Circular introspection: finding when it runs.
    let r = post(json!({"query": "query cop { __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }"})).await;
    assert!(
        r["data"].is_null() || r["data"]["__schema"].is_null(),
        "circular: {r:#}"
    );
    // GET mutation: finding when it runs.
    let (status, body) = get("/graphql?query=mutation%20cop%20%7B__typename%7D".into()).await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "GET mutation: {body}"
    );
    // URL-encoded POST (CSRF): finding when it runs.
    let request = Request::post("/graphql")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from("query=query%20cop%20%7B__typename%7D"))
        .unwrap();
    let (status, _, _) = api.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Array batching: graphql-cop reports batches of 10 or more. Cortex takes up
    // to BATCH_MAX_OPERATIONS (default 10, the batch size Apollo's BatchHttpLink
    // sends), so it reports this one at the default; 11 are refused.
    let batch = |n: usize| {
        Value::Array(
            (0..n)
                .map(|_| json!({"query": "query cop { __typename }"}))
                .collect(),
        )
    };
    let r = post(batch(11)).await;
    assert_eq!(limit(&r), "batch", "{r:#}");
    // GET queries are served on purpose (read-only, cacheable; GraphQL over HTTP).
    let (status, body) = get("/graphql?query=query%20cop%20%7B__typename%7D".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_request_over_request_timeout_is_cut_with_timeout() {
    let db = common::TestDb::new().await;
    // The pool would wait 10 s for a connection; the request may take 1 s.
    let config = db.config_with(&[
        ("DB_POOL_SIZE", "1"),
        ("DB_POOL_TIMEOUT", "10"),
        ("REQUEST_TIMEOUT", "1"),
    ]);
    let pool = cortex::db::Database::connect(&db.url, &config.pool)
        .await
        .unwrap();
    let http =
        common::HttpServer::start(cortex::AppState::new(pool.clone(), config, common::SECRET))
            .await;
    let token = cortex::auth::Authenticator::new(common::SECRET).mint("alice", None, None, 60);
    let query = |q: &str| graphql_post(Some(&token), &json!({ "query": q }));
    // The caller's row is created first, so the slow part is the query itself.
    let (status, _, _) = http.send(query("{ me { id } }")).await;
    assert_eq!(status, StatusCode::OK);
    let held = pool.conn(None).await.unwrap();
    let started = std::time::Instant::now();
    let (status, _, body) = http.send(query("{ workspaces { totalCount } }")).await;
    let took = started.elapsed();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body:#}");
    assert_eq!(code(&body), "TIMEOUT");
    assert!(
        took < std::time::Duration::from_secs(3),
        "took {took:?} with REQUEST_TIMEOUT=1"
    );
    drop(held);
    let (status, _, _) = http.send(query("{ workspaces { totalCount } }")).await;
    assert_eq!(status, StatusCode::OK, "the pool serves again");
}

#[tokio::test]
async fn a_bracket_bomb_sent_by_get_is_refused_before_parsing() {
    let api = Api::new().await;
    let token = api.token("alice");
    let bomb = format!(
        "{{ me(x: {}1{}) {{ id }} }}",
        "[".repeat(1600),
        "]".repeat(1600)
    );
    let encoded: String = bomb.bytes().map(|b| format!("%{b:02X}")).collect();
    let request = Request::get(format!("/graphql?query={encoded}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = api.send(request).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(limit(&body), "nesting", "{body:#}");
    api.ok("alice", "{ me { id } }", json!({})).await;
}

#[tokio::test]
async fn lists_without_a_page_are_costed_by_their_bound() {
    let api = Api::new().await;
    api.ok("alice", "{ me { id } }", json!({})).await;
    // `participants(first:)` returns up to `first` users (default 100, at most
    // 1,000); `latestMessages` returns `limit` messages.
    let participants = "{ workspaces(first: 10) { nodes { conversations(first: 10) { nodes { participants(first: 1000) { name } } } } } }";
    let latest = |limit: u32| {
        format!("{{ workspaces(first: 30) {{ nodes {{ conversations(first: 30) {{ nodes {{ latestMessages(limit: {limit}) {{ content }} }} }} }} }} }}")
    };
    for query in [participants.to_string(), latest(100)] {
        let response = refused_without_sql(&api, &query).await;
        assert_eq!(limit(&response), "complexity", "{query}: {response:#}");
    }
    api.ok("alice", &latest(1), json!({})).await;
    let one_level = "{ workspaces(first: 10) { nodes { conversations(first: 10) { nodes { participants { name } } } } } }";
    api.ok("alice", one_level, json!({})).await;
}

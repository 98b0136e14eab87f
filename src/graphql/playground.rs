//! The GraphiQL playground at `/` and `/graphiql`, with its assets served by
//! Cortex itself (no CDN).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::graphql::http::GraphqlState;

/// `GET /` and `GET /graphiql`: the playground, with assets served by Cortex itself.
pub async fn graphiql(State(state): State<GraphqlState>) -> Response {
    let headers_json = match &state.playground_token {
        Some(token) => serde_json::json!({"Authorization": format!("Bearer {token}")}).to_string(),
        None => "{}".to_string(),
    };
    let page = PLAYGROUND_HTML.replace("{{HEADERS}}", &html_escape(&headers_json));
    let mut response = Html(page).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The playground's static files, embedded at build time.
pub async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match name.as_str() {
        "graphiql.min.js" => (include_bytes!("assets/graphiql.min.js"), "text/javascript"),
        "graphiql.min.css" => (include_bytes!("assets/graphiql.min.css"), "text/css"),
        "react.production.min.js" => (
            include_bytes!("assets/react.production.min.js"),
            "text/javascript",
        ),
        "react-dom.production.min.js" => (
            include_bytes!("assets/react-dom.production.min.js"),
            "text/javascript",
        ),
        "graphql-ws.min.js" => (
            include_bytes!("assets/graphql-ws.min.js"),
            "text/javascript",
        ),
        "init.js" => (INIT_JS.as_bytes(), "text/javascript"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

const PLAYGROUND_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Cortex GraphiQL</title>
  <link rel="stylesheet" href="/graphiql/assets/graphiql.min.css">
  <style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
  <div id="graphiql" data-endpoint="/graphql" data-headers="{{HEADERS}}">Loading…</div>
  <script src="/graphiql/assets/react.production.min.js"></script>
  <script src="/graphiql/assets/react-dom.production.min.js"></script>
  <script src="/graphiql/assets/graphiql.min.js"></script>
  <script src="/graphiql/assets/graphql-ws.min.js"></script>
  <script src="/graphiql/assets/init.js"></script>
</body>
</html>
"#;

const INIT_JS: &str = r#"(function () {
  var root = document.getElementById('graphiql');
  var headers = JSON.parse(root.dataset.headers || '{}');
  // Subscriptions go over a WebSocket on the same path (graphql-transport-ws);
  // the socket authenticates with the prefilled token in connection_init.
  var wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + root.dataset.endpoint;
  var wsClient = graphqlWs.createClient({ url: wsUrl, lazy: true, connectionParams: function () { return headers; } });
  var http = GraphiQL.createFetcher({ url: root.dataset.endpoint });
  // GraphiQL's own choice of transport misses anonymous subscriptions: decide
  // here, from the text (comments and strings taken out).
  var isSubscription = function (params) {
    var text = String(params.query || '').replace(/"""[\s\S]*?"""|"(?:\\.|[^"\\])*"|#[^\n]*/g, ' ');
    var name = params.operationName;
    if (name) return new RegExp('\\bsubscription\\s+' + name + '\\b').test(text);
    return /^\s*subscription\b/.test(text);
  };
  var fetcher = function (params, options) {
    var subscription = isSubscription(params);
    if (!subscription) return http(params, options);
    return {
      subscribe: function (sink) {
        var dispose = wsClient.subscribe(params, {
          next: function (v) { sink.next(v); },
          error: function (e) { sink.error(e); },
          complete: function () { sink.complete(); }
        });
        return { unsubscribe: dispose };
      }
    };
  };
  var example = '# Your workspaces, their conversations and latest messages\n' +
    '{\n  workspaces(first: 10) {\n    nodes {\n      name\n      conversations(first: 10) {\n' +
    '        nodes {\n          topic\n          messages(last: 20) {\n            nodes { content timestamp sender { name } }\n' +
    '          }\n        }\n      }\n    }\n  }\n}\n';
  ReactDOM.createRoot(root).render(React.createElement(GraphiQL, {
    fetcher: fetcher,
    defaultQuery: example,
    defaultHeaders: JSON.stringify(JSON.parse(root.dataset.headers || '{}'), null, 2),
    headers: JSON.stringify(JSON.parse(root.dataset.headers || '{}'), null, 2),
    shouldPersistHeaders: false
  }));
})();
"#;

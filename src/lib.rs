//! Cortex: a GraphQL API server over PostgreSQL for workspaces, conversations and
//! messages. `main.rs` is a thin CLI over this library; tests use it directly.

pub mod app;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod health;
pub mod import;
pub mod metrics;
pub mod realtime;
pub mod seed;
pub mod server;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub use app::AppState;

use graphql::http::{self as gql_http, GraphqlState};

/// The HTTP router: every endpoint Cortex serves.
pub fn router(state: AppState) -> Router {
    let cors = cors_layer(&state);
    let options = graphql::SchemaOptions::from_config(&state.config);
    let schema = graphql::build_schema(options);
    let gql = GraphqlState {
        app: state.clone(),
        shape: Arc::new(graphql::complete::ResponseShape::from_sdl(&schema.sdl())),
        schema: Arc::new(schema),
        playground_token: state.playground_token.clone(),
        documents: Arc::default(),
    };
    let mut graphql_routes = Router::new().route(
        "/graphql",
        get(gql_http::graphql_get).post(gql_http::graphql_post),
    );
    // The playground needs introspection; in production both are off by default.
    if state.config.introspection {
        graphql_routes = graphql_routes
            .route("/", get(graphql::playground::graphiql))
            .route("/graphiql", get(graphql::playground::graphiql))
            .route("/graphiql/assets/{name}", get(graphql::playground::asset));
    }
    let graphql_routes = graphql_routes
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(gql);
    // Every request carries an id: the client's `X-Request-Id`, or a new UUID; it
    // is in the request's log line and returned in the response header.
    let request_id = header::HeaderName::from_static(REQUEST_ID_HEADER);
    let mut main = Router::new().route("/health", get(health::health));
    if state.config.metrics_token.is_some() {
        main = main.route("/metrics", get(metrics::metrics_with_token));
    }
    main.with_state(state)
        .merge(graphql_routes)
        .layer(cors)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The router of the private `METRICS_ADDR` listener: `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics_open))
        .with_state(state)
}

/// The request-id header, set on every request and response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// How long a browser may cache a preflight answer: Chromium's cap (Firefox
/// allows a day), so an app's first request per origin pays the preflight once.
pub const CORS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7200);

/// The request headers a browser may send cross-origin: the bearer token and
/// JSON, what Apollo Client (`apollographql-client-name`/`-version`, its CSRF
/// header and operation name), tracing (`traceparent`, Sentry) and the request id
/// the README invites add.
const CORS_REQUEST_HEADERS: [&str; 13] = [
    "authorization",
    crate::db::replicas::LSN_HEADER,
    "content-type",
    "accept",
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
    "x-apollo-operation-name",
    REQUEST_ID_HEADER,
    "traceparent",
    "tracestate",
    "baggage",
    "sentry-trace",
];

/// CORS from `CORS_ORIGINS`; any origin only in development on the embedded
/// default (bearer tokens, no cookies: `*` lends a page no credentials).
fn cors_layer(state: &AppState) -> CorsLayer {
    use axum::http::{HeaderName, HeaderValue, Method};
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(CORS_REQUEST_HEADERS.map(HeaderName::from_static))
        .expose_headers([
            HeaderName::from_static(REQUEST_ID_HEADER),
            HeaderName::from_static(crate::db::replicas::LSN_HEADER),
        ])
        .max_age(CORS_MAX_AGE);
    let origins: Vec<HeaderValue> = state
        .config
        .cors_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    if !origins.is_empty() {
        base.allow_origin(AllowOrigin::list(origins))
    } else if state.config.is_embedded() && !state.config.production {
        base.allow_origin(AllowOrigin::any())
    } else {
        base
    }
}

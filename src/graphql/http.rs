//! `POST /graphql` and `GET /graphql` (queries only): authentication, the request
//! bounds (body, batch, timeout, CPU budget), then execution and its log line.
//! The playground is [`super::playground`].

use std::sync::Arc;

use async_graphql::parser::types::OperationType;
use async_graphql::{BatchResponse, Response as GqlResponse};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::response::{coded_limit_response, error_response, limit_response, shape_errors};
use crate::error::AppError;
use crate::graphql::context::RequestContext;
use crate::graphql::persisted::{WireBatch, WireRequest};
use crate::graphql::CortexSchema;
use crate::AppState;

/// What the GraphQL handlers share.
#[derive(Clone)]
pub struct GraphqlState {
    /// Pool, configuration, authenticator.
    pub app: AppState,
    /// The schema.
    pub schema: Arc<CortexSchema>,
    /// A ready token to prefill GraphiQL with (embedded default only).
    pub playground_token: Option<String>,
    /// Parsed documents of operations seen before.
    pub documents: Arc<crate::graphql::documents::DocumentCache>,
    /// The schema's field types, to complete results.
    pub shape: Arc<crate::graphql::complete::ResponseShape>,
}

/// The request's id (`X-Request-Id`, set by the router's layer), `-` without one.
fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get(crate::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

async fn context_for(
    state: &GraphqlState,
    headers: &HeaderMap,
) -> Result<RequestContext, Response> {
    let header = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            error_response(
                StatusCode::UNAUTHORIZED,
                AppError::Unauthenticated("the Authorization header is not valid text".into()),
            )
        })?),
    };
    let caller = state
        .app
        .auth
        .authenticate(&state.app.db, header)
        .await
        .map_err(|e| {
            let status = if e.code() == "UNAUTHENTICATED" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            error_response(status, e)
        })?;
    Ok(RequestContext::new(state.app.db.clone(), caller))
}

/// What one operation cost: SQL statements, database time, CPU time (ms).
struct Cost {
    statements: u64,
    db_ms: f64,
    cpu_ms: f64,
}

fn finish(mut response: GqlResponse, cost: Option<Cost>) -> GqlResponse {
    response.errors = shape_errors(std::mem::take(&mut response.errors));
    if let Some(cost) = cost {
        response = response.extension(
            "cost",
            async_graphql::Value::from_json(serde_json::json!({
                "sqlStatements": cost.statements,
                "dbTimeMs": cost.db_ms,
                "cpuMs": round2(cost.cpu_ms),
            }))
            .unwrap_or_default(),
        );
    }
    response
}

/// How the request came: a GET runs queries only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

async fn execute(
    state: &GraphqlState,
    headers: &HeaderMap,
    batch: WireBatch,
    method: Method,
) -> Response {
    let count = batch.len();
    let max = state.app.config.max_batch;
    if count > max || count == 0 {
        return limit_response(
            StatusCode::BAD_REQUEST,
            "batch",
            format!("a batch must hold 1 to {max} operations"),
        );
    }
    let timeout = state.app.config.request_timeout;
    let budget = state.app.config.cpu_budget;
    let work = async {
        let work = execute_checked(state, headers, batch, method);
        match budget {
            Some(budget) => crate::graphql::budget::within(budget, work).await,
            None => Ok(work.await),
        }
    };
    // Dropping the request (on either bound) cancels its statements; a connection
    // left inside a transaction is discarded by the pool, never handed out again.
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(response)) => response,
        Ok(Err(over)) => {
            tracing::warn!(
                target: "cortex::request",
                request_id = request_id(headers),
                cpu_ms = over.spent.as_millis() as u64,
                "graphql request stopped: over its CPU budget"
            );
            let budget_ms = budget.unwrap_or_default().as_millis();
            coded_limit_response(
                StatusCode::GATEWAY_TIMEOUT,
                AppError::Timeout.code(),
                "cpu",
                format!("the request used more than its CPU budget of {budget_ms} ms and was stopped; see QUERY_CPU_BUDGET_MS"),
            )
        }
        Err(_) => error_response(StatusCode::GATEWAY_TIMEOUT, AppError::Timeout),
    }
}

async fn execute_checked(
    state: &GraphqlState,
    headers: &HeaderMap,
    batch: WireBatch,
    method: Method,
) -> Response {
    let ctx = match context_for(state, headers).await {
        Ok(ctx) => Arc::new(ctx),
        Err(response) => return response,
    };
    let show_cost = state.app.config.cost_extension;
    let request_id = request_id(headers).to_string();
    let run = |request: Result<async_graphql::Request, AppError>| {
        let ctx = ctx.clone();
        let request_id = request_id.clone();
        let schema = state.schema.clone();
        let documents = state.documents.clone();
        let shape = state.shape.clone();
        let limits = state.app.config.limits;
        async move {
            let started = std::time::Instant::now();
            let (statements_before, db_before) = (ctx.stats.statements(), ctx.stats.db_time());
            let cpu = crate::graphql::budget::CpuMeter::default();
            let (response, operation) = match request {
                Ok(request) => {
                    crate::graphql::budget::metered(
                        &cpu,
                        ctx.run(crate::graphql::execute(
                            &schema,
                            &limits,
                            &documents,
                            &shape,
                            request.data(SharedContext(ctx.clone())),
                        )),
                    )
                    .await
                }
                Err(refused) => (
                    GqlResponse::from_errors(vec![refused.to_server_error()]),
                    None,
                ),
            };
            let statements = ctx.stats.statements() - statements_before;
            let db_ms = (ctx.stats.db_time() - db_before).as_secs_f64() * 1000.0;
            let cpu_ms = cpu.spent().as_secs_f64() * 1000.0;
            let cost = Cost {
                statements,
                db_ms,
                cpu_ms,
            };
            let response = finish(response, show_cost.then_some(cost));
            let outcome = response
                .errors
                .first()
                .and_then(|e| e.extensions.as_ref()?.get("code").cloned())
                .map_or_else(
                    || "OK".to_string(),
                    |code| code.to_string().trim_matches('"').to_string(),
                );
            crate::metrics::record_operation(
                &crate::metrics::operation_label(operation.as_deref()),
                &outcome,
                started.elapsed(),
                statements,
            );
            // One line per operation: what a frontend developer's query cost.
            tracing::info!(
                target: "cortex::request",
                request_id,
                operation = operation.as_deref().unwrap_or("-"),
                user = ctx.scope.as_ref().map_or("-", |s| s.user_id()),
                statements,
                db_ms = round2(db_ms),
                cpu_ms = round2(cpu_ms),
                duration_ms = round2(started.elapsed().as_secs_f64() * 1000.0),
                outcome,
                "graphql"
            );
            response
        }
    };
    // The texts that ids and hashes stand for are found once the caller is
    // known (an anonymous client registers no persisted query).
    let persisted = &state.app.persisted;
    let response = match batch {
        WireBatch::Single(wire) => {
            let mut request = persisted.resolve(wire);
            if let (Method::Get, Ok(request)) = (method, &mut request) {
                if is_mutation(request, state.app.config.limits.max_tokens) {
                    return mutation_over_get();
                }
            }
            BatchResponse::Single(run(request).await)
        }
        // One after another: mutations in a batch must not race each other.
        WireBatch::Batch(wires) => {
            let mut out = Vec::with_capacity(wires.len());
            for wire in wires {
                out.push(run(persisted.resolve(wire)).await);
            }
            BatchResponse::Batch(out)
        }
    };
    async_graphql_axum::GraphQLResponse::from(response).into_response()
}

/// Milliseconds to two decimals: numbers in JSON logs, short in text logs.
fn round2(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

/// The request context shared by the operations of one HTTP request.
pub struct SharedContext(pub Arc<RequestContext>);

/// `POST /graphql`: JSON bodies only (a `text/plain` form post is refused: CSRF),
/// at most `MAX_BODY_BYTES` (the router's `DefaultBodyLimit`; the body is read
/// here rather than by async-graphql-axum's extractor, which ignores that limit).
pub async fn graphql_post(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !json {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::bad_input(
                "content-type",
                "POST /graphql takes `Content-Type: application/json`",
            ),
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return limit_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body",
                format!(
                    "the request body is larger than {} bytes",
                    state.app.config.max_body_bytes
                ),
            );
        }
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                AppError::bad_input("body", "the request body could not be read"),
            )
        }
    };
    let batch = match WireBatch::from_json(&body) {
        Ok(batch) => batch,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    execute(&state, &headers, batch, Method::Post).await
}

/// `GET /graphql?query=…&operationName=…&variables=…`: queries only; a mutation
/// (the operation `operationName` chooses) is refused with 405. A WebSocket
/// upgrade on the same path serves subscriptions ([`super::ws`]).
pub async fn graphql_get(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Ok(upgrade) = upgrade {
        return websocket(state, upgrade);
    }
    let request = match WireRequest::from_query_string(query.as_deref().unwrap_or("")) {
        Ok(request) => request,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    execute(&state, &headers, WireBatch::Single(request), Method::Get).await
}

/// 405: a GET names a mutation (GET must be safe to repeat, cache and prefetch).
fn mutation_over_get() -> Response {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        AppError::bad_input("method", "mutations must be sent with POST"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// Upgrades to `graphql-transport-ws`; the socket is tracked so that shutdown
/// waits for it to close.
fn websocket(state: GraphqlState, upgrade: WebSocketUpgrade) -> Response {
    let upgrade = upgrade
        .protocols([super::ws::PROTOCOL])
        // Small buffers: a socket is mostly idle, and there are thousands.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(state.app.config.max_body_bytes);
    let protocol_ok = upgrade.selected_protocol().is_some();
    let sockets = state.app.realtime.sockets.clone();
    upgrade.on_upgrade(move |socket| {
        sockets.track_future(super::ws::serve(state, socket, protocol_ok))
    })
}

/// Whether the operation to run is a mutation. The parsed document stays in the
/// request, so execution does not parse it again.
fn is_mutation(request: &mut async_graphql::Request, max_tokens: usize) -> bool {
    // The raw-text limits first: the parser must never see a bracket bomb. A
    // document they refuse is refused again, with its reason, by execution.
    let guarded = crate::graphql::limits::scan(
        &request.query,
        crate::graphql::limits::MAX_NESTING,
        max_tokens,
    );
    if guarded.is_err() {
        return false;
    }
    let name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return false;
    };
    // Without a name, a document of several operations runs none (execution says
    // so); with one, only the operation it names counts.
    let mut operations = doc.operations.iter();
    let chosen = match &name {
        Some(name) => operations.find(|(n, _)| n.is_some_and(|n| n.as_str() == name)),
        None if doc.operations.iter().count() == 1 => operations.next(),
        None => None,
    };
    chosen.is_some_and(|(_, op)| op.node.ty == OperationType::Mutation)
}

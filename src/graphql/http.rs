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

use crate::db::replicas::{primary_position_after_write, Lsn, ReadTarget, LSN_COOKIE, LSN_HEADER};
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

/// The caller the request's token names (`None` without a token).
async fn caller_of(
    state: &GraphqlState,
    headers: &HeaderMap,
) -> Result<Option<crate::auth::Caller>, Response> {
    let header = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            error_response(
                StatusCode::UNAUTHORIZED,
                AppError::Unauthenticated("the Authorization header is not valid text".into()),
            )
        })?),
    };
    state
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
        })
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
    let caller = match caller_of(state, headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let single = matches!(batch, WireBatch::Single(_));
    let wires = match batch {
        WireBatch::Single(wire) => vec![wire],
        WireBatch::Batch(wires) => wires,
    };
    let replicas = state.app.replicas.as_ref();
    // A read that fails on a replica is run again on the primary: its texts are kept.
    let kept = replicas.map(|_| wires.clone());
    // The texts that ids and hashes stand for are found once the caller is
    // known (an anonymous client registers no persisted query).
    let persisted = &state.app.persisted;
    let mut requests: Vec<_> = wires.into_iter().map(|w| persisted.resolve(w)).collect();
    let max_tokens = state.app.config.limits.max_tokens;
    if method == Method::Get {
        if let Some(Ok(request)) = requests.first_mut() {
            if is_mutation(request, max_tokens) {
                return mutation_over_get();
            }
        }
    }
    let user = caller.as_ref().map(|c| c.user_id().to_string());
    let context =
        |db: &crate::db::Database| Arc::new(RequestContext::new(db.clone(), caller.clone()));
    let Some(replicas) = replicas else {
        let responses = run_all(state, headers, context(&state.app.db), requests).await;
        return respond(single, responses, None);
    };
    let writes = requests
        .iter_mut()
        .any(|r| r.as_mut().is_ok_and(|r| is_mutation(r, max_tokens)));
    let target = match writes {
        true => ReadTarget::Primary,
        false => replicas.for_read(user.as_deref(), lsn_of(headers)).await,
    };
    let read_target = |target: &'static str| {
        metrics::counter!(crate::metrics::READ_TARGET, "target" => target).increment(1);
    };
    let responses = match target {
        ReadTarget::Replica(db, index) => {
            read_target("replica");
            let responses = run_all(state, headers, context(db), requests).await;
            if responses.iter().any(unavailable) {
                // Down, or it cancelled the read to replay: the primary answers.
                read_target("primary_retry");
                replicas.failed(index);
                let requests = kept
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| persisted.resolve(w))
                    .collect();
                run_all(state, headers, context(&state.app.db), requests).await
            } else {
                responses
            }
        }
        ReadTarget::Primary => {
            if !writes {
                read_target("primary");
            }
            run_all(state, headers, context(&state.app.db), requests).await
        }
    };
    // After a write, where the primary stands: the caller's next reads wait for
    // a replica that has replayed that far.
    let written = match (writes, &user) {
        (true, Some(user)) => match primary_position_after_write(&state.app.db, user).await {
            Ok(lsn) => {
                replicas.wrote(user, lsn);
                Some((lsn, state.app.config.replicas.max_lag))
            }
            Err(e) => {
                tracing::warn!("cannot read the primary's WAL position after a write: {e}");
                None
            }
        },
        _ => None,
    };
    respond(single, responses, written)
}

/// Runs the operations in order (mutations in a batch must not race each other).
async fn run_all(
    state: &GraphqlState,
    headers: &HeaderMap,
    ctx: Arc<RequestContext>,
    requests: Vec<Result<async_graphql::Request, AppError>>,
) -> Vec<GqlResponse> {
    let mut out = Vec::with_capacity(requests.len());
    for request in requests {
        out.push(run_one(state, headers, &ctx, request).await);
    }
    out
}

/// The response, with the write's position when there was one.
fn respond(
    single: bool,
    mut responses: Vec<GqlResponse>,
    written: Option<(Lsn, std::time::Duration)>,
) -> Response {
    let batch = match (single, responses.pop()) {
        (true, Some(response)) => BatchResponse::Single(response),
        (_, last) => BatchResponse::Batch(responses.into_iter().chain(last).collect()),
    };
    let mut response = async_graphql_axum::GraphQLResponse::from(batch).into_response();
    if let Some((lsn, max_lag)) = written {
        let text = lsn.to_string();
        let cookie = format!(
            "{LSN_COOKIE}={text}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
            max_lag.as_secs() + 1
        );
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.insert(LSN_HEADER, value);
        }
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The position a read must see: the `Cortex-Lsn` header, else the cookie. A
/// malformed one is ignored (it is a hint, not an input).
fn lsn_of(headers: &HeaderMap) -> Option<Lsn> {
    if let Some(value) = headers.get(LSN_HEADER) {
        return value.to_str().ok()?.parse().ok();
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LSN_COOKIE)
        .and_then(|(_, value)| value.parse().ok())
}

/// Whether an operation failed for want of its database.
fn unavailable(response: &GqlResponse) -> bool {
    response.errors.iter().any(|e| {
        e.extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .is_some_and(|code| code == &async_graphql::Value::from(AppError::Unavailable.code()))
    })
}

/// Runs one operation and writes its log line.
async fn run_one(
    state: &GraphqlState,
    headers: &HeaderMap,
    ctx: &Arc<RequestContext>,
    request: Result<async_graphql::Request, AppError>,
) -> GqlResponse {
    let started = std::time::Instant::now();
    let (statements_before, db_before) = (ctx.stats.statements(), ctx.stats.db_time());
    let cpu = crate::graphql::budget::CpuMeter::default();
    let (response, operation) = match request {
        Ok(request) => {
            crate::graphql::budget::metered(
                &cpu,
                ctx.run(crate::graphql::execute(
                    &state.schema,
                    &state.app.config.limits,
                    &state.documents,
                    &state.shape,
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
    let response = finish(response, state.app.config.cost_extension.then_some(cost));
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
        request_id = request_id(headers),
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

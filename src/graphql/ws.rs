//! GraphQL over WebSocket at `/graphql`: the `graphql-transport-ws` protocol
//! (what the `graphql-ws` npm client speaks).
//!
//! async-graphql's own WebSocket loop departs from the protocol where clients
//! notice: it has no `connection_init` timeout (4408), closes a `subscribe`
//! before the ack with 1011 (4401), lets a second `subscribe` with a live id
//! replace the first (4409), refuses a connection with 1002 (4403), never sends
//! `error` or `ping`, and cannot end a socket whose client stopped reading. So
//! the protocol is run here, over async-graphql's `execute_stream`, each
//! subscription in its own task driven by its request context's batcher (one
//! statement per level, as over HTTP).
//!
//! Close codes: 4400 a message that is not the protocol's; 4401 `subscribe`
//! before `connection_ack`; 4403 `connection_init` without a valid token; 4406
//! no `graphql-transport-ws` subprotocol; 4408 no `connection_init` within
//! `SUBSCRIPTION_INIT_TIMEOUT`; 4409 a `subscribe` whose id is in use; 4429 a
//! second `connection_init`; 1013 a subscriber more than `SUBSCRIPTION_BUFFER`
//! events behind (resume with `after`), or a `connection_init` the database could
//! not answer; 1001 the server is stopping.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::error::response::shape_errors;
use crate::error::AppError;
use crate::graphql::context::RequestContext;
use crate::graphql::http::{GraphqlState, SharedContext};

/// The subprotocol served.
pub const PROTOCOL: &str = "graphql-transport-ws";
/// How long one write to a socket may take before the client is given up on (it
/// stopped reading, and its buffers are full).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for one socket's writer; subscriptions wait beyond that, and
/// then their own buffers fill ([`crate::realtime::Hub`] ends them).
const OUTGOING: usize = 64;

/// A client message (`type` decides the rest).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    Ping {
        #[serde(default)]
        payload: Option<Value>,
    },
    Pong {
        #[serde(default)]
        #[expect(dead_code, reason = "a pong needs no answer; its payload is accepted")]
        payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: Box<crate::graphql::persisted::WireRequest>,
    },
    Complete {
        id: String,
    },
}

/// What an operation's task hands the socket's writer.
enum Outgoing {
    /// `next` (the operation goes on), as the text to send: serialized by the
    /// operation's task, so the queue holds small items and the work is spread.
    Next(String, u64, String),
    /// `error` (the operation is over), as the text to send.
    Error(String, u64, String),
    /// `complete` (the operation is over).
    Complete(String, u64),
    /// Close the socket (a subscriber fell behind).
    Close(u16, String),
}

/// Serves one upgraded socket until either side ends it.
pub async fn serve(state: GraphqlState, socket: WebSocket, protocol_ok: bool) {
    let mut connection = Connection::new(state, socket);
    let (code, reason) = if protocol_ok {
        connection.run().await
    } else {
        (4406, "Subprotocol not acceptable".to_string())
    };
    connection.close(code, &reason).await;
}

struct Connection {
    state: GraphqlState,
    socket: WebSocket,
    caller: Option<Caller>,
    operations: HashMap<String, (u64, tokio::task::AbortHandle)>,
    generation: u64,
    outgoing: (mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>),
}

impl Drop for Connection {
    fn drop(&mut self) {
        for (_, task) in self.operations.values() {
            task.abort();
        }
    }
}

impl Connection {
    fn new(state: GraphqlState, socket: WebSocket) -> Self {
        Self {
            state,
            socket,
            caller: None,
            operations: HashMap::new(),
            generation: 0,
            outgoing: mpsc::channel(OUTGOING),
        }
    }

    /// The protocol, until it ends: the close code and reason to end with.
    async fn run(&mut self) -> (u16, String) {
        let config = self.state.app.config.subscriptions;
        let shutdown = self.state.app.realtime.shutdown.clone();
        let init_deadline = tokio::time::Instant::now() + config.init_timeout;
        let mut keepalive = config.keepalive.map(|every| {
            let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer
        });
        loop {
            let acked = self.caller.is_some();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    self.drain().await;
                    return (1001, "the server is stopping".into());
                }
                () = tokio::time::sleep_until(init_deadline), if !acked => {
                    return (4408, "Connection initialisation timeout".into());
                }
                out = self.outgoing.1.recv() => {
                    // The connection holds a sender: the channel never ends.
                    let Some(out) = out else { continue };
                    if let Some(close) = self.write(out).await {
                        return close;
                    }
                }
                message = self.socket.recv() => {
                    let text = match message {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                            return (1000, String::new());
                        }
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Binary(_))) => {
                            return (4400, "Invalid message received: binary frames are not used".into());
                        }
                    };
                    let message = match serde_json::from_str::<ClientMessage>(text.as_str()) {
                        Ok(message) => message,
                        Err(e) => return (4400, truncate(format!("Invalid message received: {e}"))),
                    };
                    // Boxed: `connection_init` authenticates (a database future), once.
                    if let Some(close) = Box::pin(self.receive(message)).await {
                        return close;
                    }
                }
                _ = tick(&mut keepalive) => {
                    if self.send_json(json!({"type": "ping"})).await.is_err() {
                        return (1000, String::new());
                    }
                }
            }
        }
    }

    /// Handles one client message; `Some` closes the socket.
    async fn receive(&mut self, message: ClientMessage) -> Option<(u16, String)> {
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.caller.is_some() {
                    return Some((4429, "Too many initialisation requests".into()));
                }
                match authenticate(self.state.app.clone(), payload).await {
                    Ok(caller) => {
                        self.caller = Some(caller);
                        if self
                            .send_json(json!({"type": "connection_ack"}))
                            .await
                            .is_err()
                        {
                            return Some((1000, String::new()));
                        }
                    }
                    // The database not answering is no verdict on the token: the
                    // client may retry (graphql-ws does on 1013).
                    Err(e @ (AppError::Unavailable | AppError::Timeout)) => {
                        return Some((1013, truncate(format!("Try again later: {e}"))));
                    }
                    Err(e) => return Some((4403, truncate(format!("Forbidden: {e}")))),
                }
            }
            ClientMessage::Ping { payload } => {
                let mut pong = json!({"type": "pong"});
                if let Some(payload) = payload {
                    pong["payload"] = payload;
                }
                if self.send_json(pong).await.is_err() {
                    return Some((1000, String::new()));
                }
            }
            ClientMessage::Pong { .. } => {}
            ClientMessage::Subscribe { id, payload } => {
                let Some(caller) = self.caller.clone() else {
                    return Some((4401, "Unauthorized".into()));
                };
                if self.operations.contains_key(&id) {
                    return Some((
                        4409,
                        truncate(format!("Subscriber for {id} already exists")),
                    ));
                }
                let max = self.state.app.config.subscriptions.max_per_connection;
                if self.operations.len() >= max {
                    let refusal = AppError::LimitExceeded(format!(
                        "this connection holds its most operations ({max}, SUBSCRIPTION_MAX_PER_CONNECTION); complete one first"
                    ));
                    let errors = vec![refusal.to_server_error()];
                    if self.send_text(error_message(&id, &errors)).await.is_err() {
                        return Some((1000, String::new()));
                    }
                    return None;
                }
                self.generation += 1;
                let generation = self.generation;
                let task = tokio::spawn(operation(
                    self.state.clone(),
                    caller,
                    id.clone(),
                    generation,
                    *payload,
                    self.outgoing.0.clone(),
                ));
                self.operations
                    .insert(id, (generation, task.abort_handle()));
            }
            ClientMessage::Complete { id } => {
                if let Some((_, task)) = self.operations.remove(&id) {
                    task.abort();
                }
            }
        }
        None
    }

    /// Writes one operation message, unless that operation was completed since.
    async fn write(&mut self, out: Outgoing) -> Option<(u16, String)> {
        let live = |ops: &HashMap<String, (u64, tokio::task::AbortHandle)>, id: &str, g: u64| {
            ops.get(id).is_some_and(|(generation, _)| *generation == g)
        };
        let message = match out {
            Outgoing::Close(code, reason) => return Some((code, reason)),
            Outgoing::Next(id, g, text) => {
                if !live(&self.operations, &id, g) {
                    return None;
                }
                text
            }
            Outgoing::Error(id, g, text) => {
                if !live(&self.operations, &id, g) {
                    return None;
                }
                self.operations.remove(&id);
                text
            }
            Outgoing::Complete(id, g) => {
                if !live(&self.operations, &id, g) {
                    return None;
                }
                self.operations.remove(&id);
                frame("complete", &id, None::<()>)
            }
        };
        match self.send_text(message).await {
            Ok(()) => None,
            Err(()) => Some((1000, String::new())),
        }
    }

    /// At shutdown: stops the operations, then writes what they had queued.
    async fn drain(&mut self) {
        for (_, task) in self.operations.values() {
            task.abort();
        }
        while let Ok(out) = self.outgoing.1.try_recv() {
            if self.write(out).await.is_some() {
                break;
            }
        }
        let ids: Vec<String> = self.operations.drain().map(|(id, _)| id).collect();
        for id in ids {
            if self
                .send_json(json!({"type": "complete", "id": id}))
                .await
                .is_err()
            {
                break;
            }
        }
    }

    async fn send_json(&mut self, message: Value) -> Result<(), ()> {
        self.send_text(message.to_string()).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), ()> {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Text(text.into()))).await
        {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Closes with `code` (1000 with no reason when the socket is already gone).
    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ =
            tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Close(Some(frame)))).await;
    }
}

/// The caller of `connection_init`'s `Authorization` (`"Bearer …"`).
async fn authenticate(app: crate::AppState, payload: Option<Value>) -> Result<Caller, AppError> {
    let header = payload
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|fields| {
            fields
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                .map(|(_, value)| value)
        })
        .and_then(Value::as_str);
    let Some(header) = header else {
        return Err(AppError::Unauthenticated(
            "connection_init needs {\"Authorization\": \"Bearer <token>\"}".into(),
        ));
    };
    app.auth
        .authenticate(&app.db, Some(header))
        .await?
        .ok_or_else(|| AppError::Unauthenticated("a token is required".into()))
}

/// The next keep-alive tick, or never without keep-alive.
async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A close reason fits in 123 bytes.
fn truncate(mut reason: String) -> String {
    if reason.len() > 123 {
        let mut end = 123;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// One server message as text: `type`, `id` and, when given, `payload`.
fn frame(kind: &str, id: &str, payload: Option<impl serde::Serialize>) -> String {
    #[derive(serde::Serialize)]
    struct Frame<'a, T> {
        #[serde(rename = "type")]
        kind: &'a str,
        id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<T>,
    }
    serde_json::to_string(&Frame { kind, id, payload }).unwrap_or_default()
}

fn error_message(id: &str, errors: &[async_graphql::ServerError]) -> String {
    frame("error", id, Some(errors))
}

/// One `subscribe`: a query or mutation answers once; a subscription streams.
async fn operation(
    state: GraphqlState,
    caller: Caller,
    id: String,
    generation: u64,
    wire: crate::graphql::persisted::WireRequest,
    out: mpsc::Sender<Outgoing>,
) {
    let limits = state.app.config.limits;
    let resolved = state
        .app
        .persisted
        .resolve(wire)
        .map_err(|e| e.to_server_error());
    let (is_subscription, request) = match resolved
        .and_then(|mut request| kind_of(&mut request, &limits).map(|kind| (kind, request)))
    {
        Ok((kind, request)) => (kind == OperationType::Subscription, request),
        Err(error) => {
            let _ = out
                .send(Outgoing::Error(
                    id.clone(),
                    generation,
                    error_message(&id, &shape_errors(vec![error])),
                ))
                .await;
            return;
        }
    };
    let context = Arc::new(RequestContext::new(state.app.db.clone(), Some(caller)));
    let request = request
        .data(SharedContext(context.clone()))
        .data(state.app.realtime.hub.clone());
    if !is_subscription {
        // Boxed: the task of every subscription would otherwise be as large as
        // a query's execution.
        let (response, _) = Box::pin(context.run(crate::graphql::execute(
            &state.schema,
            &limits,
            &state.documents,
            &state.shape,
            request,
        )))
        .await;
        let _ = match finish(response) {
            Ok(response) => {
                let text = frame("next", &id, Some(&response));
                let _ = out.send(Outgoing::Next(id.clone(), generation, text)).await;
                out.send(Outgoing::Complete(id, generation)).await
            }
            Err(errors) => {
                let text = error_message(&id, &errors);
                out.send(Outgoing::Error(id, generation, text)).await
            }
        };
        return;
    }
    let mut stream = state.schema.execute_stream(request);
    loop {
        // Driven by the batcher, like an HTTP request: one statement per level.
        let Some(response) = Box::pin(context.run(stream.next())).await else {
            let _ = out.send(Outgoing::Complete(id, generation)).await;
            return;
        };
        match finish(response) {
            Ok(response) => {
                let text = frame("next", &id, Some(&response));
                if out
                    .send(Outgoing::Next(id.clone(), generation, text))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(errors) => {
                let slow = errors.iter().find(|e| {
                    e.extensions
                        .as_ref()
                        .and_then(|ext| ext.get("code"))
                        .is_some_and(|code| *code == async_graphql::Value::from("SLOW_CONSUMER"))
                });
                if let Some(slow) = slow {
                    let reason = truncate(format!("Try again later: {}", slow.message));
                    let _ = out.send(Outgoing::Close(1013, reason)).await;
                }
                let text = error_message(&id, &errors);
                let _ = out.send(Outgoing::Error(id, generation, text)).await;
                return;
            }
        }
    }
}

/// A response to send as `next`, or the errors that end the operation (a
/// response without data: the request was refused, or the subscription ended
/// with an error).
fn finish(
    mut response: async_graphql::Response,
) -> Result<async_graphql::Response, Vec<async_graphql::ServerError>> {
    response.errors = shape_errors(std::mem::take(&mut response.errors));
    let no_data = matches!(response.data, async_graphql::Value::Null);
    if no_data && !response.errors.is_empty() {
        Err(response.errors)
    } else {
        Ok(response)
    }
}

/// The operation the request runs, after the request limits (the same as over
/// HTTP: nothing is parsed unbounded, nothing deep or costly runs).
fn kind_of(
    request: &mut async_graphql::Request,
    limits: &crate::graphql::limits::QueryLimits,
) -> Result<OperationType, async_graphql::ServerError> {
    limits.check_request(request)?;
    let name = request.operation_name.clone();
    // A syntax error keeps its position; `shape_errors` words it.
    let document = request.parsed_query()?;
    let operation = match (&document.operations, name.as_deref()) {
        (async_graphql::parser::types::DocumentOperations::Single(op), _) => Some(op),
        (async_graphql::parser::types::DocumentOperations::Multiple(ops), Some(name)) => {
            ops.get(name)
        }
        (async_graphql::parser::types::DocumentOperations::Multiple(ops), None)
            if ops.len() == 1 =>
        {
            ops.values().next()
        }
        _ => None,
    };
    operation.map(|op| op.node.ty).ok_or_else(|| {
        AppError::bad_input(
            "operationName",
            "name the operation to run (`operationName`)",
        )
        .to_server_error()
    })
}

//! A `graphql-transport-ws` client over a real WebSocket (tokio-tungstenite),
//! answering the server's pings as the `graphql-ws` npm client does.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What arrived.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Got {
    /// A protocol message.
    Message(Value),
    /// The close frame: code and reason (1006 when the socket just ended).
    Closed(u16, String),
}

/// One socket.
pub(crate) struct WsClient {
    stream: Stream,
    /// Server pings seen (and answered).
    pub(crate) pings: usize,
}

/// How long a test waits for one message.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

impl WsClient {
    /// Opens `ws://…/graphql` of `base` (`http://host:port`) offering `protocol`.
    pub(crate) async fn connect(base: &str, protocol: Option<&str>) -> Self {
        let url = format!("{}/graphql", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().unwrap();
        if let Some(protocol) = protocol {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", protocol.parse().unwrap());
        }
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket handshake");
        Self { stream, pings: 0 }
    }

    /// Connects, sends `connection_init` with `token`, and expects the ack.
    pub(crate) async fn ready(base: &str, token: &str) -> Self {
        let mut client = Self::connect(base, Some("graphql-transport-ws")).await;
        client
            .send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}))
            .await;
        match client.recv().await {
            Got::Message(m) if m["type"] == "connection_ack" => client,
            other => panic!("expected connection_ack, got {other:?}"),
        }
    }

    pub(crate) async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    pub(crate) async fn send_text(&mut self, text: String) {
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Sends `subscribe` for `query` under `id`.
    pub(crate) async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"type": "subscribe", "id": id, "payload": {"query": query, "variables": variables}}))
            .await;
    }

    /// The next protocol message or the close (server pings answered on the way).
    pub(crate) async fn recv(&mut self) -> Got {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("nothing arrived in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
                    if value["type"] == "ping" {
                        self.pings += 1;
                        self.send(json!({"type": "pong"})).await;
                        continue;
                    }
                    return Got::Message(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(frame) => Got::Closed(frame.code.into(), frame.reason.to_string()),
                        None => Got::Closed(1005, String::new()),
                    }
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return Got::Closed(1006, String::new()),
            }
        }
    }

    /// The next message, which must be one (not a close).
    pub(crate) async fn message(&mut self) -> Value {
        match self.recv().await {
            Got::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The payload of the next `next` message of `id`.
    pub(crate) async fn next_of(&mut self, id: &str) -> Value {
        let m = self.message().await;
        assert_eq!(
            (m["type"].as_str(), m["id"].as_str()),
            (Some("next"), Some(id)),
            "{m}"
        );
        m["payload"].clone()
    }

    /// Whether anything arrives within `wait` (pings aside).
    pub(crate) async fn quiet_for(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Text(text)))) if text.as_str().contains("\"ping\"") => {
                    self.pings += 1;
                    self.send(json!({"type": "pong"})).await;
                }
                Ok(_) => return false,
            }
        }
    }

    /// The close code and reason that end the socket (messages before it skipped).
    pub(crate) async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Got::Closed(code, reason) = self.recv().await {
                return (code, reason);
            }
        }
    }
}

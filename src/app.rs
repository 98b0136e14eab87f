//! The application state every handler receives, passed explicitly (no globals).

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::db::Database;

/// What the HTTP handlers share: pool, configuration and token verification.
#[derive(Clone)]
pub struct AppState {
    /// The connection pool.
    pub db: Database,
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// Verifies bearer tokens.
    pub auth: Authenticator,
    /// A ready token GraphiQL opens with (embedded default only).
    pub playground_token: Option<String>,
    /// Subscriptions: the hub, its settings, the open sockets.
    pub realtime: crate::realtime::Realtime,
    /// Renders `/metrics`, when `METRICS_ADDR` or `METRICS_TOKEN` asks for it.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl AppState {
    /// State over an existing pool, verifying tokens with `secret`.
    pub fn new(db: Database, config: Config, secret: &[u8]) -> Self {
        let metrics = (config.metrics_addr.is_some() || config.metrics_token.is_some())
            .then(crate::metrics::install);
        Self {
            db,
            realtime: crate::realtime::Realtime::new(&config.subscriptions),
            config: Arc::new(config),
            auth: Authenticator::new(secret),
            playground_token: None,
            metrics,
        }
    }
}

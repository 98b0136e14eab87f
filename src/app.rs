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
}

impl AppState {
    /// State over an existing pool, verifying tokens with `secret`.
    pub fn new(db: Database, config: Config, secret: &[u8]) -> Self {
        Self {
            db,
            config: Arc::new(config),
            auth: Authenticator::new(secret),
            playground_token: None,
        }
    }
}

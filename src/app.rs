//! The application state every handler receives, passed explicitly (no globals).

use std::sync::Arc;

use crate::config::Config;
use crate::db::Database;

/// What the HTTP handlers share: the connection pool and the configuration.
#[derive(Clone)]
pub struct AppState {
    /// The connection pool.
    pub db: Database,
    /// The configuration the server started with.
    pub config: Arc<Config>,
}

impl AppState {
    /// State over an existing pool.
    pub fn new(db: Database, config: Config) -> Self {
        Self {
            db,
            config: Arc::new(config),
        }
    }
}

//! Cortex: a GraphQL API server over PostgreSQL for workspaces, conversations and
//! messages. `main.rs` is a thin CLI over this library; tests use it directly.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod server;

use axum::routing::get;
use axum::Router;

pub use app::AppState;

/// The HTTP router: every endpoint Cortex serves.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .with_state(state)
}

//! `User`.

use std::sync::Arc;

use async_graphql::{Json, Object, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::users::User as UserRow;

/// A person: owns workspaces, sends messages (the row is shared with the request's
/// loader, which hands the same sender to every message that names it).
pub struct User(pub Arc<UserRow>);

#[Object]
impl User {
    /// Primary key.
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// External id (the token's `sub`).
    async fn user_id(&self) -> ID {
        ID(self.0.user_id.clone())
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// E-mail address.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    /// Whether the user may sign in.
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    /// Free-form JSON object.
    async fn metadata(&self) -> Json<serde_json::Value> {
        Json(self.0.metadata.clone())
    }
    /// When the row was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the row last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

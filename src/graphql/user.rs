//! `User`.

use std::sync::Arc;

use async_graphql::{Json, Object, Value, ID};
use chrono::{DateTime, Utc};

use crate::db::users::{User as UserRow, UserName};
use crate::graphql::node::NodeId;
use crate::graphql::plain::{PlainField, PlainFields};
use async_graphql::ScalarType;

/// The caller, in full (other users are [`UserProfile`]s).
pub struct User(pub Arc<UserRow>);

/// The caller, in full (other people are `UserProfile`s).
#[Object]
impl User {
    /// Primary key.
    async fn id(&self) -> NodeId {
        NodeId(self.0.id)
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

/// Another person as any caller may see them: their `userId`, and their name
/// only where the caller has met them (a message they sent, a workspace they
/// own, a conversation they have written in). Never their e-mail, metadata or
/// whether they may sign in: those are in `me` alone. A participant who never
/// signed in and one who did but never wrote look the same, so a conversation's
/// participant list does not tell whether a user id exists.
pub struct UserProfile {
    /// External id.
    pub user_id: String,
    /// Display name, when the caller has met them.
    pub name: Option<String>,
}

impl UserProfile {
    /// The profile of `row`, whose name the caller may see.
    pub fn met(row: &UserName) -> Self {
        Self {
            user_id: row.user_id.clone(),
            name: Some(row.name.clone()),
        }
    }
}

/// Another person: a message's sender, a workspace's owner, a participant.
#[Object(name = "UserProfile")]
impl UserProfile {
    /// External id (the token's `sub`).
    async fn user_id(&self) -> ID {
        ID(self.user_id.clone())
    }
    /// Display name, where the caller has met them (`null` otherwise).
    async fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl PlainFields for UserProfile {
    const FIELDS: &'static [(&'static str, PlainField<Self>)] = &[
        ("userId", |u, _| Some(ID(u.user_id.clone()).to_value())),
        ("name", |u, _| {
            Some(u.name.as_ref().map_or(Value::Null, |n| n.to_value()))
        }),
    ];
}

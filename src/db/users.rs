//! `users`: the people who own workspaces and send messages.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::db::schema::users;
use crate::db::{keyset_page, Page, PageArgs};

/// A row of `users`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: Uuid,
    pub user_id: String,
    pub name: String,
    pub email: Option<String>,
    pub is_active: bool,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What any caller may be shown of another user: the id and display name.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserName {
    pub user_id: String,
    pub name: String,
}

/// A user to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub user_id: String,
    pub name: String,
    pub email: Option<String>,
    pub metadata: Value,
}

/// A partial update: `None` leaves a column as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub is_active: Option<bool>,
    pub metadata: Option<Value>,
}

/// Inserts a user.
pub async fn create(conn: &mut AsyncPgConnection, new: &NewUser) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(new)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// The user with this primary key.
pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// The user with this external `user_id` (a token's `sub`).
pub async fn get_by_user_id(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> QueryResult<Option<User>> {
    users::table
        .filter(users::user_id.eq(user_id))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// The users with these `user_id`s, in one statement (dataloaders).
pub async fn get_many_by_user_id(
    conn: &mut AsyncPgConnection,
    user_ids: &[String],
) -> QueryResult<Vec<User>> {
    users::table
        .filter(users::user_id.eq_any(user_ids))
        .select(User::as_select())
        .load(conn)
        .await
}

/// The user with this `user_id`, inserted first when missing. Concurrent first
/// requests of the same user are safe: the insert ignores the conflict.
pub async fn get_or_create(conn: &mut AsyncPgConnection, new: &NewUser) -> QueryResult<User> {
    if let Some(user) = get_by_user_id(conn, &new.user_id).await? {
        return Ok(user);
    }
    let inserted = diesel::insert_into(users::table)
        .values(new)
        .on_conflict(users::user_id)
        .do_nothing()
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    match inserted {
        Some(user) => Ok(user),
        None => get_by_user_id(conn, &new.user_id)
            .await?
            .ok_or(diesel::result::Error::NotFound),
    }
}

/// Users, newest first, one keyset page at a time.
pub async fn list(conn: &mut AsyncPgConnection, args: &PageArgs) -> QueryResult<Page<User>> {
    let query = keyset_page!(
        users::table.select(User::as_select()).into_boxed(),
        args,
        users::created_at,
        users::id,
        desc
    );
    Ok(Page::from_fetched(query.load(conn).await?, args))
}

/// Applies `changes`; `None` when the user does not exist.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &UserChanges,
) -> QueryResult<Option<User>> {
    diesel::update(users::table.find(id))
        .set(changes)
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes a user; whether it existed.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    Ok(diesel::delete(users::table.find(id)).execute(conn).await? > 0)
}

/// Number of users.
pub async fn count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    users::table.count().get_result(conn).await
}

//! The one error type at the API edge, and its mapping to GraphQL error codes.
//!
//! Start-up uses `anyhow`, the data layer returns diesel's `QueryResult`; everything a
//! client can see passes through [`AppError`], which decides the `extensions.code` and
//! the message. Conversions only map: nothing is logged or counted when an error is
//! made. [`response`] shapes every error a client gets (GraphQL errors, HTTP error
//! bodies, limit refusals) and reports each once per response: an internal error's
//! details are logged under the id the client sees, never returned.

pub mod response;

use std::sync::Arc;

use async_graphql::ErrorExtensions;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use thiserror::Error;
use uuid::Uuid;

/// Result of an API operation.
pub type AppResult<T> = Result<T, AppError>;

/// Every failure a client can see.
#[derive(Debug, Clone, Error)]
pub enum AppError {
    /// No, expired or bad credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The row exists but belongs to someone else.
    #[error("{0}")]
    Forbidden(String),
    /// The row does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong; `field` names the argument at fault.
    #[error("{message}")]
    BadUserInput {
        /// What is wrong.
        message: String,
        /// The input field at fault, when there is one.
        field: Option<String>,
    },
    /// A unique or foreign-key constraint refused the write.
    #[error("{0}")]
    Conflict(String),
    /// A bound on open resources (subscriptions per connection or instance).
    #[error("{0}")]
    LimitExceeded(String),
    /// A subscription's resume cursor is older than the events kept.
    #[error("{0}")]
    CursorExpired(String),
    /// A subscriber fell further behind than its buffer; it resumes with `after`.
    #[error("{0}")]
    SlowConsumer(String),
    /// An automatic persisted query's hash that this instance has not seen: the
    /// client sends the text with it again (Apollo and urql match this message).
    #[error("PersistedQueryNotFound")]
    PersistedQueryNotFound,
    /// An operation id (or hash) that is not among the trusted documents.
    #[error("{0}")]
    PersistedQueryNotInList(String),
    /// Freeform text where only registered operations run (`PERSISTED_ONLY`).
    #[error("{0}")]
    PersistedQueryIdRequired(String),
    /// The database cannot be reached right now.
    #[error("the database is unavailable, try again shortly")]
    Unavailable,
    /// The operation took too long.
    #[error("the operation timed out")]
    Timeout,
    /// Anything else: the client sees only the error id, the log has the details.
    #[error("internal error (id {id})")]
    Internal {
        /// Correlates the client's message with the log line.
        id: Uuid,
        /// What went wrong, for the log only.
        detail: Arc<str>,
    },
}

impl AppError {
    /// The stable `extensions.code` clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::BadUserInput { .. } => "BAD_USER_INPUT",
            AppError::Conflict(_) => "CONFLICT",
            AppError::LimitExceeded(_) => "LIMIT_EXCEEDED",
            AppError::CursorExpired(_) => "CURSOR_EXPIRED",
            AppError::SlowConsumer(_) => "SLOW_CONSUMER",
            AppError::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            AppError::PersistedQueryNotInList(_) => "PERSISTED_QUERY_NOT_IN_LIST",
            AppError::PersistedQueryIdRequired(_) => "PERSISTED_QUERY_ID_REQUIRED",
            AppError::Unavailable => "UNAVAILABLE",
            AppError::Timeout => "TIMEOUT",
            AppError::Internal { .. } => "INTERNAL",
        }
    }

    /// A bad argument, naming the field.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::BadUserInput {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// An opaque error under a fresh id; `details` are logged when a client is
    /// shown it ([`AppError::report`]).
    pub fn internal(details: impl std::fmt::Display) -> Self {
        AppError::Internal {
            id: Uuid::new_v4(),
            detail: details.to_string().into(),
        }
    }

    /// What the server records of an error a client is shown: internal details in
    /// the log under their id, and the server-side codes in `cortex_db_errors_total`.
    pub fn report(&self) {
        if let AppError::Internal { id, detail } = self {
            tracing::error!(error_id = %id, "internal error: {detail}");
        }
        if matches!(
            self,
            AppError::Unavailable
                | AppError::Timeout
                | AppError::Conflict(_)
                | AppError::Internal { .. }
        ) {
            metrics::counter!(crate::metrics::DB_ERRORS, "code" => self.code()).increment(1);
        }
    }

    /// The same, as a response error without a position: for the checks that
    /// refuse a request before it runs.
    pub fn to_server_error(&self) -> async_graphql::ServerError {
        let error = self.to_graphql();
        let mut server = async_graphql::ServerError::new(error.message, None);
        server.extensions = error.extensions;
        server
    }

    /// The GraphQL error with its `extensions.code` (and `field`, when known).
    pub fn to_graphql(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", self.code());
            if let AppError::BadUserInput {
                field: Some(field), ..
            } = self
            {
                ext.set("field", field.as_str());
            }
        })
    }
}

impl From<DieselError> for AppError {
    fn from(error: DieselError) -> Self {
        map_database_error(&error)
    }
}

fn map_database_error(error: &DieselError) -> AppError {
    match error {
        DieselError::NotFound => AppError::NotFound("record not found".into()),
        DieselError::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::UniqueViolation => {
                AppError::Conflict("a record with this data already exists".into())
            }
            DatabaseErrorKind::ForeignKeyViolation => {
                AppError::Conflict("referenced record does not exist".into())
            }
            DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection => {
                AppError::Unavailable
            }
            DatabaseErrorKind::CheckViolation | DatabaseErrorKind::NotNullViolation => {
                AppError::BadUserInput {
                    message: "the data violates a constraint".into(),
                    field: None,
                }
            }
            _ => classify_message(info.message()).unwrap_or_else(|| AppError::internal(error)),
        },
        _ => AppError::internal(error),
    }
}

/// PostgreSQL errors diesel reports as `Unknown`, recognised by their server message:
/// diesel-async drops the SQLSTATE of the errors diesel has no kind for (its
/// wrapper of tokio-postgres's error is private), so the message is all there is.
/// Cortex's sessions run with PostgreSQL's default (English) messages.
fn classify_message(message: &str) -> Option<AppError> {
    let message = message.to_ascii_lowercase();
    if message.contains("statement timeout") || message.contains("lock timeout") {
        Some(AppError::Timeout)
    } else if message.contains("terminating connection")
        || message.contains("the database system is shutting down")
        || message.contains("the database system is starting up")
        // A standby cancelled the read to replay the primary's changes.
        || message.contains("conflict with recovery")
        || message.contains("connection")
    {
        Some(AppError::Unavailable)
    } else {
        None
    }
}

impl From<crate::db::PoolError> for AppError {
    fn from(_: crate::db::PoolError) -> Self {
        // A timed-out wait or a failed connect: the pool's metrics and the
        // connection's own log tell which.
        AppError::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_string()))
    }

    #[test]
    fn the_subscription_refusals_have_their_own_codes_and_say_what_to_do() {
        for (error, code) in [
            (
                AppError::LimitExceeded("too many subscriptions".into()),
                "LIMIT_EXCEEDED",
            ),
            (AppError::CursorExpired("refetch".into()), "CURSOR_EXPIRED"),
            (AppError::SlowConsumer("resume".into()), "SLOW_CONSUMER"),
        ] {
            let message = error.to_string();
            let graphql = error.to_graphql();
            assert_eq!(error.code(), code);
            assert_eq!(graphql.message, message);
            assert_eq!(
                graphql.extensions.unwrap().get("code"),
                Some(&async_graphql::Value::from(code))
            );
        }
    }

    #[test]
    fn the_persisted_query_refusals_have_the_codes_apollo_and_urql_match() {
        let not_found = AppError::PersistedQueryNotFound;
        // Apollo's persisted-query link retries with the text on this message or code.
        assert_eq!(not_found.to_string(), "PersistedQueryNotFound");
        assert_eq!(not_found.code(), "PERSISTED_QUERY_NOT_FOUND");
        assert_eq!(
            AppError::PersistedQueryNotInList("unknown id".into()).code(),
            "PERSISTED_QUERY_NOT_IN_LIST"
        );
        let required = AppError::PersistedQueryIdRequired("send an id".into());
        assert_eq!(required.code(), "PERSISTED_QUERY_ID_REQUIRED");
        assert_eq!(
            required.to_server_error().extensions.unwrap().get("code"),
            Some(&async_graphql::Value::from("PERSISTED_QUERY_ID_REQUIRED"))
        );
    }

    #[test]
    fn unique_violation_is_conflict() {
        let e = AppError::from(db_error(
            DatabaseErrorKind::UniqueViolation,
            "duplicate key value violates unique constraint \"users_email_key\"",
        ));
        assert_eq!(e.code(), "CONFLICT");
        assert!(e.to_string().contains("already exists"));
        assert!(!e.to_string().contains("users_email_key"));
    }

    #[test]
    fn foreign_key_violation_is_conflict_naming_the_missing_reference() {
        let e = AppError::from(db_error(
            DatabaseErrorKind::ForeignKeyViolation,
            "insert violates fk_x",
        ));
        assert_eq!(e.code(), "CONFLICT");
        assert_eq!(e.to_string(), "referenced record does not exist");
    }

    #[test]
    fn lost_connection_is_unavailable() {
        assert_eq!(
            AppError::from(db_error(
                DatabaseErrorKind::UnableToSendCommand,
                "connection closed"
            ))
            .code(),
            "UNAVAILABLE"
        );
        assert_eq!(
            AppError::from(db_error(DatabaseErrorKind::ClosedConnection, "closed")).code(),
            "UNAVAILABLE"
        );
        assert_eq!(
            AppError::from(db_error(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command"
            ))
            .code(),
            "UNAVAILABLE"
        );
    }

    #[test]
    fn a_read_a_standby_cancelled_for_replay_is_unavailable_and_retried_elsewhere() {
        let e = AppError::from(db_error(
            DatabaseErrorKind::Unknown,
            "canceling statement due to conflict with recovery",
        ));
        assert_eq!(e.code(), "UNAVAILABLE");
    }

    #[test]
    fn pool_timeout_is_unavailable() {
        assert_eq!(
            AppError::from(crate::db::PoolError::TimedOut).code(),
            "UNAVAILABLE"
        );
    }

    #[test]
    fn statement_timeout_is_timeout() {
        let e = AppError::from(db_error(
            DatabaseErrorKind::Unknown,
            "canceling statement due to statement timeout",
        ));
        assert_eq!(e.code(), "TIMEOUT");
    }

    #[test]
    fn anything_else_is_internal_without_sql() {
        let e = AppError::from(db_error(
            DatabaseErrorKind::Unknown,
            "syntax error at or near \"SELECT\"",
        ));
        assert_eq!(e.code(), "INTERNAL");
        assert!(!e.to_string().contains("SELECT"));
        assert!(e.to_string().starts_with("internal error (id "));
    }

    #[test]
    fn not_found_maps_to_not_found() {
        assert_eq!(AppError::from(DieselError::NotFound).code(), "NOT_FOUND");
    }

    #[test]
    fn graphql_errors_carry_code_and_field() {
        let gql = AppError::bad_input("name", "name must be 1 to 100 characters").to_graphql();
        let ext = gql.extensions.expect("extensions");
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
        assert_eq!(ext.get("field"), Some(&async_graphql::Value::from("name")));
        for (e, code) in [
            (AppError::Unauthenticated("x".into()), "UNAUTHENTICATED"),
            (AppError::Forbidden("x".into()), "FORBIDDEN"),
            (AppError::NotFound("x".into()), "NOT_FOUND"),
            (AppError::Conflict("x".into()), "CONFLICT"),
            (AppError::Unavailable, "UNAVAILABLE"),
            (AppError::Timeout, "TIMEOUT"),
            (AppError::internal("x"), "INTERNAL"),
        ] {
            let ext = e.to_graphql().extensions.expect("extensions");
            assert_eq!(ext.get("code"), Some(&async_graphql::Value::from(code)));
        }
    }

    #[test]
    fn a_refusal_before_execution_carries_the_same_code_field_and_message() {
        let e = AppError::bad_input("name", "too long").to_server_error();
        assert_eq!(e.message, "too long");
        assert!(e.locations.is_empty() && e.path.is_empty());
        let ext = e.extensions.expect("extensions");
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
        assert_eq!(ext.get("field"), Some(&async_graphql::Value::from("name")));
    }
}

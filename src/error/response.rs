//! Every error a client gets, shaped here: GraphQL errors (codes, fields, the
//! engine's own errors), the HTTP error bodies of refusals before execution, and
//! the limit refusals. Each error is reported once per response
//! ([`AppError::report`]).

use async_graphql::{ServerError, Value};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppError;

/// async-graphql's own refusal when validation measures a complexity over the limit.
const TOO_COMPLEX: &str = "Query is too complex.";

/// Gives every error a stable `extensions.code`, the one place errors are mapped:
/// our [`AppError`] keeps its code; a database error that slipped through is mapped
/// (so SQL never reaches a client); errors from the GraphQL engine itself (parse,
/// validation, argument coercion) are `BAD_USER_INPUT`; anything else is `INTERNAL`.
pub fn normalize_error(error: ServerError) -> ServerError {
    classify(error).0
}

/// The shaped error, and the [`AppError`] it carries, if any.
fn classify(mut error: ServerError) -> (ServerError, Option<AppError>) {
    if error.message == TOO_COMPLEX && error.source.is_none() {
        let refusal = limit_error(
            "complexity",
            "the query is too complex: a connection field costs its page size (`first`/`last`, default 20) times its selection; see QUERY_MAX_COMPLEXITY".into(),
        );
        return (refusal, None);
    }
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|e| e.get("code").is_some());
    if has_code {
        return (error, None);
    }
    let mapped: Option<AppError> = match &error.source {
        Some(source) => {
            if let Some(app) = source.downcast_ref::<AppError>() {
                Some(app.clone())
            } else if let Some(app) = source.downcast_ref::<std::sync::Arc<AppError>>() {
                Some((**app).clone())
            } else if let Some(db) = source.downcast_ref::<diesel::result::Error>() {
                Some(map_diesel(db))
            } else {
                Some(AppError::internal(&error.message))
            }
        }
        None => None,
    };
    let (message, code, field) = match &mapped {
        Some(app) => {
            let field = match app {
                AppError::BadUserInput { field, .. } => field.clone(),
                _ => None,
            };
            (app.to_string(), app.code(), field)
        }
        None => (
            engine_message(&error.message),
            "BAD_USER_INPUT",
            engine_field(&error.message),
        ),
    };
    error.message = message;
    let ext = error.extensions.get_or_insert_with(Default::default);
    ext.set("code", Value::from(code));
    if let Some(field) = field {
        ext.set("field", Value::from(field));
    }
    (error, mapped)
}

/// The engine's message, except a syntax error: the parser words those as a
/// source excerpt with a caret (` --> 1:11 | … = expected selection`), which
/// the error's `locations` already say; the client gets one line.
fn engine_message(message: &str) -> String {
    if !message.trim_start().starts_with("-->") {
        return message.to_string();
    }
    let expected = message
        .lines()
        .find_map(|line| line.trim().strip_prefix("= "))
        .map(|what| what.replace('_', " "));
    match expected {
        Some(what) => format!("Syntax error: {what}"),
        None => "Syntax error".to_string(),
    }
}

/// The input a validation error is about: the argument it names, else the
/// first name it quotes (`Unknown field "nope" on type "User"` → `nope`).
fn engine_field(message: &str) -> Option<String> {
    let quoted = |text: &str| -> Option<String> {
        let start = text.find('"')? + 1;
        let len = text[start..].find('"')?;
        let name = text[start..start + len].trim_start_matches('$');
        (!name.is_empty()).then(|| name.to_string())
    };
    match message.find("argument \"") {
        Some(at) => quoted(&message[at..]),
        None if message.trim_start().starts_with("-->") => None,
        None => quoted(message),
    }
}

fn map_diesel(error: &diesel::result::Error) -> AppError {
    use diesel::result::Error as E;
    // diesel's error is not Clone; rebuild the cases the mapping distinguishes.
    match error {
        E::NotFound => AppError::NotFound("record not found".into()),
        E::DatabaseError(kind, info) => AppError::from(E::DatabaseError(
            *kind,
            Box::new(info.message().to_string()),
        )),
        other => AppError::internal(other),
    }
}

/// Shapes a response's errors ([`normalize_error`]) and reports each distinct
/// one once (a batch that failed is seen by every field it answered).
pub fn shape_errors(errors: Vec<ServerError>) -> Vec<ServerError> {
    let mut reported = std::collections::HashSet::new();
    errors
        .into_iter()
        .map(|error| {
            let (error, app) = classify(error);
            if let Some(app) = app {
                if reported.insert(app.to_string()) {
                    app.report();
                }
            }
            error
        })
        .collect()
}

/// A refusal naming the limit, with a stable code.
pub fn limit_error(limit: &str, message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    let ext = error.extensions.get_or_insert_with(Default::default);
    ext.set("code", Value::from("BAD_USER_INPUT"));
    ext.set("limit", Value::from(limit));
    error
}

/// A refusal by one of the request limits, naming it like the query limits do.
pub fn limit_response(status: StatusCode, limit: &str, message: String) -> Response {
    coded_limit_response(status, "BAD_USER_INPUT", limit, message)
}

/// A refusal naming the limit, with the given code.
pub fn coded_limit_response(
    status: StatusCode,
    code: &str,
    limit: &str,
    message: String,
) -> Response {
    let body = serde_json::json!({
        "errors": [{"message": message, "extensions": {"code": code, "limit": limit}}]
    });
    (status, Json(body)).into_response()
}

/// An error answered before any GraphQL runs (authentication, body, media type),
/// reported like every other.
pub fn error_response(status: StatusCode, error: AppError) -> Response {
    error.report();
    // The same error a resolver would give: message, code and `field`.
    let body = serde_json::json!({ "errors": [error.to_server_error()] });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(error: &ServerError) -> Option<&Value> {
        error.extensions.as_ref()?.get("code")
    }

    #[test]
    fn every_error_gets_a_code_and_no_database_text() {
        let engine = normalize_error(ServerError::new("Unknown field \"x\"", None));
        assert_eq!(code(&engine), Some(&Value::from("BAD_USER_INPUT")));

        let from_resolver: async_graphql::Error = AppError::Forbidden("not yours".into()).into();
        let shaped = normalize_error(from_resolver.into_server_error(Default::default()));
        assert_eq!(code(&shaped), Some(&Value::from("FORBIDDEN")));
        assert_eq!(shaped.message, "not yours");

        let database = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new("syntax error at or near \"SELECT\"".to_string()),
        );
        let leaked: async_graphql::Error = database.into();
        let shaped = normalize_error(leaked.into_server_error(Default::default()));
        assert_eq!(code(&shaped), Some(&Value::from("INTERNAL")));
        assert!(!shaped.message.contains("SELECT"), "{}", shaped.message);

        let complex = normalize_error(ServerError::new(TOO_COMPLEX, None));
        let ext = complex.extensions.as_ref().unwrap();
        assert_eq!(ext.get("limit"), Some(&Value::from("complexity")));
    }

    #[test]
    fn a_syntax_error_is_one_line_and_a_validation_error_names_its_field() {
        let parse = async_graphql::parser::parse_query("{ me { id ").unwrap_err();
        let shaped = normalize_error(ServerError::from(parse));
        assert!(
            shaped.message.starts_with("Syntax error"),
            "{}",
            shaped.message
        );
        assert!(!shaped.message.contains('\n'), "{}", shaped.message);
        assert!(!shaped.locations.is_empty());
        let ext = shaped.extensions.as_ref().unwrap();
        assert_eq!(ext.get("code"), Some(&Value::from("BAD_USER_INPUT")));
        assert_eq!(ext.get("field"), None);

        let unknown = normalize_error(ServerError::new(
            "Unknown field \"nope\" on type \"User\".",
            None,
        ));
        let ext = unknown.extensions.as_ref().unwrap();
        assert_eq!(ext.get("field"), Some(&Value::from("nope")));
        let argument = normalize_error(ServerError::new(
            "Field \"workspace\" argument \"id\" of type \"Query\" is required but not provided",
            None,
        ));
        let ext = argument.extensions.as_ref().unwrap();
        assert_eq!(ext.get("field"), Some(&Value::from("id")));
    }

    #[test]
    fn errors_keep_their_order_and_count_when_shaped() {
        let errors = vec![
            AppError::Timeout.to_server_error(),
            AppError::Timeout.to_server_error(),
            ServerError::new("Unknown field", None),
        ];
        let shaped = shape_errors(errors);
        assert_eq!(shaped.len(), 3);
        assert_eq!(code(&shaped[0]), Some(&Value::from("TIMEOUT")));
        assert_eq!(code(&shaped[2]), Some(&Value::from("BAD_USER_INPUT")));
    }
}

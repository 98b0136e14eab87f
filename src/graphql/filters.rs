//! GraphQL filter inputs, converted to the data layer's filters.

use async_graphql::{InputObject, Json, MaybeUndefined};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::db::conversations::ConversationFilter as DbConversationFilter;
use crate::db::messages::MessageFilter as DbMessageFilter;
use crate::db::metadata::PreparedShapes;
use crate::db::metadata::{is_orderable, MetadataFilter as DbMetadataFilter, PathPredicate};
use crate::db::workspaces::WorkspaceFilter as DbWorkspaceFilter;
use crate::error::{AppError, AppResult};

/// Deepest `and`/`or`/`not` nesting accepted in a metadata filter.
pub const MAX_FILTER_DEPTH: usize = 5;

/// A predicate on a JSONB `metadata` document.
#[derive(Debug, Clone, InputObject, Default)]
pub struct MetadataFilter {
    /// The document contains this JSON object (`@>`, GIN-indexed).
    pub contains: Option<Json<Value>>,
    /// The document is contained in this JSON (`<@`).
    pub contained_by: Option<Json<Value>>,
    /// The document has this top-level key (`?`, GIN-indexed).
    pub has_key: Option<String>,
    /// The document has any of these top-level keys.
    pub has_any_keys: Option<Vec<String>>,
    /// The document has all of these top-level keys.
    pub has_all_keys: Option<Vec<String>>,
    /// Comparisons at nested keys; all must hold.
    pub path: Option<Vec<JsonPathPredicate>>,
    /// All of these hold.
    pub and: Option<Vec<MetadataFilter>>,
    /// At least one of these holds (at least one filter: an empty `or` is refused,
    /// not read as "everything" or "nothing").
    pub or: Option<Vec<MetadataFilter>>,
    /// This does not hold.
    pub not: Option<Box<MetadataFilter>>,
}

/// A comparison at a nested key: numbers compare as numbers, strings as strings.
#[derive(Debug, Clone, InputObject)]
pub struct JsonPathPredicate {
    /// Keys from the root, e.g. `["labels", "team"]`; a key of digits also
    /// selects that position of an array (`["tags", "0"]`: the first tag).
    pub path: Vec<String>,
    /// Equal to (`null`: the value there is JSON `null`).
    pub eq: MaybeUndefined<Json<Value>>,
    /// Present and not equal to (`null`: present and not JSON `null`).
    pub ne: MaybeUndefined<Json<Value>>,
    /// Greater than (numbers or strings).
    pub gt: Option<Json<Value>>,
    /// Greater than or equal to.
    pub gte: Option<Json<Value>>,
    /// Less than.
    pub lt: Option<Json<Value>>,
    /// Less than or equal to.
    pub lte: Option<Json<Value>>,
    /// Equal to one of.
    #[graphql(name = "in")]
    pub in_: Option<Vec<Json<Value>>>,
    /// Present (`true`) or absent (`false`).
    pub exists: Option<bool>,
}

impl MetadataFilter {
    /// Validates and converts; `field` names the argument in errors.
    pub fn to_db(&self, field: &str, shapes: &PreparedShapes) -> AppResult<DbMetadataFilter> {
        let mut filter = self.convert(field)?;
        if filter.depth() > MAX_FILTER_DEPTH {
            return Err(AppError::bad_input(
                field,
                format!("metadata filters may nest and/or/not at most {MAX_FILTER_DEPTH} deep"),
            ));
        }
        shapes.admit(&mut filter);
        Ok(filter)
    }

    fn convert(&self, field: &str) -> AppResult<DbMetadataFilter> {
        let convert_all = |list: &Option<Vec<MetadataFilter>>| -> AppResult<Vec<DbMetadataFilter>> {
            list.iter().flatten().map(|f| f.convert(field)).collect()
        };
        // Metadata is always an object: anything else could never match, which
        // is a mistake in the query rather than an empty answer.
        if let Some(Json(v)) = &self.contains {
            if !v.is_object() {
                return Err(AppError::bad_input(
                    field,
                    "`contains` must be a JSON object",
                ));
            }
        }
        Ok(DbMetadataFilter {
            contains: self.contains.as_ref().map(|j| j.0.clone()),
            contained_by: self.contained_by.as_ref().map(|j| j.0.clone()),
            has_key: self.has_key.clone(),
            has_any_keys: self.has_any_keys.clone(),
            has_all_keys: self.has_all_keys.clone(),
            path: self
                .path
                .iter()
                .flatten()
                .map(|p| p.convert(field))
                .collect::<AppResult<_>>()?,
            and: convert_all(&self.and)?,
            or: match &self.or {
                Some(list) if list.is_empty() => {
                    return Err(AppError::bad_input(
                        field,
                        "`or` must hold at least one filter",
                    ))
                }
                _ => convert_all(&self.or)?,
            },
            not: self
                .not
                .as_ref()
                .map(|f| f.convert(field).map(Box::new))
                .transpose()?,
            preparable: false,
        })
    }
}

impl JsonPathPredicate {
    fn convert(&self, field: &str) -> AppResult<PathPredicate> {
        if self.path.is_empty() || self.path.len() > 32 {
            return Err(AppError::bad_input(field, "`path` must have 1 to 32 keys"));
        }
        for (name, value) in [
            ("gt", &self.gt),
            ("gte", &self.gte),
            ("lt", &self.lt),
            ("lte", &self.lte),
        ] {
            if let Some(Json(v)) = value {
                if !is_orderable(v) {
                    return Err(AppError::bad_input(
                        field,
                        format!("`{name}` compares numbers or strings only"),
                    ));
                }
            }
        }
        let value = |v: &Option<Json<Value>>| v.as_ref().map(|j| j.0.clone());
        // An explicit `null` compares with JSON null; an absent one does not compare.
        let nullable = |v: &MaybeUndefined<Json<Value>>| match v {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(Value::Null),
            MaybeUndefined::Value(j) => Some(j.0.clone()),
        };
        Ok(PathPredicate {
            path: self.path.clone(),
            eq: nullable(&self.eq),
            ne: nullable(&self.ne),
            gt: value(&self.gt),
            gte: value(&self.gte),
            lt: value(&self.lt),
            lte: value(&self.lte),
            r#in: self
                .in_
                .as_ref()
                .map(|list| list.iter().map(|j| j.0.clone()).collect()),
            exists: self.exists,
        })
    }
}

/// Which workspaces.
#[derive(Debug, Clone, InputObject, Default)]
pub struct WorkspaceFilter {
    /// On `metadata`.
    pub metadata: Option<MetadataFilter>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
}

impl WorkspaceFilter {
    /// Validates and converts.
    pub fn to_db(filter: Option<&Self>, shapes: &PreparedShapes) -> AppResult<DbWorkspaceFilter> {
        let Some(f) = filter else {
            return Ok(DbWorkspaceFilter::default());
        };
        Ok(DbWorkspaceFilter {
            metadata: f
                .metadata
                .as_ref()
                .map(|m| m.to_db("filter.metadata", shapes))
                .transpose()?,
            name_contains: f.name_contains.clone(),
        })
    }
}

/// Which conversations.
#[derive(Debug, Clone, InputObject, Default)]
pub struct ConversationFilter {
    /// On `metadata`.
    pub metadata: Option<MetadataFilter>,
    /// Conversations this user takes part in.
    pub participant_id: Option<String>,
    /// Case-insensitive substring of the topic.
    pub topic_contains: Option<String>,
}

impl ConversationFilter {
    /// Validates and converts.
    pub fn to_db(
        filter: Option<&Self>,
        shapes: &PreparedShapes,
    ) -> AppResult<DbConversationFilter> {
        let Some(f) = filter else {
            return Ok(DbConversationFilter::default());
        };
        Ok(DbConversationFilter {
            metadata: f
                .metadata
                .as_ref()
                .map(|m| m.to_db("filter.metadata", shapes))
                .transpose()?,
            participant_id: f.participant_id.clone(),
            topic_contains: f.topic_contains.clone(),
        })
    }
}

/// Which messages.
#[derive(Debug, Clone, InputObject, Default)]
pub struct MessageFilter {
    /// On `metadata`.
    pub metadata: Option<MetadataFilter>,
    /// Sent by this user.
    pub sender_id: Option<String>,
    /// Sent at or after.
    pub since: Option<DateTime<Utc>>,
    /// Sent before.
    pub until: Option<DateTime<Utc>>,
}

impl MessageFilter {
    /// Validates and converts.
    pub fn to_db(filter: Option<&Self>, shapes: &PreparedShapes) -> AppResult<DbMessageFilter> {
        let Some(f) = filter else {
            return Ok(DbMessageFilter::default());
        };
        Ok(DbMessageFilter {
            metadata: f
                .metadata
                .as_ref()
                .map(|m| m.to_db("filter.metadata", shapes))
                .transpose()?,
            sender_id: f.sender_id.clone(),
            since: f.since,
            until: f.until,
        })
    }
}

//! Filters on the JSONB `metadata` column of every table, built with diesel's JSONB
//! operators: keys, paths and values are always bound parameters.
//!
//! `contains` and key existence map straight onto the GIN-indexed operators
//! (`@>`, `?`, `?|`, `?&`). A path comparison also adds a containment prefilter for
//! equality, so `eq` at a nested key can use the index too. Whether an index should
//! is the planner's choice, with the filter's values in view ([`Within`]). Ordering comparisons
//! (`gt`, `lt`, ...) only match values of the same JSON type: numbers compare as
//! numbers, strings as strings, and `"10"` never matches `gt: 3`.

use serde_json::Value;

/// Where a filter is evaluated, which decides whether its statement may be kept
/// prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Within {
    /// Across the table (a caller's workspaces, the conversations they take part
    /// in): a metadata filter's statement is kept prepared when the pool admitted
    /// its shape ([`PreparedShapes`]).
    Table,
    /// Within one parent's rows (a page or count per workspace or conversation, a
    /// one-parent read): never kept prepared, so PostgreSQL plans every execution
    /// with the filter's values in view. Whether an index on the filtered column
    /// beats reading the parent's rows depends on the value: a GIN scan for a rare
    /// value (0.4 ms for 10 conversations of 100,000 messages, where reading them
    /// took 900 ms), the parent's ordered index for a common one. A kept statement
    /// soon runs on PostgreSQL's generic plan, blind to the value, which ANDed the
    /// GIN index with the parent's for a common value and read every match in the
    /// table once per parent: 130 ms instead of 0.5 ms for 10 workspaces
    /// (`bench/RESULTS.md`). The price is a prepare round trip per execution.
    Parent,
}

/// `TRUE`, keeping the statement that holds it out of the connection's statement
/// cache, so PostgreSQL plans each execution with its bound values in view (see
/// [`Within::Parent`]).
pub fn planned_with_values() -> crate::db::lateral::FixedSql<diesel::sql_types::Bool> {
    crate::db::lateral::FixedSql::uncached("TRUE")
}

/// A predicate on a `metadata` document.
#[derive(Debug, Clone, PartialEq, Default, Eq, Hash)]
pub struct MetadataFilter {
    /// The document contains this JSON (`@>`).
    pub contains: Option<Value>,
    /// The document is contained in this JSON (`<@`).
    pub contained_by: Option<Value>,
    /// The document has this top-level key (`?`).
    pub has_key: Option<String>,
    /// The document has any of these top-level keys (`?|`).
    pub has_any_keys: Option<Vec<String>>,
    /// The document has all of these top-level keys (`?&`).
    pub has_all_keys: Option<Vec<String>>,
    /// Comparisons at nested paths; all must hold.
    pub path: Vec<PathPredicate>,
    /// All of these hold.
    pub and: Vec<MetadataFilter>,
    /// At least one of these holds (when non-empty).
    pub or: Vec<MetadataFilter>,
    /// This does not hold.
    pub not: Option<Box<MetadataFilter>>,
    /// Statements holding this filter may be kept prepared on their connection
    /// (its shape was admitted by [`PreparedShapes`]); off, each is prepared for
    /// one execution.
    pub preparable: bool,
}

/// A comparison of the value at `path` (a list of keys; array positions as digits,
/// negative ones from the end, as PostgreSQL's `#>` reads them).
#[derive(Debug, Clone, PartialEq, Default, Eq, Hash)]
pub struct PathPredicate {
    /// Keys from the document root.
    pub path: Vec<String>,
    /// Equal to.
    pub eq: Option<Value>,
    /// Present and not equal to.
    pub ne: Option<Value>,
    /// Greater than (same JSON type only).
    pub gt: Option<Value>,
    /// Greater than or equal to (same JSON type only).
    pub gte: Option<Value>,
    /// Less than (same JSON type only).
    pub lt: Option<Value>,
    /// Less than or equal to (same JSON type only).
    pub lte: Option<Value>,
    /// Equal to one of.
    pub r#in: Option<Vec<Value>>,
    /// Present (`true`) or absent (`false`).
    pub exists: Option<bool>,
}

impl MetadataFilter {
    /// Depth of `and`/`or`/`not` nesting (1 for a flat filter).
    pub fn depth(&self) -> usize {
        let children = self
            .and
            .iter()
            .chain(self.or.iter())
            .chain(self.not.as_deref())
            .map(MetadataFilter::depth)
            .max()
            .unwrap_or(0);
        1 + children
    }

    /// A filter that only checks containment (the seed's `find_by_metadata`).
    pub fn containing(value: Value) -> Self {
        Self {
            contains: Some(value),
            ..Self::default()
        }
    }
}

impl MetadataFilter {
    /// What decides the SQL text of this filter, without its values: which
    /// operators it uses, where, nested how. Two filters of one shape build the
    /// same statement with different bound parameters.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        self.write_shape(&mut out);
        out
    }

    fn write_shape(&self, out: &mut String) {
        let flags = [
            self.contains.is_some(),
            self.contained_by.is_some(),
            self.has_key.is_some(),
            self.has_any_keys.is_some(),
            self.has_all_keys.is_some(),
        ];
        out.extend(flags.iter().map(|&on| if on { '1' } else { '0' }));
        for p in &self.path {
            out.push_str("[p");
            let ops = [
                p.eq.is_some(),
                p.eq.is_some() && !p.path.iter().any(|k| may_be_position(k)),
                p.ne.is_some(),
                p.gt.is_some(),
                p.gte.is_some(),
                p.lt.is_some(),
                p.lte.is_some(),
                p.r#in.is_some(),
            ];
            out.extend(ops.iter().map(|&on| if on { '1' } else { '0' }));
            out.push_str(match p.exists {
                Some(true) => "+",
                Some(false) => "-",
                None => "",
            });
            out.push(']');
        }
        for (tag, children) in [("&(", &self.and), ("|(", &self.or)] {
            for child in children {
                out.push_str(tag);
                child.write_shape(out);
                out.push(')');
            }
        }
        if let Some(child) = &self.not {
            out.push_str("!(");
            child.write_shape(out);
            out.push(')');
        }
    }

    fn set_preparable(&mut self) {
        self.preparable = true;
        for child in self.and.iter_mut().chain(self.or.iter_mut()) {
            child.set_preparable();
        }
        if let Some(child) = &mut self.not {
            child.set_preparable();
        }
    }
}

/// How many metadata-filter shapes may have prepared statements: filter shapes
/// are the client's to choose and unbounded in number, and every prepared
/// statement stays in a PostgreSQL backend's memory for the connection's life.
/// The first shapes seen (an app's few filters) are prepared once per connection,
/// like every other statement; any further shape is prepared for each execution
/// (a round trip and a plan more, measured in `bench/RESULTS.md`).
pub const MAX_PREPARED_FILTER_SHAPES: usize = 32;

/// The metadata-filter shapes admitted to the statement cache, for one pool.
#[derive(Debug, Default)]
pub struct PreparedShapes {
    admitted: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl PreparedShapes {
    /// Marks `filter` preparable when its shape is admitted, or can still be.
    pub fn admit(&self, filter: &mut MetadataFilter) {
        let shape = filter.shape();
        let mut admitted = self.admitted.lock().expect("filter shapes lock");
        if admitted.contains(&shape) || admitted.len() < MAX_PREPARED_FILTER_SHAPES {
            admitted.insert(shape);
            drop(admitted);
            filter.set_preparable();
        }
    }

    /// How many shapes are admitted.
    pub fn len(&self) -> usize {
        self.admitted.lock().expect("filter shapes lock").len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The nested object `{"a":{"b":value}}` for the path `["a","b"]`: a containment
/// prefilter for equality that the GIN index can answer.
pub fn nest(path: &[String], value: &Value) -> Value {
    path.iter().rev().fold(value.clone(), |inner, key| {
        let mut object = serde_json::Map::new();
        object.insert(key.clone(), inner);
        Value::Object(object)
    })
}

/// Whether a path key may select an array position (`#>` reads `"1"` as the
/// second item of an array, and as the key `"1"` of an object).
pub fn may_be_position(key: &str) -> bool {
    key.parse::<i64>().is_ok()
}

/// Whether `value` can be ordered by `gt`/`lt` (numbers and strings).
pub fn is_orderable(value: &Value) -> bool {
    matches!(value, Value::Number(_) | Value::String(_))
}

/// The `jsonb_typeof` name of a JSON value.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

diesel::define_sql_function! {
    /// PostgreSQL's `jsonb_typeof`.
    fn jsonb_typeof(value: diesel::sql_types::Jsonb) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// Defines `fn metadata_predicate(&MetadataFilter) -> BoxedPredicate` for one table.
/// A macro, because diesel's expression types are per column.
macro_rules! metadata_predicate_for {
    ($table:ident) => {
        /// A boxed SQL predicate on this table's `metadata`.
        pub type BoxedPredicate = Box<
            dyn diesel::BoxableExpression<
                    $crate::db::schema::$table::table,
                    diesel::pg::Pg,
                    SqlType = diesel::sql_types::Nullable<diesel::sql_types::Bool>,
                >,
        >;

        /// The SQL form of `filter` on `$table.metadata`.
        pub fn metadata_predicate(filter: &$crate::db::metadata::MetadataFilter) -> BoxedPredicate {
            use diesel::dsl::not;
            use diesel::prelude::*;
            use diesel::sql_types::{Bool, Nullable};
            use diesel::PgJsonbExpressionMethods as Jsonb;
            use $crate::db::metadata::{jsonb_typeof, json_type, nest};
            use $crate::db::schema::$table::dsl::metadata;

            // A statement holding a filter whose shape was not admitted
            // (`PreparedShapes`) stays out of the connection's statement cache.
            let always = || -> BoxedPredicate {
                Box::new(if filter.preparable {
                    $crate::db::lateral::FixedSql::<Nullable<Bool>>::new("TRUE")
                } else {
                    $crate::db::lateral::FixedSql::<Nullable<Bool>>::uncached("TRUE")
                })
            };
            fn and(a: BoxedPredicate, b: BoxedPredicate) -> BoxedPredicate {
                Box::new(a.and(b))
            }

            let mut predicate = always();
            if let Some(value) = &filter.contains {
                predicate = and(predicate, Box::new(Jsonb::contains(metadata, value.clone()).nullable()));
            }
            if let Some(value) = &filter.contained_by {
                predicate = and(predicate, Box::new(Jsonb::is_contained_by(metadata, value.clone()).nullable()));
            }
            if let Some(key) = &filter.has_key {
                predicate = and(predicate, Box::new(metadata.has_key(key.clone()).nullable()));
            }
            if let Some(keys) = &filter.has_any_keys {
                predicate = and(predicate, Box::new(metadata.has_any_key(keys.clone()).nullable()));
            }
            if let Some(keys) = &filter.has_all_keys {
                predicate = and(predicate, Box::new(metadata.has_all_keys(keys.clone()).nullable()));
            }
            for p in &filter.path {
                let at = || metadata.retrieve_by_path_as_object(p.path.clone());
                if let Some(v) = &p.eq {
                    // The GIN prefilter nests objects, so it holds only for a path of
                    // object keys: a key of digits may be an array position.
                    if !p.path.iter().any(|k| $crate::db::metadata::may_be_position(k)) {
                        predicate = and(predicate, Box::new(Jsonb::contains(metadata, nest(&p.path, v)).nullable()));
                    }
                    predicate = and(predicate, Box::new(at().eq(v.clone()).nullable()));
                }
                if let Some(v) = &p.ne {
                    predicate = and(predicate, Box::new(at().ne(v.clone()).nullable()));
                }
                let same_type = |v: &serde_json::Value| jsonb_typeof(at()).eq(json_type(v));
                if let Some(v) = &p.gt {
                    predicate = and(predicate, Box::new(same_type(v).and(at().gt(v.clone())).nullable()));
                }
                if let Some(v) = &p.gte {
                    predicate = and(predicate, Box::new(same_type(v).and(at().ge(v.clone())).nullable()));
                }
                if let Some(v) = &p.lt {
                    predicate = and(predicate, Box::new(same_type(v).and(at().lt(v.clone())).nullable()));
                }
                if let Some(v) = &p.lte {
                    predicate = and(predicate, Box::new(same_type(v).and(at().le(v.clone())).nullable()));
                }
                if let Some(values) = &p.r#in {
                    predicate = and(predicate, Box::new(at().eq_any(values.clone()).nullable()));
                }
                match p.exists {
                    Some(true) => predicate = and(predicate, Box::new(at().is_not_null().nullable())),
                    Some(false) => predicate = and(predicate, Box::new(at().is_null().nullable())),
                    None => {}
                }
            }
            for child in &filter.and {
                predicate = and(predicate, metadata_predicate(child));
            }
            if !filter.or.is_empty() {
                let mut any: BoxedPredicate = Box::new($crate::db::lateral::FixedSql::<Nullable<Bool>>::new("FALSE"));
                for child in &filter.or {
                    any = Box::new(any.or(metadata_predicate(child)));
                }
                predicate = and(predicate, any);
            }
            if let Some(child) = &filter.not {
                // NOT over a NULL (a missing path) is NULL: treat "unknown" as "does not hold".
                let negated = not(coalesce_false(metadata_predicate(child), false));
                predicate = and(predicate, Box::new(negated.nullable()));
            }
            predicate
        }

        diesel::define_sql_function! {
            /// `COALESCE(predicate, FALSE)`.
            #[sql_name = "COALESCE"]
            fn coalesce_false(value: diesel::sql_types::Nullable<diesel::sql_types::Bool>, fallback: diesel::sql_types::Bool) -> diesel::sql_types::Bool;
        }
    };
}

pub(crate) use metadata_predicate_for;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nest_builds_the_containment_object() {
        assert_eq!(
            nest(&["a".into(), "b".into()], &json!(5)),
            json!({"a": {"b": 5}})
        );
        assert_eq!(nest(&[], &json!("x")), json!("x"));
    }

    #[test]
    fn a_shape_is_what_changes_the_sql_and_never_a_value() {
        let eq_at = |key: &str, value: Value| MetadataFilter {
            path: vec![PathPredicate {
                path: vec![key.into()],
                eq: Some(value),
                ..Default::default()
            }],
            ..Default::default()
        };
        let gold = MetadataFilter::containing(json!({"tier": "gold"}));
        assert_eq!(
            gold.shape(),
            MetadataFilter::containing(json!([1, 2])).shape()
        );
        assert_eq!(eq_at("a", json!(1)).shape(), eq_at("b", json!("x")).shape());
        // A key of digits drops the GIN prefilter: another statement.
        assert_ne!(eq_at("a", json!(1)).shape(), eq_at("0", json!(1)).shape());
        let has_key = MetadataFilter {
            has_key: Some("tier".into()),
            ..Default::default()
        };
        assert_ne!(gold.shape(), has_key.shape());
        let both = MetadataFilter {
            and: vec![gold.clone()],
            or: vec![has_key.clone()],
            ..Default::default()
        };
        let swapped = MetadataFilter {
            and: vec![has_key],
            or: vec![gold],
            ..Default::default()
        };
        assert_ne!(both.shape(), swapped.shape());
    }

    #[test]
    fn depth_counts_nesting() {
        let leaf = MetadataFilter::containing(json!({}));
        assert_eq!(leaf.depth(), 1);
        let nested = MetadataFilter {
            not: Some(Box::new(MetadataFilter {
                or: vec![leaf.clone()],
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(nested.depth(), 3);
    }

    #[test]
    fn only_numbers_and_strings_are_orderable() {
        assert!(is_orderable(&json!(1.5)));
        assert!(is_orderable(&json!("a")));
        assert!(!is_orderable(&json!([1])));
        assert!(!is_orderable(&json!(null)));
    }
}

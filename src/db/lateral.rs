//! A level of a nested query as one statement: `unnest($parents)` joined
//! `LATERAL` to the page (or count) of each parent, and the rows split back per
//! parent. diesel has no `LATERAL`, so the statement is a small `QueryFragment`;
//! everything inside it is a diesel query with bound parameters.

use std::collections::HashMap;

use uuid::Uuid;

use crate::db::{Page, PageArgs, SortKey};

/// `SELECT page.* FROM unnest($parents) AS parent(id) CROSS JOIN LATERAL (inner) AS page
/// WHERE scope`: one statement that reads a page per parent. `inner` is a diesel query
/// that refers to the current parent as `parent.id` (see [`parent_id`]); diesel has no
/// LATERAL. `scope` is a predicate on `parent.id` that holds for the parents the caller
/// may read. It is checked once per parent, before any page is read (a check inside
/// `inner` would run once per row: 2,000 times for 100 pages of 20 messages); written
/// as a correlated lookup of the parent's owner, it costs a primary-key lookup or two
/// per parent in every plan PostgreSQL may pick, whatever the owner's size (a join
/// with "all the owner's conversations" is hashed whole in the generic plan that a
/// prepared statement ends up with).
#[derive(Debug, Clone)]
pub struct PerParent<S, Q> {
    parents: Vec<uuid::Uuid>,
    scope: S,
    inner: Q,
    tagged: bool,
}

impl<S, Q> PerParent<S, Q> {
    /// Pages of `inner` for each of `parents` for which `scope` holds.
    pub fn new(parents: Vec<uuid::Uuid>, scope: S, inner: Q) -> Self {
        Self {
            parents,
            scope,
            inner,
            tagged: false,
        }
    }
}

/// The current parent's id inside a [`PerParent`] query.
pub fn parent_id() -> FixedSql<diesel::sql_types::Uuid> {
    FixedSql::new("parent.id")
}

/// A fixed piece of SQL of type `ST`, written in our source. Unlike diesel's `sql()`
/// literal, which marks its statement as never cacheable (its text could come from
/// anywhere), this keeps the statement preparable once per connection: a page
/// statement was otherwise prepared anew, a round trip and a parse, on every request.
#[derive(Debug, Clone, Copy)]
pub struct FixedSql<ST> {
    sql: &'static str,
    cached: bool,
    sql_type: std::marker::PhantomData<ST>,
}

impl<ST> FixedSql<ST> {
    /// `sql`, as an expression of type `ST`.
    pub const fn new(sql: &'static str) -> Self {
        Self {
            sql,
            cached: true,
            sql_type: std::marker::PhantomData,
        }
    }

    /// `sql`, keeping the statement that holds it out of the connection's
    /// statement cache (prepared for one execution only).
    pub const fn uncached(sql: &'static str) -> Self {
        Self {
            sql,
            cached: false,
            sql_type: std::marker::PhantomData,
        }
    }
}

impl<ST: diesel::sql_types::SqlType + diesel::expression::TypedExpressionType> diesel::Expression
    for FixedSql<ST>
{
    type SqlType = ST;
}

impl<ST> diesel::query_builder::QueryFragment<diesel::pg::Pg> for FixedSql<ST> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        if !self.cached {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql(self.sql);
        Ok(())
    }
}

// The text is a value, not part of the type: statements holding one are cached by
// their SQL text, never by type.
impl<ST> diesel::query_builder::QueryId for FixedSql<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST, QS> diesel::AppearsOnTable<QS> for FixedSql<ST> where FixedSql<ST>: diesel::Expression {}

impl<ST, QS> diesel::SelectableExpression<QS> for FixedSql<ST> where FixedSql<ST>: diesel::Expression
{}

impl<ST, GB> diesel::expression::ValidGrouping<GB> for FixedSql<ST> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

// No static query id: the SQL depends on the inner query's filters. diesel then caches
// the prepared statement by its SQL text, so a repeated shape is parsed once per
// connection (an uncached statement costs an extra round trip to prepare).
impl<S, Q> diesel::query_builder::QueryId for PerParent<S, Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<S, Q: diesel::query_builder::Query> diesel::query_builder::Query for PerParent<S, Q> {
    type SqlType = Q::SqlType;
}

impl<S, Q> diesel::query_builder::QueryFragment<diesel::pg::Pg> for PerParent<S, Q>
where
    S: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
    Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql(if self.tagged {
            "SELECT parent.id, page.* FROM unnest("
        } else {
            "SELECT page.* FROM unnest("
        });
        out.push_bind_param::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&self.parents)?;
        out.push_sql(") AS parent(id) CROSS JOIN LATERAL (");
        self.inner.walk_ast(out.reborrow())?;
        out.push_sql(") AS page WHERE ");
        self.scope.walk_ast(out.reborrow())?;
        Ok(())
    }
}

/// `SELECT parent.id, page.* FROM unnest($parents) AS parent(id) CROSS JOIN LATERAL (inner) AS page …`:
/// like [`PerParent`], for single-row inner queries (counts), tagged with the parent.
#[derive(Debug, Clone)]
pub struct TaggedPerParent<S, Q>(PerParent<S, Q>);

impl<S, Q> TaggedPerParent<S, Q> {
    /// One row of `inner` per parent for which `scope` holds, each with the parent's id first.
    pub fn new(parents: Vec<uuid::Uuid>, scope: S, inner: Q) -> Self {
        Self(PerParent {
            tagged: true,
            ..PerParent::new(parents, scope, inner)
        })
    }
}

impl<S, Q> diesel::query_builder::QueryId for TaggedPerParent<S, Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<S, Q: diesel::query_builder::Query> diesel::query_builder::Query for TaggedPerParent<S, Q> {
    type SqlType = (diesel::sql_types::Uuid, Q::SqlType);
}

impl<S, Q> diesel::query_builder::QueryFragment<diesel::pg::Pg> for TaggedPerParent<S, Q>
where
    PerParent<S, Q>: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    fn walk_ast<'b>(
        &'b self,
        out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        self.0.walk_ast(out)
    }
}

/// Rows of a per-parent statement split by parent: every parent asked about gets
/// an entry, maybe empty.
pub fn by_parent<T>(
    rows: Vec<T>,
    parents: &[Uuid],
    parent: impl Fn(&T) -> Uuid,
) -> HashMap<Uuid, Vec<T>> {
    let mut out: HashMap<Uuid, Vec<T>> = parents.iter().map(|p| (*p, Vec::new())).collect();
    for row in rows {
        out.entry(parent(&row)).or_default().push(row);
    }
    out
}

/// Rows of a per-parent page statement as one [`Page`] per parent, each in the
/// list's order. `ascending_fetch` is the order the statement read rows in
/// (ascending by `key`, or descending); a page read from its end is turned back.
pub fn pages_by_parent<T>(
    rows: Vec<T>,
    parents: &[Uuid],
    args: &PageArgs,
    ascending_fetch: bool,
    parent: impl Fn(&T) -> Uuid,
    key: impl Fn(&T) -> SortKey,
) -> HashMap<Uuid, Page<T>> {
    by_parent(rows, parents, parent)
        .into_iter()
        .map(|(p, mut rows)| {
            rows.sort_by_key(|r| key(r));
            if !ascending_fetch {
                rows.reverse();
            }
            (p, Page::from_fetched(rows, args))
        })
        .collect()
}

/// Grouped counts for every parent asked about: a parent without rows counts 0.
pub fn counts_by_parent(parents: &[Uuid], counts: Vec<(Uuid, i64)>) -> HashMap<Uuid, i64> {
    let counts: HashMap<Uuid, i64> = counts.into_iter().collect();
    parents
        .iter()
        .map(|p| (*p, counts.get(p).copied().unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use diesel::pg::Pg;
    use diesel::prelude::*;
    use diesel::query_builder::QueryFragment;

    use super::*;
    use crate::db::messages;
    use crate::db::metadata::{MetadataFilter, PathPredicate};
    use crate::db::schema::{conversations as c, messages as m};

    /// Whether diesel will prepare `query` once per connection and reuse it.
    fn cacheable(query: &impl QueryFragment<Pg>) -> bool {
        query.is_safe_to_cache_prepared(&Pg).unwrap()
    }

    #[test]
    fn page_statements_are_prepared_once_per_connection_unless_they_hold_a_filter() {
        let page = |filter: &messages::MessageFilter, with_metadata: bool| {
            let owned = c::table
                .filter(c::id.eq(parent_id()))
                .select(c::topic)
                .single_value()
                .eq("mine");
            let inner = messages::filtered(filter, crate::db::metadata::Within::Parent)
                .filter(m::conversation_id.eq(parent_id()))
                .select(messages::columns(with_metadata))
                .limit(21);
            PerParent::new(vec![], owned, inner)
        };
        let unfiltered = messages::MessageFilter::default();
        assert!(cacheable(&page(&unfiltered, false)));
        assert!(cacheable(&page(&unfiltered, true)));
        // diesel's own `sql()` literal would make it a fresh statement every time.
        let literal = m::table
            .filter(m::conversation_id.eq(diesel::dsl::sql::<diesel::sql_types::Uuid>("parent.id")))
            .select(m::id);
        assert!(!cacheable(&literal));
        // Within a parent, a filter's value decides the plan (an index on the
        // filtered column or the parent's rows): planned with it every time, even
        // for a metadata shape the pool admitted.
        let by_sender = messages::MessageFilter {
            sender_id: Some("alice".into()),
            ..Default::default()
        };
        assert!(!cacheable(&page(&by_sender, false)));
        let mut by_metadata = messages::MessageFilter {
            metadata: Some(MetadataFilter {
                path: vec![PathPredicate {
                    path: vec!["labels".into(), "team".into()],
                    eq: Some(serde_json::json!("core")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!cacheable(&page(&by_metadata, false)));
        let shapes = crate::db::metadata::PreparedShapes::default();
        shapes.admit(by_metadata.metadata.as_mut().unwrap());
        assert!(!cacheable(&page(&by_metadata, false)));
        let since = messages::MessageFilter {
            since: Some(chrono::DateTime::UNIX_EPOCH),
            ..Default::default()
        };
        assert!(
            cacheable(&page(&since, false)),
            "a range on the parent's own index"
        );
    }
}

//! The indexes answer what they are there for, shown by PostgreSQL's own `EXPLAIN` of
//! the SQL diesel builds: the metadata filter's `contains` and `hasKey` from the GIN
//! indexes, within a parent only when the value is rare; a conversation's message
//! page in order from its btree index.

mod common;

use common::TestDb;
use cortex::db::metadata::{MetadataFilter, Within};
use cortex::db::schema;
use cortex::db::{conversations, messages, workspaces};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;

/// `EXPLAIN` in front of any diesel query, keeping its bound parameters.
#[derive(QueryId)]
struct Explain<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("EXPLAIN ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> diesel::query_builder::Query for Explain<Q> {
    type SqlType = Text;
}

async fn plan<Q>(conn: &mut AsyncPgConnection, query: Q) -> String
where
    Q: QueryFragment<Pg> + QueryId + Send,
{
    Explain(query)
        .load::<String>(conn)
        .await
        .expect("EXPLAIN")
        .join("\n")
}

/// A connection whose planner may not use `methods` (`seqscan`, `sort`, ...). A few
/// rows would be read sequentially (or sorted) anyway; forbidding it asks the planner
/// whether an index *can* answer the query, which is what we assert.
async fn conn_without(db: &TestDb, methods: &[&str]) -> AsyncPgConnection {
    let mut conn = db.conn().await;
    for method in methods {
        diesel::sql_query(format!("SET enable_{method} = off"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn
}

#[tokio::test]
async fn contains_uses_the_jsonb_path_ops_gin_index() {
    let db = TestDb::new().await;
    let mut conn = conn_without(&db, &["seqscan"]).await;
    let filter = MetadataFilter::containing(json!({"tier": "gold"}));
    let query = schema::workspaces::table
        .filter(workspaces::metadata_predicate(&filter))
        .select(schema::workspaces::id);
    let plan = plan(&mut conn, query).await;
    assert!(
        plan.contains("Bitmap Index Scan on idx_workspaces_metadata "),
        "contains did not use idx_workspaces_metadata:\n{plan}"
    );
}

#[tokio::test]
async fn has_key_uses_the_key_existence_gin_index() {
    let db = TestDb::new().await;
    let mut conn = conn_without(&db, &["seqscan"]).await;
    let filter = MetadataFilter {
        has_key: Some("priority".into()),
        ..Default::default()
    };
    let query = schema::messages::table
        .filter(messages::metadata_predicate(&filter))
        .select(schema::messages::id);
    let plan = plan(&mut conn, query).await;
    assert!(
        plan.contains("Bitmap Index Scan on idx_messages_metadata_keys "),
        "hasKey did not use idx_messages_metadata_keys:\n{plan}"
    );
}

#[tokio::test]
async fn within_a_parent_the_plan_follows_the_filters_value() {
    use schema::conversations::dsl as c;
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    // One workspace of 2,000 conversations: 2 "rare", the rest "common".
    for sql in [
        "INSERT INTO users (user_id, name) VALUES ('alice', 'Alice')",
        "INSERT INTO workspaces (id, name, owner_id) VALUES (md5('w')::uuid, 'w', 'alice')",
        "INSERT INTO conversations (workspace_id, topic, metadata, created_at)
           SELECT md5('w')::uuid, 't', jsonb_build_object('kind', CASE WHEN n % 1000 = 7 THEN 'rare' ELSE 'common' END),
                  timestamptz '2026-01-01' + make_interval(secs => n)
           FROM generate_series(1, 2000) n",
        "ANALYZE conversations",
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    let workspace: uuid::Uuid = diesel::select(diesel::dsl::sql::<diesel::sql_types::Uuid>(
        "md5('w')::uuid",
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    let page = |kind: &str| {
        let filter = conversations::ConversationFilter {
            metadata: Some(MetadataFilter::containing(json!({ "kind": kind }))),
            ..Default::default()
        };
        conversations::filtered(&filter, Within::Parent)
            .filter(c::workspace_id.eq(workspace))
            .order((c::created_at.asc(), c::id.asc()))
            .limit(11)
            .select(c::id)
    };
    // A rare value: its few GIN entries, not the workspace's 2,000 rows.
    let rare = plan(&mut conn, page("rare")).await;
    assert!(rare.contains("idx_conversations_metadata"), "{rare}");
    // A common one: the workspace's ordered index, stopping at the page's end,
    // not every match in the table.
    let common = plan(&mut conn, page("common")).await;
    assert!(
        common.contains("idx_conversations_workspace_created")
            && !common.contains("idx_conversations_metadata"),
        "{common}"
    );
}

#[tokio::test]
async fn a_message_page_is_read_in_order_from_the_index_without_a_sort() {
    use schema::messages::dsl as m;
    let db = TestDb::new().await;
    // Could an index deliver this order? (A sort of no rows is cheaper.)
    let mut conn = conn_without(&db, &["seqscan", "bitmapscan", "sort"]).await;
    // The order of every message page: (timestamp, id), id breaking ties.
    let query = m::messages
        .filter(m::conversation_id.eq(uuid::Uuid::nil()))
        .order((m::timestamp.desc(), m::id.desc()))
        .limit(21)
        .select(messages::Message::as_select());
    let plan = plan(&mut conn, query).await;
    assert!(
        plan.contains("Index Scan Backward using idx_messages_conversation_timestamp "),
        "the page did not use idx_messages_conversation_timestamp:\n{plan}"
    );
    assert!(!plan.contains("Sort"), "the page was sorted:\n{plan}");
}

#[test]
fn a_filter_shape_admitted_by_the_pool_is_prepared_once_and_others_are_not() {
    use cortex::db::metadata::{PreparedShapes, MAX_PREPARED_FILTER_SHAPES};
    let cacheable = |filter: &MetadataFilter| {
        let query = schema::workspaces::table
            .filter(workspaces::metadata_predicate(filter))
            .select(schema::workspaces::id);
        QueryFragment::<Pg>::is_safe_to_cache_prepared(&query, &Pg).unwrap()
    };
    let gold = MetadataFilter::containing(json!({"tier": "gold"}));
    // A filter that no pool admitted stays out of the statement cache.
    assert!(!cacheable(&gold));
    let shapes = PreparedShapes::default();
    let mut admitted = gold.clone();
    shapes.admit(&mut admitted);
    assert!(cacheable(&admitted));
    // The same shape with other values is the same statement, admitted again.
    let mut silver = MetadataFilter::containing(json!({"tier": "silver"}));
    shapes.admit(&mut silver);
    assert!(cacheable(&silver));
    assert_eq!(shapes.len(), 1);
    // Past the bound, new shapes run unprepared; the admitted ones stay prepared.
    for n in 0..MAX_PREPARED_FILTER_SHAPES + 5 {
        let mut filter = MetadataFilter {
            and: vec![gold.clone(); n + 1],
            ..MetadataFilter::default()
        };
        shapes.admit(&mut filter);
        assert_eq!(
            cacheable(&filter),
            n + 1 < MAX_PREPARED_FILTER_SHAPES,
            "{n}"
        );
    }
    assert_eq!(shapes.len(), MAX_PREPARED_FILTER_SHAPES);
    let mut again = MetadataFilter::containing(json!({"tier": "bronze"}));
    shapes.admit(&mut again);
    assert!(cacheable(&again));
}

//! The indexes answer what they are there for, shown by PostgreSQL's own `EXPLAIN` of
//! the SQL diesel builds: the metadata filter's `contains` and `hasKey` from the GIN
//! indexes across a table, never within one parent's rows; a conversation's message
//! page in order from its btree index.

mod common;

use common::{statement_meter, Api, TestDb};
use cortex::db::metadata::{MetadataFilter, PathPredicate, Within};
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
        .filter(workspaces::metadata_predicate(&filter, Within::Table))
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
        .filter(messages::metadata_predicate(&filter, Within::Table))
        .select(schema::messages::id);
    let plan = plan(&mut conn, query).await;
    assert!(
        plan.contains("Bitmap Index Scan on idx_messages_metadata_keys "),
        "hasKey did not use idx_messages_metadata_keys:\n{plan}"
    );
}

/// Every metadata test a GIN index can answer, one filter each.
fn indexable_filters() -> Vec<(&'static str, MetadataFilter)> {
    let keys = || Some(vec!["tier".to_string(), "plan".to_string()]);
    vec![
        (
            "contains",
            MetadataFilter::containing(json!({"tier": "gold"})),
        ),
        (
            "hasKey",
            MetadataFilter {
                has_key: Some("tier".into()),
                ..Default::default()
            },
        ),
        (
            "hasAnyKeys",
            MetadataFilter {
                has_any_keys: keys(),
                ..Default::default()
            },
        ),
        (
            "hasAllKeys",
            MetadataFilter {
                has_all_keys: keys(),
                ..Default::default()
            },
        ),
        (
            "path eq",
            MetadataFilter {
                path: vec![PathPredicate {
                    path: vec!["labels".into(), "team".into()],
                    eq: Some(json!("core")),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ),
    ]
}

#[tokio::test]
async fn within_a_parent_no_metadata_participant_or_sender_test_can_use_an_index() {
    use schema::conversations::dsl as c;
    let db = TestDb::new().await;
    // Everything but a GIN index forbidden: the planner takes one whenever it can.
    let mut conn = conn_without(&db, &["seqscan", "indexscan"]).await;
    for (name, filter) in indexable_filters() {
        let across = conversations::filtered(
            &conversations::ConversationFilter {
                metadata: Some(filter.clone()),
                ..Default::default()
            },
            Within::Table,
        )
        .select(c::id);
        let plan_across = plan(&mut conn, across).await;
        assert!(
            plan_across.contains("idx_conversations_metadata"),
            "{name} across the table did not use a GIN index:\n{plan_across}"
        );
        // Within a parent a GIN scan would read the whole table's matches per parent.
        let within = conversations::filtered(
            &conversations::ConversationFilter {
                metadata: Some(filter.clone()),
                ..Default::default()
            },
            Within::Parent,
        )
        .select(c::id);
        let plan_within = plan(&mut conn, within).await;
        assert!(
            !plan_within.contains("Index") && plan_within.contains("Seq Scan on conversations"),
            "{name} within a parent used an index:\n{plan_within}"
        );
        let messages_within = messages::filtered(
            &messages::MessageFilter {
                metadata: Some(filter),
                ..Default::default()
            },
            Within::Parent,
        )
        .select(schema::messages::id);
        let plan_messages = plan(&mut conn, messages_within).await;
        assert!(
            !plan_messages.contains("Index"),
            "{name} within a conversation used an index:\n{plan_messages}"
        );
    }
    let by_participant = |within| {
        conversations::filtered(
            &conversations::ConversationFilter {
                participant_id: Some("carol".into()),
                ..Default::default()
            },
            within,
        )
        .select(c::id)
    };
    let across = plan(&mut conn, by_participant(Within::Table)).await;
    assert!(
        across.contains("idx_conversations_participants"),
        "{across}"
    );
    let within = plan(&mut conn, by_participant(Within::Parent)).await;
    assert!(!within.contains("Index"), "{within}");
    let by_sender = |within| {
        messages::filtered(
            &messages::MessageFilter {
                sender_id: Some("bob".into()),
                ..Default::default()
            },
            within,
        )
        .select(schema::messages::id)
    };
    let across = plan(&mut conn, by_sender(Within::Table)).await;
    assert!(across.contains("idx_messages_sender_id"), "{across}");
    let within = plan(&mut conn, by_sender(Within::Parent)).await;
    assert!(!within.contains("Index"), "{within}");
}

/// The statements of pg_stat_statements whose text holds `needle`.
async fn statements_holding(conn: &mut AsyncPgConnection, needle: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Statement {
        #[diesel(sql_type = Text)]
        query: String,
    }
    diesel::sql_query(
        "SELECT query FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND strpos(query, $1) > 0 AND query NOT LIKE '%pg_stat_statements%'",
    )
    .bind::<Text, _>(needle)
    .load::<Statement>(conn)
    .await
    .expect("pg_stat_statements (the test cluster preloads it)")
    .into_iter()
    .map(|s| s.query)
    .collect()
}

#[tokio::test]
async fn the_api_filters_pages_per_parent_with_the_functions_and_the_callers_lists_with_the_operators(
) {
    const CREATE_WS: &str =
        "mutation($m: JSON) { createWorkspace(input: {name: \"w\", metadata: $m}) { id } }";
    const CREATE_CONV: &str = "mutation($w: ID!, $m: JSON) { createConversation(input: {workspaceId: $w, topic: \"t\", participantIds: [\"alice\"], metadata: $m}) { id } }";
    let api = Api::new().await;
    let mut meter = statement_meter(&api.db).await;
    let ws = api
        .ok("alice", CREATE_WS, json!({"m": {"tier": "gold"}}))
        .await["createWorkspace"]["id"]
        .clone();
    const SEND: &str =
        "mutation($c: ID!) { sendMessage(input: {conversationId: $c, content: \"hi\"}) { id } }";
    for tier in ["gold", "silver"] {
        let conv = api
            .ok("alice", CREATE_CONV, json!({"w": ws, "m": {"tier": tier}}))
            .await["createConversation"]["id"]
            .clone();
        api.ok("alice", SEND, json!({"c": conv})).await;
    }
    let data = api
        .ok(
            "alice",
            "{ workspaces(first: 10, filter: {metadata: {contains: {tier: \"gold\"}}}) { nodes { conversations(first: 10, filter: {metadata: {contains: {tier: \"gold\"}}}) { nodes { metadata messages(first: 5, filter: {senderId: \"alice\"}) { nodes { content } } } totalCount } } }
               participatingConversations(first: 10, filter: {metadata: {hasKey: \"tier\"}}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["workspaces"]["nodes"][0]["conversations"],
        json!({"nodes": [{"metadata": {"tier": "gold"}, "messages": {"nodes": [{"content": "hi"}]}}], "totalCount": 1})
    );
    assert_eq!(data["participatingConversations"]["totalCount"], 2);

    // The per-parent pages and count test each row with the functions, no operator.
    let per_parent = statements_holding(&mut meter, "LATERAL").await;
    let (messages, conversations): (Vec<_>, Vec<_>) = per_parent
        .iter()
        .partition(|s| s.contains("FROM \"messages\""));
    assert_eq!(
        (messages.len(), conversations.len()),
        (1, 2),
        "{per_parent:#?}"
    );
    for statement in conversations {
        assert!(
            statement.contains("jsonb_contains(\"conversations\".\"metadata\"")
                && !statement.contains("\"metadata\" @>"),
            "{statement}"
        );
    }
    assert!(
        messages[0].contains("texteq(\"messages\".\"sender_id\"")
            && !messages[0].contains("\"sender_id\" ="),
        "{}",
        messages[0]
    );
    // The caller's own lists keep the operators, for the planner's choice of index.
    let across = statements_holding(&mut meter, "\"metadata\" @>").await;
    assert!(
        across.iter().any(|s| s.contains("FROM \"workspaces\"")),
        "{across:#?}"
    );
    let across = statements_holding(&mut meter, "\"metadata\" ?").await;
    assert!(
        across.iter().any(|s| s.contains("\"participant_ids\" @>")),
        "{across:#?}"
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
            .filter(workspaces::metadata_predicate(filter, Within::Table))
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

//! The data layer against a real PostgreSQL: every repository operation of the seed.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::TestDb;
use cortex::db::conversations::{self, ConversationChanges, ConversationFilter, NewConversation};
use cortex::db::messages::{self, MessageChanges, MessageFilter, NewMessage, SearchWithin};
use cortex::db::metadata::{MetadataFilter, PathPredicate};
use cortex::db::users::{self, NewUser, UserChanges};
use cortex::db::workspaces::{self, NewWorkspace, WorkspaceChanges, WorkspaceFilter};
use cortex::db::PageArgs;
use cortex::error::AppError;
use diesel_async::AsyncPgConnection;
use serde_json::json;
use uuid::Uuid;

fn new_user(id: &str) -> NewUser {
    NewUser {
        user_id: id.into(),
        name: format!("User {id}"),
        email: Some(format!("{id}@example.com")),
        metadata: json!({}),
    }
}

fn new_workspace(owner: &str, name: &str) -> NewWorkspace {
    NewWorkspace {
        name: name.into(),
        description: "d".into(),
        owner_id: owner.into(),
        metadata: json!({}),
    }
}

fn new_conversation(ws: Uuid, topic: &str) -> NewConversation {
    NewConversation {
        workspace_id: ws,
        topic: topic.into(),
        participant_ids: vec!["alice".into()],
        metadata: json!({}),
    }
}

fn new_message(c: Uuid, sender: &str, content: &str, minute: i64) -> NewMessage {
    NewMessage {
        conversation_id: c,
        sender_id: sender.into(),
        content: content.into(),
        timestamp: Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap() + Duration::minutes(minute),
        metadata: json!({}),
    }
}

async fn alice(conn: &mut AsyncPgConnection) -> users::User {
    users::create(conn, &new_user("alice")).await.unwrap()
}

#[tokio::test]
async fn users_create_get_update_delete_count() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let created = alice(&mut conn).await;
    assert!(created.is_active);
    assert_eq!(created.metadata, json!({}));
    assert_eq!(
        users::get(&mut conn, created.id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        users::get_by_user_id(&mut conn, "alice").await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        users::get_by_user_id(&mut conn, "nobody").await.unwrap(),
        None
    );
    assert_eq!(users::count(&mut conn).await.unwrap(), 1);

    let changes = UserChanges {
        name: Some("Alice A.".into()),
        ..Default::default()
    };
    let updated = users::update(&mut conn, created.id, &changes)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.name, "Alice A.");
    assert_eq!(
        updated.email, created.email,
        "a partial update keeps other columns"
    );
    assert!(
        updated.updated_at > created.updated_at,
        "the trigger moves updated_at"
    );
    assert_eq!(
        users::update(&mut conn, Uuid::new_v4(), &changes)
            .await
            .unwrap(),
        None
    );

    assert!(users::delete(&mut conn, created.id).await.unwrap());
    assert!(!users::delete(&mut conn, created.id).await.unwrap());
    assert_eq!(users::count(&mut conn).await.unwrap(), 0);
}

#[tokio::test]
async fn get_or_create_inserts_once() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let first = users::get_or_create(&mut conn, &new_user("bob"))
        .await
        .unwrap();
    let again = users::get_or_create(&mut conn, &new_user("bob"))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(users::count(&mut conn).await.unwrap(), 1);
}

#[tokio::test]
async fn workspaces_list_by_owner_newest_first_with_keyset_pages() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    users::create(&mut conn, &new_user("bob")).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            workspaces::create(&mut conn, &new_workspace("alice", &format!("w{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    workspaces::create(&mut conn, &new_workspace("bob", "other"))
        .await
        .unwrap();
    let filter = WorkspaceFilter::default();

    let page1 = workspaces::list_by_owner(&mut conn, "alice", &filter, &PageArgs::first(2))
        .await
        .unwrap();
    let names: Vec<_> = page1.rows.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["w4", "w3"]);
    assert!(page1.has_next);
    assert!(!page1.has_previous);

    let last = page1.rows.last().unwrap();
    let args = PageArgs {
        after: Some((last.created_at, last.id)),
        first: Some(2),
        ..Default::default()
    };
    // A row inserted between pages does not shift the next page.
    workspaces::create(&mut conn, &new_workspace("alice", "new"))
        .await
        .unwrap();
    let page2 = workspaces::list_by_owner(&mut conn, "alice", &filter, &args)
        .await
        .unwrap();
    assert_eq!(
        page2
            .rows
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>(),
        ["w2", "w1"]
    );
    assert!(page2.has_next && page2.has_previous);

    let tail = PageArgs {
        last: Some(2),
        ..Default::default()
    };
    let page = workspaces::list_by_owner(&mut conn, "alice", &filter, &tail)
        .await
        .unwrap();
    assert_eq!(
        page.rows
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>(),
        ["w1", "w0"]
    );
    assert!(page.has_previous && !page.has_next);

    assert_eq!(
        workspaces::count_by_owner(&mut conn, "alice", &filter)
            .await
            .unwrap(),
        6
    );
    let named = WorkspaceFilter {
        name_contains: Some("W%".into()),
        ..Default::default()
    };
    assert_eq!(
        workspaces::count_by_owner(&mut conn, "alice", &named)
            .await
            .unwrap(),
        0,
        "LIKE wildcards are literal"
    );
    let named = WorkspaceFilter {
        name_contains: Some("W1".into()),
        ..Default::default()
    };
    assert_eq!(
        workspaces::count_by_owner(&mut conn, "alice", &named)
            .await
            .unwrap(),
        1,
        "case-insensitive"
    );
    let _ = ids;
}

#[tokio::test]
async fn workspace_update_get_by_and_get_with_conversations() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    let ws = workspaces::create(&mut conn, &new_workspace("alice", "Team"))
        .await
        .unwrap();
    let c1 = conversations::create(&mut conn, &new_conversation(ws.id, "one"))
        .await
        .unwrap();
    let c2 = conversations::create(&mut conn, &new_conversation(ws.id, "two"))
        .await
        .unwrap();
    let (got, convs) = workspaces::get_with_conversations(&mut conn, ws.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, ws);
    assert_eq!(
        convs.iter().map(|c| c.id).collect::<Vec<_>>(),
        [c2.id, c1.id]
    );
    assert!(
        workspaces::get_with_conversations(&mut conn, Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        workspaces::get_by_owner_and_name(&mut conn, "alice", "Team")
            .await
            .unwrap()
            .unwrap()
            .id,
        ws.id
    );

    let changes = WorkspaceChanges {
        description: Some("new".into()),
        ..Default::default()
    };
    let updated = workspaces::update(&mut conn, ws.id, &changes)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.description.as_str()),
        ("Team", "new")
    );
    assert_eq!(
        workspaces::get_many(&mut conn, &[ws.id, Uuid::new_v4()])
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn deleting_a_workspace_cascades_to_conversations_and_messages() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    let ws = workspaces::create(&mut conn, &new_workspace("alice", "Team"))
        .await
        .unwrap();
    let c = conversations::create(&mut conn, &new_conversation(ws.id, "t"))
        .await
        .unwrap();
    let m = messages::create(&mut conn, &new_message(c.id, "alice", "hello", 0))
        .await
        .unwrap();
    assert!(workspaces::delete(&mut conn, ws.id).await.unwrap());
    assert!(conversations::get(&mut conn, c.id).await.unwrap().is_none());
    assert!(messages::get(&mut conn, m.id).await.unwrap().is_none());
}

#[tokio::test]
async fn deleting_a_conversation_cascades_to_messages() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    let ws = workspaces::create(&mut conn, &new_workspace("alice", "Team"))
        .await
        .unwrap();
    let c = conversations::create(&mut conn, &new_conversation(ws.id, "t"))
        .await
        .unwrap();
    let m = messages::create(&mut conn, &new_message(c.id, "alice", "hello", 0))
        .await
        .unwrap();
    assert!(conversations::delete(&mut conn, c.id).await.unwrap());
    assert!(messages::get(&mut conn, m.id).await.unwrap().is_none());
    assert!(workspaces::get(&mut conn, ws.id).await.unwrap().is_some());
}

#[tokio::test]
async fn conversations_crud_list_count_and_filters() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    let ws = workspaces::create(&mut conn, &new_workspace("alice", "Team"))
        .await
        .unwrap();
    let mut a = new_conversation(ws.id, "Planning");
    a.participant_ids = vec!["alice".into(), "bob".into()];
    a.metadata = json!({"tier": "gold"});
    let a = conversations::create(&mut conn, &a).await.unwrap();
    let b = conversations::create(&mut conn, &new_conversation(ws.id, "Retro"))
        .await
        .unwrap();

    let all = conversations::list_by_workspace(
        &mut conn,
        ws.id,
        &ConversationFilter::default(),
        &PageArgs::first(10),
    )
    .await
    .unwrap();
    assert_eq!(
        all.rows.iter().map(|c| c.id).collect::<Vec<_>>(),
        [b.id, a.id]
    );
    let with_bob = ConversationFilter {
        participant_id: Some("bob".into()),
        ..Default::default()
    };
    assert_eq!(
        conversations::count_by_workspace(&mut conn, ws.id, &with_bob)
            .await
            .unwrap(),
        1
    );
    let topic = ConversationFilter {
        topic_contains: Some("retr".into()),
        ..Default::default()
    };
    assert_eq!(
        conversations::count_by_workspace(&mut conn, ws.id, &topic)
            .await
            .unwrap(),
        1
    );
    let gold = conversations::find_by_metadata(
        &mut conn,
        ws.id,
        &MetadataFilter::containing(json!({"tier": "gold"})),
    )
    .await
    .unwrap();
    assert_eq!(gold.iter().map(|c| c.id).collect::<Vec<_>>(), [a.id]);

    let changes = ConversationChanges {
        topic: Some("Plans".into()),
        ..Default::default()
    };
    let updated = conversations::update(&mut conn, a.id, &changes)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.topic, "Plans");
    assert_eq!(updated.participant_ids, ["alice", "bob"]);
    assert_eq!(
        conversations::get_many(&mut conn, &[a.id, b.id])
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn messages_list_latest_count_by_sender_update_delete() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    users::create(&mut conn, &new_user("bob")).await.unwrap();
    let ws = workspaces::create(&mut conn, &new_workspace("alice", "Team"))
        .await
        .unwrap();
    let c = conversations::create(&mut conn, &new_conversation(ws.id, "t"))
        .await
        .unwrap();
    for i in 0..5 {
        let sender = if i % 2 == 0 { "alice" } else { "bob" };
        messages::create(&mut conn, &new_message(c.id, sender, &format!("m{i}"), i))
            .await
            .unwrap();
    }
    let latest = messages::latest(&mut conn, c.id, 3).await.unwrap();
    assert_eq!(
        latest
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["m2", "m3", "m4"],
        "newest 3, oldest first"
    );
    let counts = messages::count_by_sender(&mut conn, c.id).await.unwrap();
    assert_eq!(counts, [("alice".to_string(), 3), ("bob".to_string(), 2)]);

    let page = messages::list_by_conversation(
        &mut conn,
        c.id,
        &MessageFilter::default(),
        &PageArgs::first(2),
    )
    .await
    .unwrap();
    assert_eq!(
        page.rows
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["m0", "m1"]
    );
    assert!(page.has_next);
    let last2 = PageArgs {
        last: Some(2),
        ..Default::default()
    };
    let page = messages::list_by_conversation(&mut conn, c.id, &MessageFilter::default(), &last2)
        .await
        .unwrap();
    assert_eq!(
        page.rows
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["m3", "m4"]
    );
    let by_bob = MessageFilter {
        sender_id: Some("bob".into()),
        ..Default::default()
    };
    assert_eq!(
        messages::count_by_conversation(&mut conn, c.id, &by_bob)
            .await
            .unwrap(),
        2
    );
    let window = MessageFilter {
        since: Some(Utc.with_ymd_and_hms(2026, 1, 1, 12, 1, 0).unwrap()),
        until: Some(Utc.with_ymd_and_hms(2026, 1, 1, 12, 3, 0).unwrap()),
        ..Default::default()
    };
    assert_eq!(
        messages::count_by_conversation(&mut conn, c.id, &window)
            .await
            .unwrap(),
        2
    );

    let m = &latest[0];
    let changes = MessageChanges {
        content: Some("edited".into()),
        ..Default::default()
    };
    assert_eq!(
        messages::update(&mut conn, m.id, &changes)
            .await
            .unwrap()
            .unwrap()
            .content,
        "edited"
    );
    assert!(messages::delete(&mut conn, m.id).await.unwrap());
    assert!(messages::get(&mut conn, m.id).await.unwrap().is_none());
}

#[tokio::test]
async fn full_text_search_ranks_and_finds_only_what_the_predicate_allows() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    users::create(&mut conn, &new_user("bob")).await.unwrap();
    let ws = workspaces::create(&mut conn, &new_workspace("alice", "Team"))
        .await
        .unwrap();
    let c = conversations::create(&mut conn, &new_conversation(ws.id, "t"))
        .await
        .unwrap();
    messages::create(
        &mut conn,
        &new_message(c.id, "alice", "the database migration is done", 0),
    )
    .await
    .unwrap();
    messages::create(
        &mut conn,
        &new_message(
            c.id,
            "alice",
            "migration migration: databases everywhere",
            1,
        ),
    )
    .await
    .unwrap();
    messages::create(&mut conn, &new_message(c.id, "alice", "lunch?", 2))
        .await
        .unwrap();
    let bob_ws = workspaces::create(&mut conn, &new_workspace("bob", "Bob's"))
        .await
        .unwrap();
    let bc = conversations::create(&mut conn, &new_conversation(bob_ws.id, "t"))
        .await
        .unwrap();
    messages::create(
        &mut conn,
        &new_message(bc.id, "bob", "secret migration plans", 0),
    )
    .await
    .unwrap();

    // What the scope module passes for alice, reduced to ownership.
    let alices = |conversation_id: Option<Uuid>| {
        use cortex::db::schema::workspaces as w;
        use diesel::prelude::*;
        SearchWithin {
            readable: Box::new(w::owner_id.eq("alice")),
            workspace_id: None,
            conversation_id,
        }
    };
    let hits = messages::search(&mut conn, "migration", alices(None), None, 10)
        .await
        .unwrap();
    assert_eq!(hits.len(), 2, "bob's message is not alice's to find");
    assert!(hits[0].rank >= hits[1].rank);
    assert!(hits[0].message.content.starts_with("migration migration"));
    assert!(hits[0].headline.contains("<b>"));
    let phrase = messages::search(&mut conn, "\"database migration\"", alices(None), None, 10)
        .await
        .unwrap();
    assert_eq!(phrase.len(), 1);
    let none = messages::search(&mut conn, "-migration lunch", alices(None), None, 10)
        .await
        .unwrap();
    assert_eq!(none.len(), 1);
    assert!(
        messages::search(&mut conn, "migration", alices(Some(bc.id)), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn find_by_metadata_uses_bound_jsonb_operators() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    let mut gold = new_workspace("alice", "gold");
    gold.metadata =
        json!({"tier": "gold", "priority": 10, "labels": {"team": "core"}, "tags": ["a", "b"]});
    let gold = workspaces::create(&mut conn, &gold).await.unwrap();
    let mut silver = new_workspace("alice", "silver");
    silver.metadata = json!({"tier": "silver", "priority": "9", "labels": {"team": "web"}});
    let silver = workspaces::create(&mut conn, &silver).await.unwrap();
    // A hostile key and value are just data.
    let mut odd = new_workspace("alice", "odd");
    odd.metadata = json!({"x'); DROP TABLE users; --": "1"});
    let odd = workspaces::create(&mut conn, &odd).await.unwrap();

    let db = &db;
    let find = |f: MetadataFilter| async move {
        let rows = workspaces::find_by_metadata(&mut db.conn().await, "alice", &f)
            .await
            .unwrap();
        rows.into_iter().map(|w| w.name).collect::<Vec<_>>()
    };
    assert_eq!(
        find(MetadataFilter::containing(json!({"tier": "gold"}))).await,
        ["gold"]
    );
    assert_eq!(
        find(MetadataFilter {
            has_key: Some("labels".into()),
            ..Default::default()
        })
        .await,
        ["silver", "gold"]
    );
    assert_eq!(
        find(MetadataFilter {
            has_key: Some("x'); DROP TABLE users; --".into()),
            ..Default::default()
        })
        .await,
        ["odd"]
    );
    let path = |p: PathPredicate| MetadataFilter {
        path: vec![p],
        ..Default::default()
    };
    let team = vec!["labels".to_string(), "team".to_string()];
    assert_eq!(
        find(path(PathPredicate {
            path: team.clone(),
            eq: Some(json!("web")),
            ..Default::default()
        }))
        .await,
        ["silver"]
    );
    // Numbers compare as numbers: "9" (a string) is not greater than 5.
    let prio = vec!["priority".to_string()];
    assert_eq!(
        find(path(PathPredicate {
            path: prio.clone(),
            gt: Some(json!(5)),
            ..Default::default()
        }))
        .await,
        ["gold"]
    );
    assert_eq!(
        find(path(PathPredicate {
            path: prio.clone(),
            gt: Some(json!("5")),
            ..Default::default()
        }))
        .await,
        ["silver"]
    );
    assert_eq!(
        find(path(PathPredicate {
            path: prio.clone(),
            exists: Some(false),
            ..Default::default()
        }))
        .await,
        ["odd"]
    );
    assert_eq!(
        find(MetadataFilter {
            not: Some(Box::new(MetadataFilter::containing(
                json!({"tier": "gold"})
            ))),
            ..Default::default()
        })
        .await,
        ["odd", "silver"]
    );
    let _ = (gold, silver, odd);
    assert_eq!(users::count(&mut conn).await.unwrap(), 1);
}

#[tokio::test]
async fn create_workspace_with_conversation_writes_both() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    let (ws, c) = workspaces::create_workspace_with_conversation(
        &mut conn,
        new_workspace("alice", "Both"),
        new_conversation(Uuid::nil(), "first"),
    )
    .await
    .unwrap();
    assert_eq!(c.workspace_id, ws.id);
    assert!(conversations::get(&mut conn, c.id).await.unwrap().is_some());
}

#[tokio::test]
async fn create_workspace_with_conversation_rolls_back_when_the_second_write_fails() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    let too_long = new_conversation(Uuid::nil(), &"x".repeat(201));
    let err = workspaces::create_workspace_with_conversation(
        &mut conn,
        new_workspace("alice", "Half"),
        too_long,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("too long"), "{err}");
    assert_eq!(
        workspaces::count_by_owner(&mut conn, "alice", &WorkspaceFilter::default())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn database_errors_map_to_api_codes_without_sql() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    alice(&mut conn).await;
    let dup = users::create(&mut conn, &new_user("alice"))
        .await
        .unwrap_err();
    let e = AppError::from(dup);
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        ("CONFLICT", "a record with this data already exists")
    );

    let orphan = workspaces::create(&mut conn, &new_workspace("ghost", "x"))
        .await
        .unwrap_err();
    let e = AppError::from(orphan);
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        ("CONFLICT", "referenced record does not exist")
    );

    use diesel_async::RunQueryDsl;
    diesel::sql_query("SET statement_timeout = '10ms'")
        .execute(&mut conn)
        .await
        .unwrap();
    let slow = diesel::sql_query("SELECT pg_sleep(1)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(AppError::from(slow).code(), "TIMEOUT");

    let broken = diesel::sql_query("SELEC nonsense")
        .execute(&mut conn)
        .await
        .unwrap_err();
    let e = AppError::from(broken);
    assert_eq!(e.code(), "INTERNAL");
    assert!(!e.to_string().contains("SELEC"));
}

#[tokio::test]
async fn a_pool_that_cannot_connect_reports_unavailable() {
    let config = common::test_pool_config();
    let config = cortex::config::PoolConfig {
        timeout: std::time::Duration::from_secs(1),
        ..config
    };
    let db = cortex::db::Database::connect(
        "postgresql://nobody@localhost/none?host=/nonexistent",
        &config,
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = db.check().await.unwrap_err();
    assert_eq!(err.code(), "UNAVAILABLE");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

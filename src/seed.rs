//! The demo data the embedded default starts with, so a newcomer can run a query at once.

use chrono::{Duration, Utc};
use serde_json::json;

use crate::db::conversations::{self, NewConversation};
use crate::db::messages::{self, NewMessage};
use crate::db::users::{self, NewUser};
use crate::db::workspaces::{self, NewWorkspace, WorkspaceFilter};
use crate::db::Database;
use crate::error::AppResult;

/// The demo user's `user_id`.
pub const DEMO_USER: &str = "demo";

/// Creates the demo user and, when they have no workspaces yet, a few workspaces,
/// conversations and messages. Idempotent.
pub async fn seed_demo(db: &Database) -> AppResult<()> {
    db.run(None, async |conn| seed(conn).await).await
}

async fn seed(conn: &mut diesel_async::AsyncPgConnection) -> AppResult<()> {
    let demo = NewUser {
        user_id: DEMO_USER.into(),
        name: "Demo User".into(),
        email: Some("demo@cortex.local".into()),
        metadata: json!({"role": "demo"}),
    };
    users::get_or_create(conn, &demo).await?;
    for (id, name) in [("ada", "Ada Lovelace"), ("linus", "Linus Torvalds")] {
        let user = NewUser {
            user_id: id.into(),
            name: name.into(),
            email: None,
            metadata: json!({}),
        };
        users::get_or_create(conn, &user).await?;
    }
    if workspaces::count_by_owner(conn, DEMO_USER, &WorkspaceFilter::default()).await? > 0 {
        return Ok(());
    }
    let start = Utc::now() - Duration::days(1);
    let plan = [
        (
            "Product",
            json!({"tier": "gold", "priority": 1, "labels": {"team": "core"}, "tags": ["roadmap"]}),
            ["Roadmap 2027", "Launch checklist"],
        ),
        (
            "Engineering",
            json!({"tier": "silver", "priority": 2, "labels": {"team": "platform"}, "tags": ["infra"]}),
            ["Database migration", "On-call handover"],
        ),
        (
            "Research",
            json!({"tier": "bronze", "priority": 3, "labels": {"team": "lab"}}),
            ["Reading group", "Experiments"],
        ),
    ];
    let lines = [
        (
            "demo",
            "Welcome! This conversation was seeded so you can try Cortex right away.",
        ),
        (
            "ada",
            "The PostgreSQL migration is done; full-text search works on every message.",
        ),
        (
            "linus",
            "Metadata filters can compare nested values, numbers as numbers.",
        ),
        (
            "demo",
            "Try searchMessages with \"postgresql migration\" in GraphiQL.",
        ),
    ];
    for (w, (name, metadata, topics)) in plan.into_iter().enumerate() {
        let ws = workspaces::create(
            conn,
            &NewWorkspace {
                name: name.into(),
                description: format!("The {name} workspace"),
                owner_id: DEMO_USER.into(),
                metadata,
            },
        )
        .await?;
        for (c, topic) in topics.into_iter().enumerate() {
            let conversation = conversations::create(
                conn,
                &NewConversation {
                    workspace_id: ws.id,
                    topic: topic.into(),
                    participant_ids: vec![DEMO_USER.into(), "ada".into(), "linus".into()],
                    metadata: json!({"pinned": c == 0}),
                },
            )
            .await?;
            for (i, (sender, content)) in lines.iter().enumerate() {
                let minutes = (w * 100 + c * 10 + i) as i64;
                messages::create(
                    conn,
                    &NewMessage {
                        conversation_id: conversation.id,
                        sender_id: (*sender).into(),
                        content: (*content).into(),
                        timestamp: start + Duration::minutes(minutes),
                        metadata: json!({"seq": i}),
                    },
                )
                .await?;
            }
        }
    }
    Ok(())
}

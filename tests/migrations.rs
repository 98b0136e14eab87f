//! Migrations run up, down and up again, leaving the same schema; `src/db/schema.rs`
//! matches the migrated database.

mod common;

use common::TestDb;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// Tables, columns, indexes, constraints, triggers and functions of `public`, one
/// sorted line each.
async fn catalog(url: &str) -> Vec<String> {
    let mut conn = cortex::db::connect_once(url).await.unwrap();
    let rows: Vec<Line> = diesel::sql_query(
        "SELECT line FROM (
            SELECT format('column %s.%s %s null=%s default=%s gen=%s', table_name, column_name, data_type,
                          is_nullable, column_default, generation_expression) AS line
              FROM information_schema.columns WHERE table_schema = 'public'
            UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL SELECT format('constraint %s %s', conrelid::regclass, pg_get_constraintdef(oid))
              FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            UNION ALL SELECT format('trigger %s on %s', tgname, tgrelid::regclass)
              FROM pg_trigger WHERE NOT tgisinternal
            UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
         ) catalog WHERE line NOT LIKE '%__diesel_schema_migrations%' ORDER BY line",
    )
    .load(&mut conn)
    .await
    .unwrap();
    rows.into_iter().map(|r| r.line).collect()
}

#[tokio::test]
async fn processes_that_migrate_at_once_take_turns() {
    let db = TestDb::empty().await;
    // Four `cortex migrate` at the same moment on an empty database.
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let mut command = common::cortex_command(&[("DATABASE_URL", db.url.as_str())]);
            command
                .arg("migrate")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    for racer in racers {
        let out = racer.wait_with_output().unwrap();
        common::stdout_of_success(&out);
    }
    #[derive(diesel::QueryableByName)]
    struct Applied {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        versions: i64,
    }
    let mut conn = cortex::db::connect_once(&db.url).await.unwrap();
    let applied: Applied = diesel::sql_query(
        "SELECT count(*) AS rows, count(DISTINCT version) AS versions FROM __diesel_schema_migrations",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(applied.rows, common::migration_count() as i64);
    assert_eq!(
        applied.versions, applied.rows,
        "each migration applied once"
    );
}

#[tokio::test]
async fn migrations_run_up_down_and_up_again_to_the_same_schema() {
    let db = TestDb::empty().await;
    let applied = cortex::db::migrations::run_pending(&db.url).await.unwrap();
    assert_eq!(applied.len(), common::migration_count());
    let first = catalog(&db.url).await;
    assert!(
        first
            .iter()
            .any(|l| l.contains("USING gin (metadata jsonb_path_ops)")),
        "{first:#?}"
    );
    assert!(first.iter().any(|l| l.contains("idx_messages_tsv")));
    assert!(first.iter().any(|l| l.contains("ON DELETE CASCADE")));
    assert!(first.iter().any(|l| l.contains("import_id_map")));
    assert!(
        first.iter().any(|l| l.contains(
            "idx_messages_conversation_timestamp ON public.messages USING btree (conversation_id, \"timestamp\", id)"
        )),
        "message pages are ordered by (timestamp, id): {first:#?}"
    );

    let reverted = cortex::db::migrations::revert_all(&db.url).await.unwrap();
    assert_eq!(reverted.len(), common::migration_count());
    assert!(
        catalog(&db.url).await.is_empty(),
        "down really reverts everything"
    );

    cortex::db::migrations::run_pending(&db.url).await.unwrap();
    assert_eq!(catalog(&db.url).await, first);
    assert!(
        cortex::db::migrations::run_pending(&db.url)
            .await
            .unwrap()
            .is_empty(),
        "nothing left to apply"
    );
}

#[tokio::test]
async fn schema_rs_matches_the_migrated_columns() {
    use cortex::db::schema::*;
    use diesel::Column;
    let expected: Vec<(&str, Vec<&str>)> = vec![
        (
            "conversations",
            vec![
                conversations::id::NAME,
                conversations::workspace_id::NAME,
                conversations::topic::NAME,
                conversations::participant_ids::NAME,
                conversations::metadata::NAME,
                conversations::created_at::NAME,
                conversations::updated_at::NAME,
            ],
        ),
        (
            "messages",
            vec![
                messages::id::NAME,
                messages::conversation_id::NAME,
                messages::sender_id::NAME,
                messages::content::NAME,
                messages::timestamp::NAME,
                messages::metadata::NAME,
                messages::created_at::NAME,
                messages::updated_at::NAME,
                messages::tsv::NAME,
            ],
        ),
        (
            "users",
            vec![
                users::id::NAME,
                users::user_id::NAME,
                users::name::NAME,
                users::email::NAME,
                users::is_active::NAME,
                users::metadata::NAME,
                users::created_at::NAME,
                users::updated_at::NAME,
            ],
        ),
        (
            "workspaces",
            vec![
                workspaces::id::NAME,
                workspaces::name::NAME,
                workspaces::description::NAME,
                workspaces::owner_id::NAME,
                workspaces::metadata::NAME,
                workspaces::created_at::NAME,
                workspaces::updated_at::NAME,
            ],
        ),
    ];
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    for (table, columns) in expected {
        let rows: Vec<Line> = diesel::sql_query(
            "SELECT column_name::text AS line FROM information_schema.columns
              WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind::<Text, _>(table)
        .load(&mut conn)
        .await
        .unwrap();
        let actual: Vec<String> = rows.into_iter().map(|r| r.line).collect();
        assert_eq!(
            actual, columns,
            "src/db/schema.rs is out of date for {table}: run `diesel print-schema`"
        );
    }
}

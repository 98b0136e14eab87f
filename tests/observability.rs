//! What operators see: statements slower than `DB_SLOW_MS` are logged with their
//! duration (and without their bound values), and fast ones are not.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use diesel_async::RunQueryDsl;

/// A log writer the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn statements_slower_than_db_slow_ms_are_logged_with_their_duration() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let db = common::TestDb::new().await;
    let config = cortex::config::PoolConfig {
        slow: Some(std::time::Duration::from_millis(100)),
        ..common::test_pool_config()
    };
    let pool = cortex::db::Database::connect(&db.url, &config)
        .await
        .unwrap();
    let mut conn = pool.conn(None).await.unwrap();
    diesel::sql_query("SELECT 42")
        .execute(&mut *conn)
        .await
        .unwrap();
    diesel::sql_query("SELECT pg_sleep($1), $2")
        .bind::<diesel::sql_types::Double, _>(0.2)
        .bind::<diesel::sql_types::Text, _>("private user text")
        .execute(&mut *conn)
        .await
        .unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let slow: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("slow statement"))
        .collect();
    assert_eq!(slow.len(), 1, "{log}");
    assert!(slow[0].contains("pg_sleep"), "{log}");
    assert!(slow[0].contains("duration_ms="), "{log}");
    assert!(
        !log.contains("private user text"),
        "bound values are not logged: {log}"
    );
    let ms: f64 = slow[0]
        .split("duration_ms=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a duration");
    assert!((200.0..5_000.0).contains(&ms), "{ms} ms for a 200 ms sleep");
}

//! Schema migrations, embedded in the binary and run through diesel-async's
//! `AsyncConnectionWrapper` (diesel's migration harness is synchronous).
//!
//! Every run holds a PostgreSQL advisory lock ([`MIGRATION_LOCK`]) for its whole
//! length: instances that start at once (several `cortex serve` behind a load
//! balancer, a `cortex migrate` beside them) migrate one after the other, and the
//! later ones find nothing left to do.

use anyhow::{anyhow, Context, Result};
use diesel::migration::MigrationVersion;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// The migrations under `migrations/`, compiled in.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock key migrations hold: "cortex" in ASCII.
pub const MIGRATION_LOCK: i64 = 0x636f_7274_6578;

type SyncConnection = AsyncConnectionWrapper<AsyncPgConnection>;

async fn with_harness<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut SyncConnection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let conn = crate::db::connect_once(url)
        .await
        .context("cannot connect to the database to migrate it")?;
    // The wrapper blocks on the runtime, so it runs on a blocking thread.
    tokio::task::spawn_blocking(move || {
        use diesel::RunQueryDsl;
        let mut wrapper = SyncConnection::from(conn);
        // Session-level: held across the migrations' own transactions, and
        // released by the server if this process dies.
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
            .execute(&mut wrapper)
            .context("cannot take the migration lock")?;
        let result = work(&mut wrapper);
        diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
            .execute(&mut wrapper)
            .context("cannot release the migration lock")?;
        result
    })
    .await
    .context("the migration task panicked")?
}

/// Applies every pending migration; returns the versions applied.
pub async fn run_pending(url: &str) -> Result<Vec<String>> {
    with_harness(url, |conn| {
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow!("migration failed: {e}"))?;
        Ok(applied.iter().map(MigrationVersion::to_string).collect())
    })
    .await
}

/// Reverts every applied migration (used by `cortex migrate --down` and the tests).
pub async fn revert_all(url: &str) -> Result<Vec<String>> {
    with_harness(url, |conn| {
        let reverted = conn
            .revert_all_migrations(MIGRATIONS)
            .map_err(|e| anyhow!("reverting migrations failed: {e}"))?;
        Ok(reverted.iter().map(MigrationVersion::to_string).collect())
    })
    .await
}

//! Schema migrations, embedded in the binary and run through diesel-async's
//! `AsyncConnectionWrapper` (diesel's migration harness is synchronous).

use anyhow::{anyhow, Context, Result};
use diesel::migration::MigrationVersion;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// The migrations under `migrations/`, compiled in.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

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
        let mut wrapper = SyncConnection::from(conn);
        work(&mut wrapper)
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

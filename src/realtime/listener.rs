//! The instance's `LISTEN` connection for events (with read replicas,
//! [`crate::db::replicas`] keeps another for writes): it wakes on `cortex_events`, reads
//! the new events by cursor and hands them to the [`Hub`]. A lost connection
//! (PostgreSQL restarted, network) is made again, and the events written
//! meanwhile are read from the table: nothing is lost while it is away.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::db::events::{self, EventKind};
use crate::realtime::Hub;

/// The channel the triggers notify.
pub const CHANNEL: &str = "cortex_events";
/// Events read per statement.
const READ_BATCH: i64 = 1_000;
/// A read even without a notification (belt and braces: a notification can only
/// be missed while disconnected, and a reconnect reads anyway).
const IDLE_READ: Duration = Duration::from_secs(5);
/// The first wait before reading events held back by a running transaction (it
/// doubles while they stay held back).
const HELD_BACK_FIRST: Duration = Duration::from_millis(2);
/// The longest wait for held-back events.
const HELD_BACK_MAX: Duration = Duration::from_millis(200);
/// The longest a read may take before the connection is given up as dead.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the oldest events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What the listener needs.
pub struct ListenerOptions {
    /// The database URL (the listener connects outside the pool).
    pub url: String,
    /// How long events are kept for resuming subscriptions.
    pub retention: Duration,
}

/// Starts `state`'s listener on `url` (the database `state` serves), until `stop`.
pub fn spawn(
    state: &crate::AppState,
    url: &str,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(
        state.realtime.hub.clone(),
        state.auth.clone(),
        ListenerOptions {
            url: url.to_string(),
            retention: state.config.subscriptions.retention,
        },
        stop,
    ))
}

/// Runs until `stop`: connects, listens, reads, fans out; reconnects on failure.
pub async fn run(hub: Hub, auth: Authenticator, options: ListenerOptions, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut started = false;
    loop {
        let session = async {
            let mut conn = crate::db::connect_once(&options.url)
                .await
                .map_err(|e| e.to_string())?;
            diesel::sql_query(format!("LISTEN {CHANNEL}"))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            if !started {
                // Subscriptions made from now on start after the newest event.
                hub.start_at(events::latest(&mut conn).await.map_err(|e| e.to_string())?);
                started = true;
            }
            hub.set_connected(true);
            // Connected again: the next loss starts its waits short.
            backoff = Duration::from_millis(100);
            tracing::info!(target: "cortex::realtime", "listening for events");
            serve(&hub, &auth, &mut conn, &options, &stop).await
        };
        let outcome = tokio::select! {
            outcome = session => outcome,
            () = stop.cancelled() => Ok(()),
        };
        hub.set_connected(false);
        match outcome {
            Ok(()) if stop.is_cancelled() => return,
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(target: "cortex::realtime", "event listener lost its connection, reconnecting: {e}");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: read, wait for a wake-up, read again.
async fn serve(
    hub: &Hub,
    auth: &Authenticator,
    conn: &mut AsyncPgConnection,
    options: &ListenerOptions,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut last_prune = None::<tokio::time::Instant>;
    let mut held_back_wait = HELD_BACK_FIRST;
    loop {
        // A connection that stops answering (a network cut) is replaced.
        let held_back = tokio::time::timeout(READ_TIMEOUT, read_all(hub, auth, conn))
            .await
            .map_err(|_| "reading events timed out".to_string())??;
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            let pruned = tokio::time::timeout(READ_TIMEOUT, events::prune(conn, options.retention))
                .await
                .map_err(|_| "pruning events timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if pruned > 0 {
                tracing::debug!(target: "cortex::realtime", pruned, "pruned events");
            }
        }
        let wait = if held_back {
            let wait = held_back_wait;
            held_back_wait = (held_back_wait * 2).min(HELD_BACK_MAX);
            wait
        } else {
            held_back_wait = HELD_BACK_FIRST;
            IDLE_READ
        };
        let mut notifications = std::pin::pin!(conn.notifications_stream());
        tokio::select! {
            note = notifications.next() => match note {
                Some(Ok(_)) => {
                    // One read answers every notification already here.
                    while let Some(Some(more)) = notifications.next().now_or_never() {
                        more.map_err(|e| e.to_string())?;
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the connection closed".into()),
            },
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return Ok(()),
        }
    }
}

/// Reads and hands out every final event after the hub's position; whether
/// newer ones wait on a running transaction.
async fn read_all(
    hub: &Hub,
    auth: &Authenticator,
    conn: &mut AsyncPgConnection,
) -> Result<bool, String> {
    loop {
        let batch = events::read_after(conn, hub.position(), READ_BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let full = batch.events.len() as i64 == READ_BATCH;
        let last = batch.events.last().map(events::EventRow::cursor);
        let typed: Vec<_> = batch
            .events
            .into_iter()
            .filter_map(events::EventRow::typed)
            .map(Arc::new)
            .collect();
        metrics::counter!(crate::metrics::EVENTS_READ).increment(typed.len() as u64);
        for event in &typed {
            if event.kind == EventKind::UserDeactivated {
                if let Some(user) = &event.user_id {
                    // This instance's caller cache forgets them at once.
                    auth.forget(user);
                }
            }
        }
        hub.publish(&typed);
        if let Some(last) = last {
            // Past kinds this build does not know, too.
            hub.start_at(last);
        }
        if !full {
            return Ok(batch.held_back);
        }
    }
}

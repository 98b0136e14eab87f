//! Read replicas (`DATABASE_REPLICA_URLS`): which database a read may use.
//!
//! A probe reads, every [`PROBE_INTERVAL`], the primary's WAL position and each
//! replica's replayed position. A replica serves reads while its last probe
//! succeeded and it is at most `REPLICA_MAX_LAG` behind: the lag is how long ago
//! the primary last stood where the replica now stands (an idle primary makes no
//! lag, unlike `pg_last_xact_replay_timestamp`).
//!
//! Read-your-writes: a write answers with the primary's position after it
//! ([`LSN_HEADER`] and the [`LSN_COOKIE`]); a read that carries one goes to a
//! replica that has replayed that far, else to the primary. For clients that
//! return neither, each instance remembers each caller's last write: its own, and
//! the other instances', which they announce on [`WRITES_CHANNEL`] in the
//! statement that reads the position (sent at its commit, before the writer's
//! answer leaves). An instance hears them on a connection of their own
//! ([`Replicas::hear_writes_forever`]), and before a read goes to a replica it
//! makes one round trip on it (shared by the reads waiting then): PostgreSQL
//! sends a listener the notifications committed before a query ahead of that
//! query's answer, so every write acknowledged before the read arrived has been
//! heard. While it cannot hear them, every read goes to the primary.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Bool, Nullable, Text};
use diesel::QueryableByName;
use tokio_util::sync::CancellationToken;

use crate::config::{PoolConfig, ReplicaConfig};
use crate::db::Database;
use crate::error::AppError;

/// How often the primary and each replica are probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// A probe that takes longer fails: a replica that slow (or unreachable without
/// a refusal) does not serve, and does not hold up the others' probes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The response header with the primary's position after a write.
pub const LSN_HEADER: &str = "cortex-lsn";
/// The cookie with the same position, which browsers return by themselves.
pub const LSN_COOKIE: &str = "cortex_lsn";
/// The `NOTIFY` channel of writes: `<lsn> <user_id>`.
pub const WRITES_CHANNEL: &str = "cortex_writes";
/// How often the connection that hears writes is checked.
const HEARING_CHECK: Duration = Duration::from_secs(5);

/// A position in the primary's write-ahead log (`pg_lsn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = ();

    /// PostgreSQL's text form: two hexadecimal halves, `16/B374D848`.
    fn from_str(text: &str) -> Result<Self, ()> {
        let (high, low) = text.trim().split_once('/').ok_or(())?;
        let valid = |half: &str| {
            (1..=8).contains(&half.len()) && half.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if !valid(high) || !valid(low) {
            return Err(());
        }
        let high = u32::from_str_radix(high, 16).map_err(|_| ())?;
        let low = u32::from_str_radix(low, 16).map_err(|_| ())?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Where one replica stands, as its last probe saw it.
struct Replica {
    /// The URL without its password, for logs.
    name: String,
    db: Database,
    /// Replayed position; 0 while the replica may not serve (down, lagging,
    /// not a standby).
    serving_from: AtomicU64,
}

/// The replicas of one instance and what it knows of them.
#[derive(Clone)]
pub struct Replicas {
    inner: Arc<Inner>,
}

struct Inner {
    replicas: Vec<Replica>,
    /// Whether this instance hears the others' writes (their announcements).
    hearing: AtomicBool,
    /// Reads waiting for the announcements committed before they arrived.
    barrier: tokio::sync::mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>,
    /// Its other end, taken by [`Replicas::hear_writes_forever`].
    barrier_waiters: Mutex<Option<Waiters>>,
    max_lag: Duration,
    next: AtomicUsize,
    /// Each caller's last write (through this instance or announced by another),
    /// until every serving replica has replayed it (or it is older than any
    /// serving replica's lag).
    writes: Mutex<HashMap<String, (Lsn, Instant)>>,
}

/// Reads waiting for the announcements committed before they arrived.
type Waiters = tokio::sync::mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<()>>;

/// Where a read goes.
pub enum ReadTarget<'a> {
    /// A replica that has replayed what the caller needs.
    Replica(&'a Database, usize),
    /// The primary: no replica qualifies.
    Primary,
}

impl Replicas {
    /// Pools over the configured replicas (connected lazily), none serving until
    /// [`Replicas::probe_forever`] has seen them.
    pub async fn connect(config: &ReplicaConfig, pool: &PoolConfig) -> anyhow::Result<Self> {
        let mut replicas = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            replicas.push(Replica {
                name: url.to_string(),
                db: Database::connect(url.expose(), pool).await?,
                serving_from: AtomicU64::new(0),
            });
        }
        let (barrier, waiters) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            inner: Arc::new(Inner {
                replicas,
                hearing: AtomicBool::new(false),
                barrier,
                barrier_waiters: Mutex::new(Some(waiters)),
                max_lag: config.max_lag,
                next: AtomicUsize::new(0),
                writes: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A replica that has replayed at least `needed` and the caller's last write
    /// (announced by any instance before this read arrived), taken in turn; else
    /// the primary.
    pub async fn for_read(&self, caller: Option<&str>, needed: Option<Lsn>) -> ReadTarget<'_> {
        if self.serving() == 0 || !self.inner.hearing.load(Ordering::Relaxed) {
            return ReadTarget::Primary;
        }
        // Every announcement committed before now, heard.
        let (heard, waiting) = tokio::sync::oneshot::channel();
        if self.inner.barrier.send(heard).is_err()
            || !matches!(
                tokio::time::timeout(PROBE_TIMEOUT, waiting).await,
                Ok(Ok(()))
            )
        {
            return ReadTarget::Primary;
        }
        self.route(caller, needed)
    }

    /// [`Replicas::for_read`] with what this instance has heard so far.
    fn route(&self, caller: Option<&str>, needed: Option<Lsn>) -> ReadTarget<'_> {
        // Deaf to the other instances' writes, this one cannot keep their
        // writers' reads consistent.
        if !self.inner.hearing.load(Ordering::Relaxed) {
            return ReadTarget::Primary;
        }
        let remembered = caller.and_then(|caller| {
            let writes = self.inner.writes.lock().expect("writes lock");
            writes.get(caller).map(|(lsn, _)| *lsn)
        });
        let needed = needed.max(remembered).unwrap_or_default().0.max(1);
        let replicas = &self.inner.replicas;
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        (0..replicas.len())
            .map(|i| (start + i) % replicas.len())
            .find(|&i| replicas[i].serving_from.load(Ordering::Relaxed) >= needed)
            .map_or(ReadTarget::Primary, |i| {
                ReadTarget::Replica(&replicas[i].db, i)
            })
    }

    /// Takes replica `index` out of service until its next good probe (a read on
    /// it failed).
    pub fn failed(&self, index: usize) {
        if let Some(replica) = self.inner.replicas.get(index) {
            if replica.serving_from.swap(0, Ordering::Relaxed) != 0 {
                tracing::warn!(replica = %replica.name, "replica read failed; reading from the primary until it answers again");
            }
        }
    }

    /// Remembers that `caller` wrote, up to `lsn`.
    pub fn wrote(&self, caller: &str, lsn: Lsn) {
        let mut writes = self.inner.writes.lock().expect("writes lock");
        let now = Instant::now();
        let entry = writes.entry(caller.to_string()).or_insert((lsn, now));
        *entry = (entry.0.max(lsn), now);
    }

    /// Notes a write another instance announced (`<lsn> <user_id>`); anything
    /// else is ignored.
    pub fn announced(&self, payload: &str) {
        if let Some((lsn, user)) = payload.split_once(' ') {
            if let Ok(lsn) = lsn.parse() {
                self.wrote(user, lsn);
            }
        }
    }

    /// Listens on `url` (a session connection to the primary) for the writes
    /// other instances announce, and answers the reads waiting on them, until
    /// `stop`; reconnects when the connection is lost, reading from the primary
    /// meanwhile.
    pub async fn hear_writes_forever(self, url: String, stop: CancellationToken) {
        let Some(mut waiters) = self.inner.barrier_waiters.lock().expect("waiters").take() else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = tokio::select! {
                outcome = self.hear_writes(&url, &mut waiters) => outcome,
                () = stop.cancelled() => return,
            };
            self.inner.hearing.store(false, Ordering::Relaxed);
            tracing::warn!(target: "cortex::replicas", "not hearing other instances' writes, reading from the primary: {}",
                outcome.err().unwrap_or_default());
            // Reads waiting now go to the primary (their answer is dropped).
            while waiters.try_recv().is_ok() {}
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One connection's life: notes each announcement as it arrives; for waiting
    /// reads (and every few seconds, to find a cut connection), one round trip,
    /// after which everything committed before it has been heard.
    async fn hear_writes(&self, url: &str, waiters: &mut Waiters) -> Result<(), String> {
        use diesel_async::SimpleAsyncConnection;
        use futures_util::{FutureExt, StreamExt};
        let mut conn = crate::db::connect_once(url)
            .await
            .map_err(|e| e.to_string())?;
        conn.batch_execute(&format!("LISTEN {WRITES_CHANNEL}"))
            .await
            .map_err(|e| e.to_string())?;
        self.inner.hearing.store(true, Ordering::Relaxed);
        tracing::info!(target: "cortex::replicas", "hearing other instances' writes");
        let mut round = Vec::new();
        loop {
            {
                let notes = conn.notifications_stream();
                let mut notes = std::pin::pin!(notes);
                let check = tokio::time::sleep(HEARING_CHECK);
                let mut check = std::pin::pin!(check);
                loop {
                    tokio::select! {
                        note = notes.next() => match note {
                            Some(Ok(note)) => self.announced(&note.payload),
                            Some(Err(e)) => return Err(e.to_string()),
                            None => return Err("the connection closed".into()),
                        },
                        waiter = waiters.recv() => {
                            round.extend(waiter);
                            break;
                        }
                        () = &mut check => break,
                    }
                }
            }
            // The reads that arrived meanwhile share this round trip.
            while let Ok(waiter) = waiters.try_recv() {
                round.push(waiter);
            }
            tokio::time::timeout(PROBE_TIMEOUT, conn.batch_execute("SELECT 1"))
                .await
                .map_err(|_| "the connection stopped answering".to_string())?
                .map_err(|e| e.to_string())?;
            // Notifications come ahead of the answer: they are queued by now.
            {
                let notes = conn.notifications_stream();
                let mut notes = std::pin::pin!(notes);
                while let Some(Some(note)) = notes.next().now_or_never() {
                    self.announced(&note.map_err(|e| e.to_string())?.payload);
                }
            }
            for waiter in round.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// How many replicas are configured.
    pub fn configured(&self) -> usize {
        self.inner.replicas.len()
    }

    /// How many replicas serve reads now.
    pub fn serving(&self) -> usize {
        self.inner
            .replicas
            .iter()
            .filter(|r| r.serving_from.load(Ordering::Relaxed) > 0)
            .count()
    }

    /// Probes the primary and the replicas until `stop`.
    pub async fn probe_forever(self, primary: Database, stop: CancellationToken) {
        let mut history = History::default();
        let mut ticks = tokio::time::interval(PROBE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match tokio::time::timeout(PROBE_TIMEOUT, probe_primary(&primary)).await {
                Ok(Ok(lsn)) => history.push(Instant::now(), lsn, self.inner.max_lag),
                Ok(Err(e)) => {
                    tracing::debug!(target: "cortex::replicas", "primary probe failed: {e}")
                }
                Err(_) => tracing::debug!(target: "cortex::replicas", "primary probe timed out"),
            }
            let probes = self.inner.replicas.iter().map(|r| async {
                tokio::time::timeout(PROBE_TIMEOUT, replica_position(&r.db))
                    .await
                    .unwrap_or(Err(AppError::Timeout))
            });
            let positions = futures_util::future::join_all(probes).await;
            let now = Instant::now();
            for (replica, position) in self.inner.replicas.iter().zip(positions) {
                let serving = match position {
                    Ok(Some(replayed)) => match history.lag(now, replayed) {
                        Some(lag) if lag <= self.inner.max_lag => Some(replayed),
                        _ => None,
                    },
                    Ok(None) | Err(_) => None,
                };
                let was = replica
                    .serving_from
                    .swap(serving.map_or(0, |lsn| lsn.0.max(1)), Ordering::Relaxed);
                match (was > 0, serving.is_some(), &position) {
                    (true, false, Err(e)) => {
                        tracing::warn!(replica = %replica.name, "replica unreachable; reading from the primary: {e}")
                    }
                    (true, false, Ok(None)) => {
                        tracing::warn!(replica = %replica.name, "not a standby (promoted?); not reading from it")
                    }
                    (true, false, Ok(Some(_))) => {
                        tracing::warn!(replica = %replica.name, "replica lags more than REPLICA_MAX_LAG; reading from the primary")
                    }
                    (false, true, _) => {
                        tracing::info!(replica = %replica.name, "replica serves reads")
                    }
                    _ => {}
                }
            }
            metrics::gauge!(crate::metrics::REPLICAS_SERVING).set(self.serving() as f64);
            self.forget_replayed_writes(now);
        }
    }

    /// Drops remembered writes every serving replica has replayed, and those
    /// older than the lag any serving replica may have.
    fn forget_replayed_writes(&self, now: Instant) {
        let lowest = self
            .inner
            .replicas
            .iter()
            .map(|r| r.serving_from.load(Ordering::Relaxed))
            .filter(|&lsn| lsn > 0)
            .min();
        // A serving replica was within `max_lag` at its last probe, and probes
        // come at most two timeouts apart: a write older than that, it has.
        let horizon = self.inner.max_lag + 2 * (PROBE_INTERVAL + PROBE_TIMEOUT);
        let mut writes = self.inner.writes.lock().expect("writes lock");
        writes.retain(|_, (lsn, at)| {
            lowest.is_none_or(|lowest| lsn.0 > lowest) && now.duration_since(*at) <= horizon
        });
    }
}

/// The primary's recent positions, to turn a replica's position into a lag.
#[derive(Default)]
struct History {
    samples: VecDeque<(Instant, Lsn)>,
}

impl History {
    fn push(&mut self, at: Instant, lsn: Lsn, max_lag: Duration) {
        self.samples.push_back((at, lsn));
        // One sample older than the longest lag that matters is enough.
        let keep = max_lag + 2 * PROBE_INTERVAL;
        while self.samples.len() > 2 && at.duration_since(self.samples[1].0) > keep {
            self.samples.pop_front();
        }
    }

    /// How far behind a replica at `replayed` is: the time since the latest
    /// sample it had replayed, or nothing when it had none in the history
    /// (farther behind than is kept, or no sample yet).
    fn lag(&self, now: Instant, replayed: Lsn) -> Option<Duration> {
        let (_, newest) = self.samples.back()?;
        if replayed >= *newest {
            return Some(Duration::ZERO);
        }
        self.samples
            .iter()
            .rev()
            .find(|(_, lsn)| *lsn <= replayed)
            .map(|(at, _)| now.duration_since(*at))
    }
}

/// A WAL position as a statement reads it, and whether that server is a standby.
#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = Nullable<Text>)]
    lsn: Option<String>,
    #[diesel(sql_type = Bool)]
    standby: bool,
}

impl Position {
    /// Runs `query` (one row of `lsn` and `standby`) on `db` as one unit.
    async fn read(
        db: &Database,
        query: BoxedSqlQuery<'static, Pg, SqlQuery>,
    ) -> Result<Self, AppError> {
        use diesel_async::RunQueryDsl;
        db.run(None, async |conn| Ok(query.get_result(conn).await?))
            .await
    }

    /// The position, when the server reported one.
    fn lsn(&self) -> Option<Lsn> {
        self.lsn.as_deref().and_then(|text| text.parse().ok())
    }

    /// The primary's position, which it always reports.
    fn required(&self) -> Result<Lsn, AppError> {
        self.lsn()
            .ok_or_else(|| AppError::internal("the primary reported no WAL position"))
    }
}

/// Where the primary's WAL insertion stands after `user`'s write (its commit
/// record ends before it), announced to every instance on [`WRITES_CHANNEL`].
pub async fn primary_position_after_write(primary: &Database, user: &str) -> Result<Lsn, AppError> {
    // The notification goes out at this statement's commit, so it reaches the
    // other instances before the answer reaches the writer.
    let query = diesel::sql_query(format!(
        "SELECT pg_current_wal_insert_lsn()::text AS lsn, false AS standby
           FROM (SELECT pg_notify('{WRITES_CHANNEL}',
                        pg_current_wal_insert_lsn()::text || ' ' || $1)) AS announced"
    ))
    .into_boxed()
    .bind::<Text, _>(user.to_string());
    Position::read(primary, query).await?.required()
}

/// Where the primary's WAL insertion stands.
async fn probe_primary(primary: &Database) -> Result<Lsn, AppError> {
    let query = diesel::sql_query(
        "SELECT pg_current_wal_insert_lsn()::text AS lsn, pg_is_in_recovery() AS standby",
    );
    Position::read(primary, query.into_boxed())
        .await?
        .required()
}

/// What a replica has replayed; `None` when it is not a standby.
async fn replica_position(replica: &Database) -> Result<Option<Lsn>, AppError> {
    let query = diesel::sql_query(
        "SELECT pg_last_wal_replay_lsn()::text AS lsn, pg_is_in_recovery() AS standby",
    );
    let row = Position::read(replica, query.into_boxed()).await?;
    Ok(row.standby.then(|| row.lsn()).flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lsn_reads_and_prints_as_postgresql_writes_it() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>(), Ok(Lsn(0)));
        for bad in ["", "16", "16/", "/1", "x/1", "1/123456789", "-1/1", "1/+1"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn an_announced_write_holds_the_writer_to_databases_that_have_it() {
        // Pools connect lazily: no server is needed to route.
        let config = crate::config::Config::from_lookup(|name| {
            (name == "DATABASE_REPLICA_URLS").then(|| "postgres://x@localhost/none".to_string())
        })
        .unwrap();
        let replicas = Replicas::connect(&config.replicas, &config.pool)
            .await
            .unwrap();
        replicas.inner.replicas[0]
            .serving_from
            .store(0x10_0000, Ordering::Relaxed);
        // Not hearing the other instances yet: the primary.
        assert!(matches!(replicas.route(None, None), ReadTarget::Primary));
        replicas.inner.hearing.store(true, Ordering::Relaxed);
        assert!(matches!(
            replicas.route(Some("ann"), None),
            ReadTarget::Replica(..)
        ));
        // A user id may hold spaces: the position comes first.
        replicas.announced("0/200000 ann with spaces");
        replicas.announced("not a position");
        assert!(matches!(
            replicas.route(Some("ann with spaces"), None),
            ReadTarget::Primary
        ));
        assert!(matches!(
            replicas.route(Some("ann"), None),
            ReadTarget::Replica(..)
        ));
        // Replayed that far: the replica serves the writer again.
        replicas.inner.replicas[0]
            .serving_from
            .store(0x20_0000, Ordering::Relaxed);
        assert!(matches!(
            replicas.route(Some("ann with spaces"), None),
            ReadTarget::Replica(..)
        ));
        // A position the request carries counts as much.
        assert!(matches!(
            replicas.route(None, Some(Lsn(0x20_0001))),
            ReadTarget::Primary
        ));
    }

    #[test]
    fn a_replica_that_replayed_the_newest_sample_has_no_lag() {
        let t0 = Instant::now();
        let mut history = History::default();
        history.push(t0, Lsn(100), Duration::from_secs(5));
        // An idle primary: the same position for a long time.
        history.push(
            t0 + Duration::from_secs(60),
            Lsn(100),
            Duration::from_secs(5),
        );
        assert_eq!(
            history.lag(t0 + Duration::from_secs(61), Lsn(100)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_replica_lags_by_the_age_of_the_newest_sample_it_replayed() {
        let t0 = Instant::now();
        let mut history = History::default();
        for (i, lsn) in [100, 200, 300, 400].into_iter().enumerate() {
            history.push(
                t0 + Duration::from_secs(i as u64),
                Lsn(lsn),
                Duration::from_secs(60),
            );
        }
        let now = t0 + Duration::from_secs(4);
        assert_eq!(history.lag(now, Lsn(250)), Some(Duration::from_secs(3)));
        assert_eq!(history.lag(now, Lsn(300)), Some(Duration::from_secs(2)));
        // Behind everything kept: unknown, so too far behind.
        assert_eq!(history.lag(now, Lsn(50)), None);
        assert_eq!(History::default().lag(now, Lsn(50)), None);
    }

    #[test]
    fn the_history_keeps_what_the_longest_lag_needs() {
        let t0 = Instant::now();
        let mut history = History::default();
        for i in 0..100u64 {
            history.push(
                t0 + Duration::from_secs(i),
                Lsn(i * 10),
                Duration::from_secs(5),
            );
        }
        assert!(history.samples.len() <= 8, "{}", history.samples.len());
        let now = t0 + Duration::from_secs(99);
        assert_eq!(history.lag(now, Lsn(950)), Some(Duration::from_secs(4)));
    }
}

//! Start-up and shutdown: the database (embedded or configured), migrations, the
//! HTTP server and its graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use tokio::net::TcpListener;

use crate::config::{Config, DatabaseSource};
use crate::db::cluster::{ClusterOptions, EmbeddedCluster};
use crate::db::{migrations, Database};
use crate::AppState;

/// Name of the application database inside the embedded cluster.
pub const EMBEDDED_DATABASE: &str = "cortex";

/// The database a command works on, and the embedded cluster behind it, if any.
pub struct DatabaseHandle {
    /// A session connection's URL to the application database (`DATABASE_DIRECT_URL`,
    /// else `DATABASE_URL`): migrations, `LISTEN`, imports and backups use it.
    pub url: String,
    /// The pool's URL (`DATABASE_URL`; a transaction-mode pooler's, possibly).
    pub pool_url: String,
    cluster: Option<EmbeddedCluster>,
}

impl DatabaseHandle {
    /// Uses the configured server, or starts (or attaches to) the embedded cluster
    /// and makes sure its application database exists.
    pub async fn open(config: &Config) -> Result<Self> {
        match &config.database {
            DatabaseSource::Url(url) => Ok(Self {
                url: config
                    .database_direct
                    .as_ref()
                    .unwrap_or(url)
                    .expose()
                    .to_string(),
                pool_url: url.expose().to_string(),
                cluster: None,
            }),
            DatabaseSource::Embedded => {
                let options = ClusterOptions::from_config(&config.embedded);
                let cluster = tokio::task::spawn_blocking(move || EmbeddedCluster::start(&options))
                    .await
                    .context("the cluster start-up task panicked")??;
                let url = cluster.database_url(EMBEDDED_DATABASE);
                let handle = Self {
                    pool_url: url.clone(),
                    url,
                    cluster: Some(cluster),
                };
                let admin_url = handle
                    .cluster
                    .as_ref()
                    .expect("embedded")
                    .database_url("postgres");
                create_database_if_missing(&admin_url, EMBEDDED_DATABASE).await?;
                Ok(handle)
            }
        }
    }

    /// Whether this handle runs the embedded cluster.
    pub fn is_embedded(&self) -> bool {
        self.cluster.is_some()
    }

    /// Leaves the embedded cluster (stopping it when no other process uses it).
    pub async fn close(self) -> Result<()> {
        if let Some(cluster) = self.cluster {
            tokio::task::spawn_blocking(move || cluster.stop())
                .await
                .context("the cluster shutdown task panicked")??;
        }
        Ok(())
    }
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Creates `name` on the server behind `admin_url` unless it exists. `name` is one
/// of our own constants or generated names, never client input.
pub async fn create_database_if_missing(admin_url: &str, name: &str) -> Result<()> {
    let mut conn = crate::db::connect_once(admin_url)
        .await
        .context("cannot connect to the PostgreSQL server")?;
    let found: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
            .get_result(&mut conn)
            .await?;
    if !found.exists {
        let statement = format!("CREATE DATABASE {}", quote_identifier(name));
        if let Err(e) = diesel::sql_query(statement).execute(&mut conn).await {
            // Another process may have created it in between.
            if !e.to_string().contains("already exists") {
                return Err(e).context("cannot create the application database");
            }
        }
    }
    Ok(())
}

/// Quotes an SQL identifier (`"a""b"`).
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The process's stop signals (Ctrl-C/SIGINT and SIGTERM), taken over from the
/// default action (exit at once) when this is made: make it before telling anyone
/// that the server is up, or a stop sent right then kills the process without its
/// graceful shutdown.
pub struct ShutdownSignal {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the handlers.
    pub fn install() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    /// Resolves when the process is asked to stop.
    pub async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        tracing::info!("shutdown requested: finishing in-flight requests");
    }
}

/// Stops a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `cortex serve`: database, migrations, then HTTP until a stop signal.
pub async fn serve(config: Config) -> Result<()> {
    // A bad trusted-documents manifest is a configuration error: said before a
    // cluster starts.
    let persisted = Arc::new(crate::graphql::persisted::PersistedDocuments::from_config(
        &config,
    )?);
    let handle = DatabaseHandle::open(&config).await?;
    let result = serve_on(&config, &handle, persisted).await;
    let closed = handle.close().await;
    result.and(closed)
}

async fn serve_on(
    config: &Config,
    handle: &DatabaseHandle,
    persisted: Arc<crate::graphql::persisted::PersistedDocuments>,
) -> Result<()> {
    // A key that cannot be validated (its data needs a decision) must not keep the
    // API down: it is logged, and `cortex migrate` or the next import says why.
    match crate::import::bulk::repair(&handle.url).await {
        Ok(Some(rebuilt)) => tracing::warn!(
            objects = rebuilt.objects,
            seconds = rebuilt.elapsed.as_secs_f64(),
            "rebuilt the indexes and foreign keys an interrupted bulk import had dropped"
        ),
        Ok(None) => {}
        Err(e) => tracing::error!("cannot rebuild what an interrupted bulk import dropped: {e:#}"),
    }
    let applied = migrations::run_pending(&handle.url).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "applied migrations");
    }
    if !config.pool.prepared_statements && config.database_direct.is_none() {
        tracing::warn!("DB_PREPARED_STATEMENTS=false without DATABASE_DIRECT_URL: migrations, their lock and subscriptions' LISTEN use DATABASE_URL, which a transaction-mode pooler does not keep as one session");
    }
    let db = Database::connect(&handle.pool_url, &config.pool).await?;
    db.check()
        .await
        .map_err(|e| anyhow::anyhow!("the database does not answer: {e}"))?;
    let secret = match &config.jwt_secret {
        Some(secret) => secret.expose().as_bytes().to_vec(),
        None => {
            if !handle.is_embedded() {
                tracing::warn!("JWT_SECRET is not set: using a local secret kept in CORTEX_DATA_DIR; set JWT_SECRET in production");
            }
            crate::auth::load_or_create_local_secret(&config.embedded.data_dir)?
        }
    };
    let mut state = AppState::with_persisted(db.clone(), config.clone(), &secret, persisted);
    // Replicas serve reads once a probe has seen them caught up.
    let probe_stop = tokio_util::sync::CancellationToken::new();
    let _probe = if config.replicas.urls.is_empty() {
        None
    } else {
        let replicas =
            crate::db::replicas::Replicas::connect(&config.replicas, &config.pool).await?;
        tracing::info!(
            replicas = config.replicas.urls.len(),
            max_lag_s = config.replicas.max_lag.as_secs(),
            "queries read from replicas"
        );
        state.replicas = Some(replicas.clone());
        let hearing = tokio::spawn(
            replicas
                .clone()
                .hear_writes_forever(handle.url.clone(), probe_stop.clone()),
        );
        Some((
            AbortOnDrop(tokio::spawn(
                replicas.probe_forever(db.clone(), probe_stop.clone()),
            )),
            AbortOnDrop(hearing),
        ))
    };
    if handle.is_embedded() && config.jwt_secret.is_none() {
        crate::seed::seed_demo(&db)
            .await
            .map_err(|e| anyhow::anyhow!("cannot seed the demo data: {e}"))?;
        let token = state.auth.mint(
            crate::seed::DEMO_USER,
            Some("Demo User"),
            None,
            30 * 24 * 3600,
        );
        state.playground_token = Some(token);
    }
    let playground_token = state.playground_token.clone();
    // The metrics listener lives as long as the process serves; it is private
    // (METRICS_ADDR is meant for a loopback or internal address).
    let _metrics_task = match config.metrics_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on METRICS_ADDR {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!("metrics on http://{local}/metrics");
            println!("Metrics: http://{local}/metrics");
            let metrics = crate::metrics_router(state.clone());
            Some(AbortOnDrop(tokio::spawn(async move {
                let _ = axum::serve(listener, metrics).await;
            })))
        }
        None => None,
    };
    // The instance's event listener, outside the pool (subscriptions).
    let listener_stop = tokio_util::sync::CancellationToken::new();
    let _listener = AbortOnDrop(crate::realtime::listener::spawn(
        &state,
        &handle.url,
        listener_stop.clone(),
    ));
    let realtime = state.realtime.clone();
    // Subscriptions start after the newest event: the listener must have read
    // where that is before the first client can subscribe.
    if !realtime.hub.ready(config.pool.timeout).await {
        tracing::warn!("the event listener is not connected yet; subscriptions wait for it");
    }
    let app = crate::router(state);

    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (set HOST/PORT)"))?;
    let local = listener.local_addr()?;
    let stop = ShutdownSignal::install()?;
    tracing::info!("listening on http://{local}");
    println!("Cortex is listening on http://{local}");
    if let Some(token) = playground_token {
        println!("GraphiQL: http://{local}/graphiql (opens with the demo user's token)");
        println!("Demo token (user `{}`): {token}", crate::seed::DEMO_USER);
    }

    let shutdown_timeout = config.shutdown_timeout;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sockets_stop = realtime.shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop.recv().await;
        // WebSockets are upgraded out of the HTTP server's sight: told here.
        sockets_stop.cancel();
        let _ = stop_tx.send(());
    });
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    tokio::select! {
        result = &mut server => result.context("the HTTP server failed")?,
        _ = async {
            let _ = stop_rx.await;
            tokio::time::sleep(shutdown_timeout).await;
        } => tracing::warn!("in-flight requests did not finish within SHUTDOWN_TIMEOUT; stopping anyway"),
    }
    realtime.sockets.close();
    if tokio::time::timeout(shutdown_timeout, realtime.sockets.wait())
        .await
        .is_err()
    {
        tracing::warn!("WebSockets did not close within SHUTDOWN_TIMEOUT; stopping anyway");
    }
    listener_stop.cancel();
    probe_stop.cancel();
    drop(db);
    Ok(())
}

//! The application state every handler receives, passed explicitly (no globals).

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::db::Database;

/// What the HTTP handlers share: pool, configuration and token verification.
#[derive(Clone)]
pub struct AppState {
    /// The connection pool (the primary).
    pub db: Database,
    /// Read replicas (`DATABASE_REPLICA_URLS`), when configured.
    pub replicas: Option<crate::db::replicas::Replicas>,
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// Verifies bearer tokens.
    pub auth: Authenticator,
    /// A ready token GraphiQL opens with (embedded default only).
    pub playground_token: Option<String>,
    /// Subscriptions: the hub, its settings, the open sockets.
    pub realtime: crate::realtime::Realtime,
    /// Renders `/metrics`, when `METRICS_ADDR` or `METRICS_TOKEN` asks for it.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Trusted documents (`PERSISTED_DOCUMENTS`) and automatic persisted queries.
    pub persisted: Arc<crate::graphql::persisted::PersistedDocuments>,
}

impl AppState {
    /// State over an existing pool, verifying tokens with `secret`; fails when
    /// the trusted documents (`PERSISTED_DOCUMENTS`) cannot be read.
    pub fn try_new(db: Database, config: Config, secret: &[u8]) -> anyhow::Result<Self> {
        let persisted = crate::graphql::persisted::PersistedDocuments::from_config(&config)?;
        Ok(Self::with_persisted(
            db,
            config,
            secret,
            Arc::new(persisted),
        ))
    }

    /// State with trusted documents already read (start-up reads them before
    /// anything else, so that a bad manifest starts nothing).
    pub fn with_persisted(
        db: Database,
        config: Config,
        secret: &[u8],
        persisted: Arc<crate::graphql::persisted::PersistedDocuments>,
    ) -> Self {
        let metrics = (config.metrics_addr.is_some() || config.metrics_token.is_some())
            .then(crate::metrics::install);
        Self {
            db,
            replicas: None,
            realtime: crate::realtime::Realtime::new(&config.subscriptions),
            config: Arc::new(config),
            auth: Authenticator::new(secret),
            playground_token: None,
            metrics,
            persisted,
        }
    }

    /// [`AppState::try_new`] for tests and benchmarks, whose configuration is known good.
    ///
    /// # Panics
    /// When `PERSISTED_DOCUMENTS` names a manifest that cannot be read.
    pub fn new(db: Database, config: Config, secret: &[u8]) -> Self {
        Self::try_new(db, config, secret).expect("PERSISTED_DOCUMENTS")
    }
}

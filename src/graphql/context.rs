//! What every resolver reads from the request: the caller, the pool, the statement
//! counter and the request's loaders.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use async_graphql::Context;
use futures_util::future::BoxFuture;

use crate::auth::Caller;
use crate::db::pool::ConnWork;
use crate::db::scope::Scope;
use crate::db::{Database, QueryStats};
use crate::error::{AppError, AppResult};
use crate::graphql::batcher::Batcher;
use crate::graphql::loaders::CortexLoader;
use diesel_async::AsyncPgConnection;

/// Per-request state, created by the HTTP handler and never shared between requests.
pub struct RequestContext {
    /// What the authenticated caller may see and do, when a token was given.
    pub scope: Option<Scope>,
    /// The pool.
    pub db: Database,
    /// Statements and database time of this request.
    pub stats: Arc<QueryStats>,
    loader: Option<Batcher<CortexLoader>>,
    fast_path_objects: AtomicU64,
}

impl RequestContext {
    /// State for one request; its operations run through [`RequestContext::run`].
    pub fn new(db: Database, caller: Option<Caller>) -> Self {
        let stats = Arc::new(QueryStats::default());
        let scope = caller.map(Scope::new);
        let loader = scope
            .as_ref()
            .map(|scope| Batcher::new(CortexLoader::new(db.clone(), scope.clone(), stats.clone())));
        Self {
            scope,
            db,
            stats,
            loader,
            fast_path_objects: AtomicU64::new(0),
        }
    }
}

impl RequestContext {
    /// Objects answered by the fast path so far ([`crate::graphql::plain`]).
    pub fn fast_path_objects(&self) -> u64 {
        self.fast_path_objects.load(Ordering::Relaxed)
    }

    pub(crate) fn add_fast_path_objects(&self, n: u64) {
        self.fast_path_objects.fetch_add(n, Ordering::Relaxed);
    }

    /// Runs one operation's execution, loading each query level in one batch.
    pub async fn run<F: std::future::Future>(&self, execution: F) -> F::Output {
        match &self.loader {
            Some(loader) => loader.run(execution).await,
            None => execution.await,
        }
    }
}

/// The request state, shared.
pub fn shared(ctx: &Context<'_>) -> Arc<RequestContext> {
    ctx.data_unchecked::<crate::graphql::http::SharedContext>()
        .0
        .clone()
}

/// The request state.
pub fn request<'a>(ctx: &Context<'a>) -> &'a RequestContext {
    &ctx.data_unchecked::<crate::graphql::http::SharedContext>()
        .0
}

/// The caller's scope, or `UNAUTHENTICATED`: every read and write goes through it.
pub fn scope<'a>(ctx: &Context<'a>) -> AppResult<&'a Scope> {
    request(ctx).scope.as_ref().ok_or_else(|| {
        AppError::Unauthenticated("an `Authorization: Bearer <token>` header is required".into())
    })
}

/// Runs `work` on a pooled connection whose statements count toward this request
/// (one unit of work: [`Database::run`]).
pub async fn with_conn<R, F>(ctx: &Context<'_>, work: F) -> AppResult<R>
where
    for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> AppResult<R>
        + ConnWork<&'r mut AsyncPgConnection, AppResult<R>, Fut: Send>
        + Send,
    R: Send,
{
    let req = request(ctx);
    req.db.run(Some(&req.stats), work).await
}

/// The request's loader, once the caller is known.
fn loader<'a>(ctx: &Context<'a>) -> AppResult<&'a Batcher<CortexLoader>> {
    scope(ctx)?;
    Ok(request(ctx).loader.as_ref().expect("a caller has a loader"))
}

// The two functions below return boxed futures on purpose. async-graphql boxes one
// `resolve_field` future per selected field, as large as the largest resolver of the
// type; an inline `load_one` made every field of `Message` (even `content`) that
// large: a 2,000-message page allocated and moved megabytes of futures.

/// Loads one key through the request's loader (scoped to the caller).
pub fn load<'a, K>(
    ctx: &Context<'a>,
    key: K,
) -> BoxFuture<'a, AppResult<Option<<CortexLoader as Loader<K>>::Value>>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + Unpin + 'static,
    CortexLoader: Loader<K, Error = Arc<AppError>>,
{
    match loader(ctx) {
        Ok(loader) => {
            let load = loader.load(key);
            Box::pin(async move { load.await.map_err(|e| (*e).clone()) })
        }
        Err(e) => Box::pin(std::future::ready(Err(e))),
    }
}

/// Loads many keys through the request's loader, in one batch.
pub fn load_many<'a, K>(
    ctx: &Context<'a>,
    keys: impl IntoIterator<Item = K> + Send + 'a,
) -> BoxFuture<'a, AppResult<HashMap<K, <CortexLoader as Loader<K>>::Value>>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + Unpin + 'static,
    CortexLoader: Loader<K, Error = Arc<AppError>>,
{
    match loader(ctx) {
        Ok(loader) => {
            let loads: Vec<_> = keys
                .into_iter()
                .map(|key| {
                    let load = loader.load(key.clone());
                    async move { load.await.map(|value| value.map(|v| (key, v))) }
                })
                .collect();
            Box::pin(async move {
                let values = futures_util::future::join_all(loads).await;
                let mut out = HashMap::with_capacity(values.len());
                for value in values {
                    if let Some((key, v)) = value.map_err(|e| (*e).clone())? {
                        out.insert(key, v);
                    }
                }
                Ok(out)
            })
        }
        Err(e) => Box::pin(std::future::ready(Err(e))),
    }
}

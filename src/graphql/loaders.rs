//! The batch functions behind every nested field: one key type per kind of read,
//! each answered by one [`Scope`] batch (one statement for all the parents of a
//! level, see [`crate::db::lateral`]), so a loader only ever returns rows the
//! caller may see. When a level's keys are collected is
//! [`crate::graphql::batcher`]'s business.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::db::conversations::{Conversation, ConversationFilter};
use crate::db::messages::{Message, MessageFilter};
use crate::db::pool::ConnWork;
use crate::db::scope::Scope;
use crate::db::users::UserName;
use crate::db::workspaces::Workspace;
use crate::db::{Database, Page, PageArgs, QueryStats};
use crate::error::AppError;

/// The one loader type: it implements [`Loader`] for each key type below.
pub struct CortexLoader {
    db: Database,
    scope: Scope,
    stats: Arc<QueryStats>,
}

impl CortexLoader {
    /// A loader for one request, reading through the caller's scope.
    pub fn new(db: Database, scope: Scope, stats: Arc<QueryStats>) -> Self {
        Self { db, scope, stats }
    }

    /// Runs `work` as one unit on a connection counted toward the request.
    async fn run<R, F>(&self, work: F) -> Result<R, Arc<AppError>>
    where
        for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> Result<R, AppError>
            + ConnWork<&'r mut AsyncPgConnection, Result<R, AppError>, Fut: Send>
            + Send,
        R: Send,
    {
        self.db.run(Some(&self.stats), work).await.map_err(Arc::new)
    }
}

/// A page request for one parent. Keys that share their query (filter and page
/// arguments) are read by one statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey<F> {
    /// The parent row.
    pub parent: Uuid,
    /// Filter and page arguments, shared by the keys of one field.
    pub query: Arc<PageQuery<F>>,
}

/// Filter and page arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PageQuery<F> {
    /// The filter.
    pub filter: F,
    /// The page.
    pub args: PageArgs,
}

impl<F> PageQuery<F> {
    /// Wraps filter and arguments.
    pub fn new(filter: F, args: PageArgs) -> Arc<Self> {
        Arc::new(Self { filter, args })
    }
}

/// Groups keys that share their query: one statement per group (one per field of
/// a level, unless two fields of the level ask the same).
fn groups<F: Eq + Hash>(keys: &[PageKey<F>]) -> HashMap<Arc<PageQuery<F>>, Vec<Uuid>> {
    let mut out: HashMap<Arc<PageQuery<F>>, Vec<Uuid>> = HashMap::new();
    for key in keys {
        out.entry(key.query.clone()).or_default().push(key.parent);
    }
    out
}

/// One group's per-parent values under their loader keys.
fn keyed<F, V>(
    query: Arc<PageQuery<F>>,
    values: HashMap<Uuid, V>,
) -> impl Iterator<Item = (PageKey<F>, V)> {
    values.into_iter().map(move |(parent, value)| {
        let key = PageKey {
            parent,
            query: query.clone(),
        };
        (key, value)
    })
}

/// One statement per group of keys sharing a query, for every parent of the group.
type GroupBatch<F, V> = for<'a> fn(
    &'a Scope,
    &'a mut AsyncPgConnection,
    Vec<Uuid>,
    &'a PageQuery<F>,
) -> BoxFuture<'a, diesel::QueryResult<HashMap<Uuid, V>>>;

impl CortexLoader {
    /// Loads `keys` a group at a time with `batch`, under the loader `name`.
    async fn grouped<F: Eq + Hash + Send + Sync, V: Send>(
        &self,
        name: &'static str,
        keys: &[PageKey<F>],
        batch: GroupBatch<F, V>,
    ) -> Result<HashMap<PageKey<F>, V>, Arc<AppError>> {
        crate::metrics::record_batch(name, keys.len());
        self.run(async |conn| {
            let mut out = HashMap::new();
            for (query, parents) in groups(keys) {
                let values = batch(&self.scope, conn, parents, &query).await?;
                out.extend(keyed(query, values));
            }
            Ok(out)
        })
        .await
    }
}

/// Shares a page's rows: the batcher hands every waiting resolver a clone.
fn shared<T>(pages: HashMap<Uuid, Page<T>>) -> HashMap<Uuid, Page<Arc<T>>> {
    pages
        .into_iter()
        .map(|(p, page)| (p, page.map(Arc::new)))
        .collect()
}

/// Conversations of a workspace: one page per workspace.
pub type ConversationPageKey = PageKey<ConversationFilter>;

// Page values hold shared rows: the batcher clones every value it hands out, and
// a page of owned rows was deep-copied (metadata maps included).
impl Loader<ConversationPageKey> for CortexLoader {
    type Value = Page<Arc<Conversation>>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[ConversationPageKey],
    ) -> Result<HashMap<ConversationPageKey, Self::Value>, Self::Error> {
        self.grouped(
            "ConversationPageKey",
            keys,
            |scope, conn, parents, query| {
                Box::pin(async move {
                    let pages = scope
                        .conversation_pages(conn, parents, &query.filter, &query.args)
                        .await?;
                    Ok(shared(pages))
                })
            },
        )
        .await
    }
}

/// What a message page reads besides its parent and page arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessagePageFilter {
    /// Which messages.
    pub criteria: MessageFilter,
    /// Whether the query shows the messages' `metadata` (read as JSON `null` if not).
    pub with_metadata: bool,
}

/// Messages of a conversation: one page per conversation, chronological.
pub type MessagePageKey = PageKey<MessagePageFilter>;

impl Loader<MessagePageKey> for CortexLoader {
    type Value = Page<Arc<Message>>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[MessagePageKey],
    ) -> Result<HashMap<MessagePageKey, Self::Value>, Self::Error> {
        self.grouped("MessagePageKey", keys, |scope, conn, parents, query| {
            Box::pin(async move {
                let filter = &query.filter;
                let pages = scope
                    .message_pages(
                        conn,
                        parents,
                        &filter.criteria,
                        filter.with_metadata,
                        &query.args,
                    )
                    .await?;
                Ok(shared(pages))
            })
        })
        .await
    }
}

/// How many conversations of a workspace match a filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConversationCountKey(pub ConversationPageKey);

impl Loader<ConversationCountKey> for CortexLoader {
    type Value = i64;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[ConversationCountKey],
    ) -> Result<HashMap<ConversationCountKey, i64>, Self::Error> {
        let inner: Vec<_> = keys.iter().map(|k| k.0.clone()).collect();
        let counts = self
            .grouped(
                "ConversationCountKey",
                &inner,
                |scope, conn, parents, query| {
                    Box::pin(scope.conversation_counts(conn, parents, &query.filter))
                },
            )
            .await?;
        Ok(counts
            .into_iter()
            .map(|(k, n)| (ConversationCountKey(k), n))
            .collect())
    }
}

/// How many messages of a conversation match a filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageCountKey(pub MessagePageKey);

impl Loader<MessageCountKey> for CortexLoader {
    type Value = i64;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[MessageCountKey],
    ) -> Result<HashMap<MessageCountKey, i64>, Self::Error> {
        let inner: Vec<_> = keys.iter().map(|k| k.0.clone()).collect();
        let counts = self
            .grouped("MessageCountKey", &inner, |scope, conn, parents, query| {
                Box::pin(scope.message_counts(conn, parents, &query.filter.criteria))
            })
            .await?;
        Ok(counts
            .into_iter()
            .map(|(k, n)| (MessageCountKey(k), n))
            .collect())
    }
}

/// The newest `limit` messages of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LatestMessagesKey {
    /// The conversation.
    pub conversation_id: Uuid,
    /// How many.
    pub limit: i64,
}

impl Loader<LatestMessagesKey> for CortexLoader {
    type Value = Vec<Arc<Message>>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[LatestMessagesKey],
    ) -> Result<HashMap<LatestMessagesKey, Self::Value>, Self::Error> {
        crate::metrics::record_batch("LatestMessagesKey", keys.len());
        self.run(async |conn| {
            let mut out = HashMap::new();
            let mut limits: Vec<i64> = keys.iter().map(|k| k.limit).collect();
            limits.sort_unstable();
            limits.dedup();
            for limit in limits {
                let parents: Vec<Uuid> = keys
                    .iter()
                    .filter(|k| k.limit == limit)
                    .map(|k| k.conversation_id)
                    .collect();
                let latest = self.scope.latest_messages(conn, parents, limit).await?;
                out.extend(latest.into_iter().map(|(conversation_id, rows)| {
                    let key = LatestMessagesKey {
                        conversation_id,
                        limit,
                    };
                    (key, rows.into_iter().map(Arc::new).collect())
                }));
            }
            Ok(out)
        })
        .await
    }
}

/// Message counts per sender in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenderCountsKey(pub Uuid);

impl Loader<SenderCountsKey> for CortexLoader {
    type Value = Vec<(String, i64)>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[SenderCountsKey],
    ) -> Result<HashMap<SenderCountsKey, Self::Value>, Self::Error> {
        crate::metrics::record_batch("SenderCountsKey", keys.len());
        self.run(async |conn| {
            let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
            let counts = self.scope.sender_counts(conn, ids).await?;
            Ok(counts
                .into_iter()
                .map(|(id, counts)| (SenderCountsKey(id), counts))
                .collect())
        })
        .await
    }
}

/// A user's public name by `user_id` (owners, senders, participants).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserNameKey(pub String);

// Shared, not copied: every message of a nested page resolves its sender through
// this loader.
impl Loader<UserNameKey> for CortexLoader {
    type Value = Arc<UserName>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[UserNameKey],
    ) -> Result<HashMap<UserNameKey, Arc<UserName>>, Self::Error> {
        crate::metrics::record_batch("UserNameKey", keys.len());
        self.run(async |conn| {
            let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
            let rows = self.scope.user_names(conn, ids).await?;
            Ok(rows
                .into_iter()
                .map(|u| (UserNameKey(u.user_id.clone()), Arc::new(u)))
                .collect())
        })
        .await
    }
}

/// A workspace by id, only when the caller owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkspaceKey(pub Uuid);

impl Loader<WorkspaceKey> for CortexLoader {
    type Value = Workspace;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[WorkspaceKey],
    ) -> Result<HashMap<WorkspaceKey, Workspace>, Self::Error> {
        crate::metrics::record_batch("WorkspaceKey", keys.len());
        self.run(async |conn| {
            let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
            let rows = self.scope.workspaces_by_id(conn, ids).await?;
            Ok(rows.into_iter().map(|r| (WorkspaceKey(r.id), r)).collect())
        })
        .await
    }
}

/// A conversation by id, only when the caller may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConversationKey(pub Uuid);

impl Loader<ConversationKey> for CortexLoader {
    type Value = Conversation;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[ConversationKey],
    ) -> Result<HashMap<ConversationKey, Conversation>, Self::Error> {
        crate::metrics::record_batch("ConversationKey", keys.len());
        self.run(async |conn| {
            let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
            let rows = self.scope.conversations_by_id(conn, ids).await?;
            Ok(rows
                .into_iter()
                .map(|r| (ConversationKey(r.id), r))
                .collect())
        })
        .await
    }
}

/// Any row by id (Relay's `node`/`nodes`), only when the caller may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeKey(pub Uuid);

impl Loader<NodeKey> for CortexLoader {
    type Value = crate::db::scope::NodeRow;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[NodeKey]) -> Result<HashMap<NodeKey, Self::Value>, Self::Error> {
        crate::metrics::record_batch("NodeKey", keys.len());
        self.run(async |conn| {
            let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
            let rows = self.scope.nodes_by_id(conn, ids).await?;
            Ok(rows.into_iter().map(|r| (NodeKey(r.id()), r)).collect())
        })
        .await
    }
}

//! Per-request DataLoaders: every nested field is batched into one SQL statement per
//! level of the query, whatever the number of parents. Each loader reads through the
//! caller's [`Scope`], so it only ever returns rows the caller may see.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use crate::db::conversations::{Conversation, ConversationFilter};
use crate::db::messages::{Message, MessageFilter};
use crate::db::scope::Scope;
use crate::db::users::UserName;
use crate::db::workspaces::Workspace;
use crate::db::{Database, Page, PageArgs, QueryStats, SortKey, TimeOrder};
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

    async fn conn(&self) -> Result<crate::db::DbConn<'_>, Arc<AppError>> {
        self.db
            .conn(Some(&self.stats))
            .await
            .map_err(|e| Arc::new(AppError::from(e)))
    }
}

fn db_err(e: diesel::result::Error) -> Arc<AppError> {
    Arc::new(AppError::from(e))
}

/// A page request for one parent; batched with every other key of the same query.
#[derive(Debug, Clone)]
pub struct PageKey<F> {
    /// The parent row.
    pub parent: Uuid,
    /// Filter and page arguments (shared by the whole batch).
    pub query: Arc<PageQuery<F>>,
}

/// Filter and page arguments, with a fingerprint for grouping.
#[derive(Debug)]
pub struct PageQuery<F> {
    /// The filter.
    pub filter: F,
    /// The page.
    pub args: PageArgs,
    fingerprint: String,
}

impl<F: Debug> PageQuery<F> {
    /// Wraps filter and arguments.
    pub fn new(filter: F, args: PageArgs) -> Arc<Self> {
        let fingerprint = format!("{filter:?}|{args:?}");
        Arc::new(Self {
            filter,
            args,
            fingerprint,
        })
    }
}

impl<F> PartialEq for PageKey<F> {
    fn eq(&self, other: &Self) -> bool {
        self.parent == other.parent && self.query.fingerprint == other.query.fingerprint
    }
}
impl<F> Eq for PageKey<F> {}
impl<F> Hash for PageKey<F> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parent.hash(state);
        self.query.fingerprint.hash(state);
    }
}

/// Groups keys that share filter and arguments: one statement per group.
fn groups<F>(keys: &[PageKey<F>]) -> Vec<(Arc<PageQuery<F>>, Vec<Uuid>)> {
    let mut out: Vec<(Arc<PageQuery<F>>, Vec<Uuid>)> = Vec::new();
    for key in keys {
        match out
            .iter_mut()
            .find(|(q, _)| q.fingerprint == key.query.fingerprint)
        {
            Some((_, parents)) => parents.push(key.parent),
            None => out.push((key.query.clone(), vec![key.parent])),
        }
    }
    out
}

/// One group's per-parent values under their loader keys.
fn keyed<F, V>(
    query: &Arc<PageQuery<F>>,
    values: impl IntoIterator<Item = (Uuid, V)>,
) -> impl Iterator<Item = (PageKey<F>, V)> {
    let query = query.clone();
    values.into_iter().map(move |(parent, value)| {
        let key = PageKey {
            parent,
            query: query.clone(),
        };
        (key, value)
    })
}

/// Grouped counts for every parent asked about: one without rows counts 0.
fn zero_filled(parents: &[Uuid], counts: Vec<(Uuid, i64)>) -> Vec<(Uuid, i64)> {
    let counts: HashMap<Uuid, i64> = counts.into_iter().collect();
    parents
        .iter()
        .map(|p| (*p, counts.get(p).copied().unwrap_or(0)))
        .collect()
}

/// Splits rows by parent; every parent asked about gets an entry, maybe empty.
fn by_parent<T>(
    rows: Vec<T>,
    parents: &[Uuid],
    parent: impl Fn(&T) -> Uuid,
) -> HashMap<Uuid, Vec<T>> {
    let mut out: HashMap<Uuid, Vec<T>> = parents.iter().map(|p| (*p, Vec::new())).collect();
    for row in rows {
        out.entry(parent(&row)).or_default().push(row);
    }
    out
}

/// Splits rows by parent and puts each parent's rows back in fetch order.
fn pages<T>(
    rows: Vec<T>,
    parents: &[Uuid],
    args: &PageArgs,
    ascending_fetch: bool,
    parent: impl Fn(&T) -> Uuid,
    key: impl Fn(&T) -> SortKey,
) -> HashMap<Uuid, Page<T>> {
    by_parent(rows, parents, parent)
        .into_iter()
        .map(|(p, mut rows)| {
            rows.sort_by_key(|r| key(r));
            if !ascending_fetch {
                rows.reverse();
            }
            (p, Page::from_fetched(rows, args))
        })
        .collect()
}

fn ascending(order: TimeOrder, from_end: bool) -> bool {
    matches!(order, TimeOrder::CreatedAsc | TimeOrder::UpdatedAsc) != from_end
}

/// Conversations of a workspace: one page per workspace.
pub type ConversationPageKey = PageKey<ConversationFilter>;

// Page values hold shared rows: async-graphql's DataLoader clones every value it
// hands out, and a page of owned rows was deep-copied (metadata maps included).
impl Loader<ConversationPageKey> for CortexLoader {
    type Value = Page<Arc<Conversation>>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[ConversationPageKey],
    ) -> Result<HashMap<ConversationPageKey, Self::Value>, Self::Error> {
        crate::metrics::record_batch("ConversationPageKey", keys.len());
        let mut conn = self.conn().await?;
        let mut out = HashMap::new();
        for (query, parents) in groups(keys) {
            let rows = self
                .scope
                .conversation_pages(&mut conn, parents.clone(), &query.filter, &query.args)
                .await
                .map_err(db_err)?;
            let rows: Vec<Arc<Conversation>> = rows.into_iter().map(Arc::new).collect();
            let order = query.args.order;
            let pages = pages(
                rows,
                &parents,
                &query.args,
                ascending(order, query.args.from_end()),
                |r| r.workspace_id,
                |r| order.key(r.created_at, r.updated_at, r.id),
            );
            out.extend(keyed(&query, pages));
        }
        Ok(out)
    }
}

/// What a message page reads besides its parent and page arguments.
#[derive(Debug, Clone)]
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
        crate::metrics::record_batch("MessagePageKey", keys.len());
        let mut conn = self.conn().await?;
        let mut out = HashMap::new();
        for (query, parents) in groups(keys) {
            let filter = &query.filter;
            let rows = self
                .scope
                .message_pages(
                    &mut conn,
                    parents.clone(),
                    &filter.criteria,
                    filter.with_metadata,
                    &query.args,
                )
                .await
                .map_err(db_err)?;
            let rows: Vec<Arc<Message>> = rows.into_iter().map(Arc::new).collect();
            let pages = pages(
                rows,
                &parents,
                &query.args,
                !query.args.from_end(),
                |r| r.conversation_id,
                |r| (r.timestamp, r.id),
            );
            out.extend(keyed(&query, pages));
        }
        Ok(out)
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
        crate::metrics::record_batch("ConversationCountKey", keys.len());
        let mut conn = self.conn().await?;
        let inner: Vec<_> = keys.iter().map(|k| k.0.clone()).collect();
        let mut out = HashMap::new();
        for (query, parents) in groups(&inner) {
            let counts = self
                .scope
                .conversation_counts(&mut conn, parents.clone(), &query.filter)
                .await
                .map_err(db_err)?;
            let counts = zero_filled(&parents, counts);
            out.extend(keyed(&query, counts).map(|(key, n)| (ConversationCountKey(key), n)));
        }
        Ok(out)
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
        crate::metrics::record_batch("MessageCountKey", keys.len());
        let mut conn = self.conn().await?;
        let inner: Vec<_> = keys.iter().map(|k| k.0.clone()).collect();
        let mut out = HashMap::new();
        for (query, parents) in groups(&inner) {
            let counts = self
                .scope
                .message_counts(&mut conn, parents.clone(), &query.filter.criteria)
                .await
                .map_err(db_err)?;
            let counts = zero_filled(&parents, counts);
            out.extend(keyed(&query, counts).map(|(key, n)| (MessageCountKey(key), n)));
        }
        Ok(out)
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
        let mut conn = self.conn().await?;
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
            let rows = self
                .scope
                .latest_messages(&mut conn, parents.clone(), limit)
                .await
                .map_err(db_err)?;
            let rows: Vec<Arc<Message>> = rows.into_iter().map(Arc::new).collect();
            for (conversation_id, mut rows) in by_parent(rows, &parents, |r| r.conversation_id) {
                rows.sort_by_key(|r| (r.timestamp, r.id));
                out.insert(
                    LatestMessagesKey {
                        conversation_id,
                        limit,
                    },
                    rows,
                );
            }
        }
        Ok(out)
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
        let mut conn = self.conn().await?;
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = self
            .scope
            .sender_counts(&mut conn, ids.clone())
            .await
            .map_err(db_err)?;
        let mut out: HashMap<SenderCountsKey, Self::Value> = ids
            .iter()
            .map(|id| (SenderCountsKey(*id), Vec::new()))
            .collect();
        for (conversation, sender, n) in rows {
            out.entry(SenderCountsKey(conversation))
                .or_default()
                .push((sender, n));
        }
        for counts in out.values_mut() {
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        }
        Ok(out)
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
        let mut conn = self.conn().await?;
        let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let rows = self
            .scope
            .user_names(&mut conn, ids)
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|u| (UserNameKey(u.user_id.clone()), Arc::new(u)))
            .collect())
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
        let mut conn = self.conn().await?;
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = self
            .scope
            .workspaces_by_id(&mut conn, ids)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(|r| (WorkspaceKey(r.id), r)).collect())
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
        let mut conn = self.conn().await?;
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = self
            .scope
            .conversations_by_id(&mut conn, ids)
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| (ConversationKey(r.id), r))
            .collect())
    }
}

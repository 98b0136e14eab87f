//! Per-request DataLoaders: every nested field is batched into one SQL statement per
//! level of the query, whatever the number of parents. Each loader carries the caller
//! and only ever returns rows inside the caller's workspaces.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::db::conversations::{self, Conversation, ConversationFilter};
use crate::db::messages::{self, Message, MessageFilter};
use crate::db::schema::{conversations as c, messages as m, users as u, workspaces as w};
use crate::db::users::User;
use crate::db::workspaces::Workspace;
use crate::db::{
    keyset_page, ordered_page, parent_id, Database, Page, PageArgs, PerParent, QueryStats, SortKey,
    TaggedPerParent, TimeOrder,
};
use crate::error::AppError;

/// The one loader type: it implements [`Loader`] for each key type below.
pub struct CortexLoader {
    db: Database,
    owner: String,
    stats: Arc<QueryStats>,
}

impl CortexLoader {
    /// A loader for one request by `owner`.
    pub fn new(db: Database, owner: String, stats: Arc<QueryStats>) -> Self {
        Self { db, owner, stats }
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

/// Workspaces of `owner` (a subquery for scoping).
fn owned_workspaces(
    owner: &str,
) -> w::BoxedQuery<'static, diesel::pg::Pg, diesel::sql_types::Uuid> {
    w::table
        .filter(w::owner_id.eq(owner.to_string()))
        .select(w::id)
        .into_boxed()
}

/// Conversations inside workspaces of `owner` (a subquery for scoping).
fn owned_conversations(
    owner: &str,
) -> c::BoxedQuery<'static, diesel::pg::Pg, diesel::sql_types::Uuid> {
    c::table
        .filter(c::workspace_id.eq_any(owned_workspaces(owner)))
        .select(c::id)
        .into_boxed()
}

/// `parent.id` is a workspace of `owner`: the scope of a [`PerParent`] over workspaces.
fn parent_workspace_owned_by(
    owner: &str,
) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg> + Send + 'static {
    w::table
        .filter(w::id.eq(parent_id()))
        .select(w::owner_id)
        .single_value()
        .eq(owner.to_string())
}

/// `parent.id` is a conversation in a workspace of `owner`: the scope of a
/// [`PerParent`] over conversations.
fn parent_conversation_owned_by(
    owner: &str,
) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg> + Send + 'static {
    c::table
        .inner_join(w::table)
        .filter(c::id.eq(parent_id()))
        .select(w::owner_id)
        .single_value()
        .eq(owner.to_string())
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
            let inner = conversations::filtered(&query.filter)
                .filter(c::workspace_id.eq(parent_id()))
                .select(Conversation::as_select());
            let inner = ordered_page!(inner, &query.args, conversations);
            let scope = parent_workspace_owned_by(&self.owner);
            let rows: Vec<Conversation> = PerParent::new(parents.clone(), scope, inner)
                .load(&mut conn)
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
            let inner = messages::filtered(&query.filter.criteria)
                .filter(m::conversation_id.eq(parent_id()))
                .select(messages::columns(query.filter.with_metadata));
            let inner = keyset_page!(inner, &query.args, m::timestamp, m::id, asc);
            let scope = parent_conversation_owned_by(&self.owner);
            let rows: Vec<Message> = PerParent::new(parents.clone(), scope, inner)
                .load(&mut conn)
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
            let inner = conversations::filtered(&query.filter)
                .filter(c::workspace_id.eq(parent_id()))
                .count();
            let scope = parent_workspace_owned_by(&self.owner);
            let counts: Vec<(Uuid, i64)> = TaggedPerParent::new(parents.clone(), scope, inner)
                .load(&mut conn)
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
            let inner = messages::filtered(&query.filter.criteria)
                .filter(m::conversation_id.eq(parent_id()))
                .count();
            let scope = parent_conversation_owned_by(&self.owner);
            let counts: Vec<(Uuid, i64)> = TaggedPerParent::new(parents.clone(), scope, inner)
                .load(&mut conn)
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
            let inner = m::table
                .filter(m::conversation_id.eq(parent_id()))
                .order((m::timestamp.desc(), m::id.desc()))
                .limit(limit)
                .select(Message::as_select())
                .into_boxed();
            let scope = parent_conversation_owned_by(&self.owner);
            let rows: Vec<Message> = PerParent::new(parents.clone(), scope, inner)
                .load(&mut conn)
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
        let rows: Vec<(Uuid, String, i64)> = m::table
            .filter(m::conversation_id.eq_any(ids.clone()))
            .filter(m::conversation_id.eq_any(owned_conversations(&self.owner)))
            .group_by((m::conversation_id, m::sender_id))
            .select((m::conversation_id, m::sender_id, diesel::dsl::count_star()))
            .load(&mut conn)
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

/// A user by `user_id` (owners, senders, participants of the caller's rows).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey(pub String);

// Shared, not copied: every message of a nested page resolves its sender through
// this loader, and each of those 2,000 loads used to clone the row (metadata included).
impl Loader<UserKey> for CortexLoader {
    type Value = Arc<User>;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[UserKey]) -> Result<HashMap<UserKey, Arc<User>>, Self::Error> {
        crate::metrics::record_batch("UserKey", keys.len());
        let mut conn = self.conn().await?;
        let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let rows: Vec<User> = u::table
            .filter(u::user_id.eq_any(ids))
            .select(User::as_select())
            .load(&mut conn)
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|u| (UserKey(u.user_id.clone()), Arc::new(u)))
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
        let rows: Vec<Workspace> = w::table
            .filter(w::id.eq_any(ids))
            .filter(w::owner_id.eq(&self.owner))
            .select(Workspace::as_select())
            .load(&mut conn)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(|r| (WorkspaceKey(r.id), r)).collect())
    }
}

/// A conversation by id, only inside the caller's workspaces.
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
        let rows: Vec<Conversation> = c::table
            .filter(c::id.eq_any(ids))
            .filter(c::workspace_id.eq_any(owned_workspaces(&self.owner)))
            .select(Conversation::as_select())
            .load(&mut conn)
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| (ConversationKey(r.id), r))
            .collect())
    }
}

//! `Subscription`: `messageAdded` and `conversationChanged`, fed by the instance's
//! [`Hub`] and checked, event by event, through the caller's scope.
//!
//! A subscription first checks that the caller may read what it names, then
//! takes every event after the hub's position (and, with `after`, the events it
//! missed, from the table). Before each event is sent the caller's access is
//! read again through the scope module: a message is loaded with the rule's
//! verdict; a change to the conversation or workspace re-reads it. When the
//! caller lost access (removed from the conversation, workspace deleted, user
//! deactivated) or the token expires, the subscription ends with that error.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, Enum, Object, Subscription};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use crate::db::events::{self, Event, EventCursor, EventKind};
use crate::db::scope::{Lookup, Scope};
use crate::error::{AppError, AppResult};
use crate::graphql::context::{scope, shared, RequestContext};
use crate::graphql::conversation::Conversation;
use crate::graphql::message::Message;
use crate::graphql::node::NodeId;
use crate::realtime::{decode_cursor, encode_cursor, Hub, Next, SubscribeError, Topic};

/// Missed events read per statement when resuming.
const RESUME_BATCH: i64 = 500;
/// Tries of a check the database could not answer (a restart), before the
/// subscription ends with `UNAVAILABLE`.
const CHECK_TRIES: u32 = 20;

/// The subscription root.
pub struct SubscriptionRoot;

/// A message sent, with the cursor to resume after it.
pub struct MessageAdded {
    cursor: EventCursor,
    message: Arc<crate::db::messages::Message>,
}

/// A message sent, with the cursor to resume after it.
#[Object]
impl MessageAdded {
    /// Pass as `after` when subscribing again, to get what came after this event.
    async fn cursor(&self) -> String {
        encode_cursor(self.cursor)
    }
    /// The message, as queries return it.
    async fn message(&self) -> Message {
        Message::from(self.message.clone())
    }
}

/// What happened to a conversation.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChangeKind {
    /// It was created.
    Created,
    /// Its topic, metadata or participants changed.
    Updated,
    /// It was deleted.
    Deleted,
}

/// A conversation created, changed or deleted, with the cursor to resume after it.
pub struct ConversationChanged {
    cursor: EventCursor,
    change: ChangeKind,
    conversation_id: Uuid,
    conversation: Option<Arc<crate::db::conversations::Conversation>>,
}

/// A conversation created, changed or deleted, with the cursor to resume after it.
#[Object]
impl ConversationChanged {
    /// Pass as `after` when subscribing again, to get what came after this event.
    async fn cursor(&self) -> String {
        encode_cursor(self.cursor)
    }
    /// What happened.
    async fn change(&self) -> ChangeKind {
        self.change
    }
    /// The conversation's id (also when it was deleted).
    async fn conversation_id(&self) -> NodeId {
        NodeId(self.conversation_id)
    }
    /// The conversation as it is now; `null` when it was deleted.
    async fn conversation(&self) -> Option<Conversation> {
        self.conversation.clone().map(Conversation)
    }
}

/// Events as they happen, over a WebSocket (`graphql-transport-ws`).
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Messages sent from now on, in one conversation (`conversationId`) or in
    /// every conversation of a workspace the caller may read (`workspaceId`; give
    /// exactly one). With `after` (a `cursor` of an event received before), first
    /// the events missed since then (kept for `EVENT_RETENTION`). Ends with an
    /// error when the caller loses access or their token expires.
    async fn message_added(
        &self,
        ctx: &Context<'_>,
        conversation_id: Option<NodeId>,
        workspace_id: Option<NodeId>,
        after: Option<String>,
    ) -> BoxStream<'static, AppResult<MessageAdded>> {
        let topic = match (conversation_id, workspace_id) {
            (Some(id), None) => Watched::Conversation(id.0),
            (None, Some(id)) => Watched::WorkspaceMessages(id.0),
            _ => {
                return refusal(AppError::bad_input(
                    "conversationId",
                    "give exactly one of `conversationId` and `workspaceId`",
                ))
            }
        };
        match Watch::start(ctx, topic, after.as_deref()).await {
            Ok(watch) => watch
                .into_stream(|delivery| match delivery {
                    Delivery::Message(cursor, message) => Some(MessageAdded { cursor, message }),
                    Delivery::Conversation(..) => None,
                })
                .boxed(),
            Err(e) => refusal(e),
        }
    }

    /// Conversations of a workspace the caller owns, created, changed or deleted
    /// from now on (with `after`: since that event, as for `messageAdded`). Ends
    /// with an error when the caller loses access or their token expires.
    async fn conversation_changed(
        &self,
        ctx: &Context<'_>,
        workspace_id: NodeId,
        after: Option<String>,
    ) -> BoxStream<'static, AppResult<ConversationChanged>> {
        let watched = Watched::WorkspaceConversations(workspace_id.0);
        match Watch::start(ctx, watched, after.as_deref()).await {
            Ok(watch) => watch
                .into_stream(|delivery| match delivery {
                    Delivery::Conversation(cursor, change, conversation_id, conversation) => {
                        Some(ConversationChanged {
                            cursor,
                            change,
                            conversation_id,
                            conversation,
                        })
                    }
                    Delivery::Message(..) => None,
                })
                .boxed(),
            Err(e) => refusal(e),
        }
    }
}

/// A subscription refused at its start: its one item is the error.
fn refusal<T: Send + 'static>(error: AppError) -> BoxStream<'static, AppResult<T>> {
    futures_util::stream::once(std::future::ready(Err(error))).boxed()
}

/// What a subscription names.
#[derive(Debug, Clone, Copy)]
enum Watched {
    /// `messageAdded(conversationId)`.
    Conversation(Uuid),
    /// `messageAdded(workspaceId)`.
    WorkspaceMessages(Uuid),
    /// `conversationChanged(workspaceId)`.
    WorkspaceConversations(Uuid),
}

/// What an event turned into for this subscription.
enum Delivery {
    Message(EventCursor, Arc<crate::db::messages::Message>),
    Conversation(
        EventCursor,
        ChangeKind,
        Uuid,
        Option<Arc<crate::db::conversations::Conversation>>,
    ),
}

/// What to do with one event.
enum Verdict {
    Send(Delivery),
    Skip,
    End(AppError),
}

/// One page of missed events.
struct MissedPage {
    events: Vec<Event>,
    /// Where the next page starts, when there may be one.
    next: Option<EventCursor>,
}

/// One subscription: what it watches, its events, and the caller it checks for.
struct Watch {
    watched: Watched,
    topic: Topic,
    request: Arc<RequestContext>,
    scope: Scope,
    subscription: crate::realtime::Subscription,
    resume: Option<EventCursor>,
    expires_at: i64,
}

impl Watch {
    /// Checks the caller may read what `watched` names, and subscribes.
    async fn start(ctx: &Context<'_>, watched: Watched, after: Option<&str>) -> AppResult<Self> {
        let scope = scope(ctx)?.clone();
        let request = shared(ctx);
        let hub = ctx
            .data::<Hub>()
            .map_err(|_| AppError::internal("subscriptions need the hub in the request data"))?;
        let expires_at = scope.expires_at();
        let resume = match after {
            None => None,
            Some(text) => Some(decode_cursor(text).ok_or_else(|| {
                AppError::bad_input("after", "`after` is not a cursor of this API's events")
            })?),
        };
        let topic = request
            .db
            .run(Some(&request.stats), async |conn| {
                let topic = match watched {
                    Watched::Conversation(id) => {
                        let conversation = scope.conversation(conn, id).await?.required()?;
                        Topic::Conversation {
                            workspace_id: conversation.workspace_id,
                            conversation_id: id,
                        }
                    }
                    Watched::WorkspaceMessages(id) => {
                        scope.workspace_reach(conn, id).await?.required()?;
                        Topic::Workspace(id)
                    }
                    Watched::WorkspaceConversations(id) => {
                        scope.workspace(conn, id).await?.required()?;
                        Topic::Workspace(id)
                    }
                };
                if let Some(after) = resume {
                    if after < events::pruned_through(conn).await? {
                        return Err(AppError::CursorExpired(
                            "events after this cursor are no longer kept (EVENT_RETENTION): query the current state, then subscribe without `after`".into(),
                        ));
                    }
                }
                Ok::<_, AppError>(topic)
            })
            .await?;
        if !hub.ready(Duration::from_secs(10)).await {
            return Err(AppError::Unavailable);
        }
        let subscription = hub
            .subscribe(topic, scope.user_id())
            .map_err(|SubscribeError::Full(max)| {
                AppError::LimitExceeded(format!(
                    "this server holds its most subscriptions ({max}, SUBSCRIPTION_MAX_PER_INSTANCE); try again later"
                ))
            })?;
        Ok(Self {
            watched,
            topic,
            request,
            scope,
            subscription,
            resume,
            expires_at,
        })
    }

    /// The subscription's items: missed events first, then live ones, each
    /// checked; `shape` keeps the deliveries of this field.
    fn into_stream<T: Send + 'static>(
        mut self,
        shape: fn(Delivery) -> Option<T>,
    ) -> impl Stream<Item = AppResult<T>> {
        // An idle subscription holds only this stream's state: the checks, whose
        // database futures are large, are boxed for the time they run.
        async_stream::stream! {
            let mut last = self.resume.unwrap_or(self.subscription.from);
            if let Some(after) = self.resume {
                // What was missed: (after, from], then the live events past it.
                let until = self.subscription.from;
                let mut from = after;
                loop {
                    let page = match Box::pin(self.missed(from, until)).await {
                        Ok(page) => page,
                        Err(e) => { yield Err(e); return; }
                    };
                    for event in page.events {
                        last = event.cursor;
                        match Box::pin(self.check(&event)).await {
                            Verdict::Send(delivery) => if let Some(item) = shape(delivery) { yield Ok(item) },
                            Verdict::Skip => {}
                            Verdict::End(e) => { yield Err(e); return; }
                        }
                    }
                    match page.next {
                        Some(next) => from = next,
                        None => break,
                    }
                }
            }
            loop {
                let next = tokio::select! {
                    next = self.subscription.next() => next,
                    () = until_expiry(self.expires_at) => {
                        yield Err(AppError::Unauthenticated("the token has expired".into()));
                        return;
                    }
                };
                let event = match next {
                    Next::Event(event) => event,
                    Next::Lagged => {
                        yield Err(AppError::SlowConsumer(format!(
                            "this subscription fell more than SUBSCRIPTION_BUFFER events behind; subscribe again with `after: \"{}\"`",
                            encode_cursor(last)
                        )));
                        return;
                    }
                };
                if event.cursor <= last {
                    continue; // already sent while resuming
                }
                last = event.cursor;
                match Box::pin(self.check(&event)).await {
                    Verdict::Send(delivery) => if let Some(item) = shape(delivery) { yield Ok(item) },
                    Verdict::Skip => {}
                    Verdict::End(e) => { yield Err(e); return; }
                }
            }
        }
    }

    /// Missed events after `from`, up to `until`, that concern this subscription.
    async fn missed(&self, from: EventCursor, until: EventCursor) -> AppResult<MissedPage> {
        let rows = self
            .request
            .db
            .run(Some(&self.request.stats), async |conn| {
                events::read_missed(
                    conn,
                    from,
                    until,
                    self.topic.workspace_id(),
                    self.scope.user_id(),
                    RESUME_BATCH,
                )
                .await
                .map_err(AppError::from)
            })
            .await?;
        // A full page may have more behind it, even when none of it concerns us.
        let next = rows
            .last()
            .map(events::EventRow::cursor)
            .filter(|_| rows.len() as i64 == RESUME_BATCH);
        let events = rows
            .into_iter()
            .filter_map(events::EventRow::typed)
            .filter(|e| self.topic.concerns(self.scope.user_id(), e))
            .collect();
        Ok(MissedPage { events, next })
    }

    /// The verdict on one event, retrying while the database is unreachable.
    async fn check(&self, event: &Event) -> Verdict {
        let mut wait = Duration::from_millis(100);
        for _ in 0..CHECK_TRIES {
            match self.decide(event).await {
                Err(AppError::Unavailable | AppError::Timeout) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Verdict::End(e),
                Ok(verdict) => return verdict,
            }
        }
        Verdict::End(AppError::Unavailable)
    }

    /// The caller's access to this event, read now through the scope.
    async fn decide(&self, event: &Event) -> AppResult<Verdict> {
        let request = &self.request;
        request
            .db
            .run(Some(&request.stats), async |conn| {
                self.decide_on(conn, event).await
            })
            .await
    }

    async fn decide_on(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        event: &Event,
    ) -> AppResult<Verdict> {
        let scope = &self.scope;
        match (event.kind, self.watched) {
            (EventKind::UserDeactivated, _) => Ok(Verdict::End(AppError::Unauthenticated(
                "this user is deactivated".into(),
            ))),
            // A message: loaded with the rule's verdict, in one statement.
            (
                EventKind::MessageAdded,
                Watched::Conversation(id) | Watched::WorkspaceMessages(id),
            ) => {
                let Some(message_id) = event.message_id else {
                    return Ok(Verdict::Skip);
                };
                match scope.message(conn, message_id).await? {
                    Lookup::Found(row) => Ok(Verdict::Send(Delivery::Message(
                        event.cursor,
                        Arc::new(row),
                    ))),
                    // Refused (or deleted since): does the caller still read the topic?
                    _ => self.still_reads(conn, id).await,
                }
            }
            (EventKind::MessageAdded, Watched::WorkspaceConversations(_)) => Ok(Verdict::Skip),
            (kind, Watched::WorkspaceConversations(workspace_id)) => {
                let change = match kind {
                    EventKind::ConversationCreated => ChangeKind::Created,
                    EventKind::ConversationUpdated => ChangeKind::Updated,
                    EventKind::ConversationDeleted => ChangeKind::Deleted,
                    _ => return self.still_reads(conn, workspace_id).await,
                };
                if let Some(refusal) = scope.workspace(conn, workspace_id).await?.refusal() {
                    return Ok(Verdict::End(refused(refusal)));
                }
                let Some(conversation_id) = event.conversation_id else {
                    return Ok(Verdict::Skip);
                };
                let conversation = match change {
                    ChangeKind::Deleted => None,
                    _ => match scope.conversation(conn, conversation_id).await? {
                        Lookup::Found(row) => Some(Arc::new(row)),
                        // Deleted since: its own event follows.
                        _ => return Ok(Verdict::Skip),
                    },
                };
                Ok(Verdict::Send(Delivery::Conversation(
                    event.cursor,
                    change,
                    conversation_id,
                    conversation,
                )))
            }
            // A change to the conversation or workspace: is it still readable?
            (_, Watched::Conversation(id) | Watched::WorkspaceMessages(id)) => {
                self.still_reads(conn, id).await
            }
        }
    }

    /// Skips the event while the caller may still read what the subscription
    /// names (`id`); ends it with the refusal otherwise.
    async fn still_reads(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        id: Uuid,
    ) -> AppResult<Verdict> {
        let scope = &self.scope;
        let refusal = match self.watched {
            Watched::Conversation(_) => scope.conversation(conn, id).await?.refusal::<()>(),
            Watched::WorkspaceMessages(_) => scope.workspace_reach(conn, id).await?.refusal(),
            Watched::WorkspaceConversations(_) => scope.workspace(conn, id).await?.refusal(),
        };
        Ok(match refusal {
            None => Verdict::Skip,
            Some(refusal) => Verdict::End(refused(refusal)),
        })
    }
}

/// The error of a refused lookup.
fn refused(refusal: Lookup<()>) -> AppError {
    match refusal.required() {
        Err(e) => e,
        Ok(()) => AppError::internal("a refusal that found its row"),
    }
}

/// Resolves when the token expires (never for a token without expiry).
async fn until_expiry(expires_at: i64) {
    let now = chrono::Utc::now().timestamp();
    match u64::try_from(expires_at.saturating_sub(now)) {
        Ok(secs) if secs < 10 * 365 * 24 * 3600 => {
            tokio::time::sleep(Duration::from_secs(secs)).await;
        }
        Ok(_) => std::future::pending().await,
        Err(_) => {} // already expired
    }
}

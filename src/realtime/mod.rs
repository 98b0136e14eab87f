//! Real time: the events of `events` ([`crate::db::events`]) fanned out to the
//! subscriptions of this instance.
//!
//! One [`listener`] per instance holds a `LISTEN` connection outside the pool; a
//! notification only wakes it, and it reads the new events by cursor and hands
//! each to the [`Hub`], which gives it to every subscription it may concern,
//! in order. Each subscription has a bounded buffer: one that falls behind is
//! ended ([`Next::Lagged`]), never allowed to grow the server's memory.
//!
//! The hub decides only *who might care* (by workspace, conversation and user);
//! whether the caller may see an event is decided again, for every event, by the
//! subscription through the scope module ([`crate::graphql::subscription`]).

pub mod listener;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::db::events::{Event, EventCursor, EventKind};

/// What the WebSocket endpoint and the server share about real time.
#[derive(Clone)]
pub struct Realtime {
    /// This instance's subscriptions.
    pub hub: Hub,
    /// Cancelled when the server stops: sockets finish what they hold and close
    /// with 1001.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The open sockets, which the server waits for when it stops.
    pub sockets: tokio_util::task::TaskTracker,
}

impl Realtime {
    /// Real time for `config`, its listener not yet started ([`listener::run`]).
    pub fn new(config: &crate::config::SubscriptionConfig) -> Self {
        Self {
            hub: Hub::new(HubLimits {
                buffer: config.buffer,
                max_subscriptions: config.max_per_instance,
            }),
            shutdown: tokio_util::sync::CancellationToken::new(),
            sockets: tokio_util::task::TaskTracker::new(),
        }
    }
}

/// What a subscription listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// One conversation (in its workspace).
    Conversation {
        /// The conversation's workspace.
        workspace_id: Uuid,
        /// The conversation.
        conversation_id: Uuid,
    },
    /// Every conversation of a workspace.
    Workspace(Uuid),
}

impl Topic {
    /// The workspace.
    pub fn workspace_id(&self) -> Uuid {
        match *self {
            Topic::Conversation { workspace_id, .. } | Topic::Workspace(workspace_id) => {
                workspace_id
            }
        }
    }

    /// Whether `event` may concern a subscription of `user_id` to this topic.
    pub fn concerns(&self, user_id: &str, event: &Event) -> bool {
        match event.kind {
            EventKind::UserDeactivated => event.user_id.as_deref() == Some(user_id),
            EventKind::WorkspaceDeleted => event.workspace_id == Some(self.workspace_id()),
            EventKind::MessageAdded
            | EventKind::ConversationCreated
            | EventKind::ConversationUpdated
            | EventKind::ConversationDeleted => match *self {
                Topic::Conversation {
                    conversation_id, ..
                } => event.conversation_id == Some(conversation_id),
                Topic::Workspace(workspace_id) => event.workspace_id == Some(workspace_id),
            },
        }
    }
}

/// Bounds on subscriptions (`SUBSCRIPTION_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubLimits {
    /// Events buffered per subscription before it is ended as too slow.
    pub buffer: usize,
    /// Subscriptions open on this instance at once.
    pub max_subscriptions: usize,
}

/// The subscriptions of one instance, and where in the event order it is.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    limits: HubLimits,
    state: Mutex<State>,
    open: AtomicUsize,
    connected: watch::Sender<bool>,
    /// Set once the listener has read where the event order stands.
    started: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// The last event handed out (subscriptions made now get everything after it).
    position: EventCursor,
    next_id: u64,
    subscribers: HashMap<u64, Subscriber>,
    by_workspace: HashMap<Uuid, HashSet<u64>>,
    by_conversation: HashMap<Uuid, HashSet<u64>>,
    by_user: HashMap<String, HashSet<u64>>,
}

struct Subscriber {
    topic: Topic,
    user_id: String,
    sender: mpsc::Sender<Arc<Event>>,
}

/// Why a subscription could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    /// This instance holds `SUBSCRIPTION_MAX_PER_INSTANCE` already.
    Full(usize),
}

impl State {
    fn index(&mut self, id: u64, topic: Topic, user_id: &str) {
        match topic {
            Topic::Workspace(workspace_id) => {
                self.by_workspace
                    .entry(workspace_id)
                    .or_default()
                    .insert(id);
            }
            Topic::Conversation {
                conversation_id, ..
            } => {
                self.by_conversation
                    .entry(conversation_id)
                    .or_default()
                    .insert(id);
            }
        }
        self.by_user
            .entry(user_id.to_string())
            .or_default()
            .insert(id);
    }

    fn remove(&mut self, id: u64) -> Option<Subscriber> {
        let gone = self.subscribers.remove(&id)?;
        fn unlink<K: std::hash::Hash + Eq>(map: &mut HashMap<K, HashSet<u64>>, key: &K, id: u64) {
            if let Some(set) = map.get_mut(key) {
                set.remove(&id);
                if set.is_empty() {
                    map.remove(key);
                }
            }
        }
        match gone.topic {
            Topic::Workspace(workspace_id) => unlink(&mut self.by_workspace, &workspace_id, id),
            Topic::Conversation {
                conversation_id, ..
            } => unlink(&mut self.by_conversation, &conversation_id, id),
        }
        unlink(&mut self.by_user, &gone.user_id, id);
        Some(gone)
    }

    /// The subscriptions an event may concern (a superset; [`Topic::concerns`] decides).
    fn candidates(&self, event: &Event) -> Vec<u64> {
        let mut out = Vec::new();
        let mut add = |set: Option<&HashSet<u64>>| out.extend(set.into_iter().flatten().copied());
        match event.kind {
            EventKind::UserDeactivated => {
                add(event.user_id.as_ref().and_then(|u| self.by_user.get(u)));
            }
            _ => {
                add(event.workspace_id.and_then(|w| self.by_workspace.get(&w)));
                add(event
                    .conversation_id
                    .and_then(|c| self.by_conversation.get(&c)));
            }
        }
        out
    }
}

impl Hub {
    /// An empty hub, at the start of the event order (the listener moves it to the
    /// newest event before anyone subscribes).
    pub fn new(limits: HubLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                limits,
                state: Mutex::new(State::default()),
                open: AtomicUsize::new(0),
                connected: watch::Sender::new(false),
                started: watch::Sender::new(false),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last event handed out.
    pub fn position(&self) -> EventCursor {
        self.state().position
    }

    /// Subscriptions open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Whether the listener is connected (and so events flow).
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.inner.connected.subscribe()
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.inner.connected.send_replace(up);
    }

    /// Starts the order at `cursor` (the listener, before the first read), or
    /// moves past events no subscription takes.
    pub(crate) fn start_at(&self, cursor: EventCursor) {
        let mut state = self.state();
        if cursor > state.position {
            state.position = cursor;
        }
        drop(state);
        self.inner.started.send_replace(true);
    }

    /// Waits (at most `wait`) until the listener knows where the event order
    /// stands; whether it does. Before that a subscription could not say which
    /// events are new.
    pub async fn ready(&self, wait: std::time::Duration) -> bool {
        let mut started = self.inner.started.subscribe();
        tokio::time::timeout(wait, started.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Subscribes `user_id` to `topic`: every event after [`Subscription::from`]
    /// that may concern it arrives, in order.
    pub fn subscribe(&self, topic: Topic, user_id: &str) -> Result<Subscription, SubscribeError> {
        let max = self.inner.limits.max_subscriptions;
        if self
            .inner
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(SubscribeError::Full(max));
        }
        let (sender, receiver) = mpsc::channel(self.inner.limits.buffer.max(1));
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.index(id, topic, user_id);
        state.subscribers.insert(
            id,
            Subscriber {
                topic,
                user_id: user_id.to_string(),
                sender,
            },
        );
        metrics::gauge!(crate::metrics::SUBSCRIPTIONS_OPEN).increment(1.0);
        Ok(Subscription {
            id,
            from: state.position,
            receiver,
            hub: self.clone(),
        })
    }

    /// Hands `events` (in order, after [`Hub::position`]) to the subscriptions
    /// they may concern. A subscription whose buffer is full is ended as lagged.
    pub fn publish(&self, events: &[Arc<Event>]) {
        let mut state = self.state();
        let mut lagged = Vec::new();
        for event in events {
            if event.cursor <= state.position {
                continue; // read twice around a reconnect
            }
            for id in state.candidates(event) {
                let Some(subscriber) = state.subscribers.get(&id) else {
                    continue;
                };
                if !subscriber.topic.concerns(&subscriber.user_id, event) {
                    continue;
                }
                if subscriber.sender.try_send(event.clone()).is_err() {
                    lagged.push(id);
                }
            }
            for id in lagged.drain(..) {
                // Dropping the sender ends the stream once its buffer is read.
                if state.remove(id).is_some() {
                    metrics::counter!(crate::metrics::SUBSCRIPTIONS_LAGGED).increment(1);
                }
            }
            state.position = event.cursor;
        }
    }

    fn unsubscribe(&self, id: u64) {
        self.state().remove(id);
        self.inner.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(crate::metrics::SUBSCRIPTIONS_OPEN).decrement(1.0);
    }
}

/// One subscription's events; unsubscribes when dropped.
pub struct Subscription {
    id: u64,
    /// Events after this cursor arrive here; those up to it were handed out before.
    pub from: EventCursor,
    receiver: mpsc::Receiver<Arc<Event>>,
    hub: Hub,
}

/// What [`Subscription::next`] gives.
#[derive(Debug)]
pub enum Next {
    /// The next event.
    Event(Arc<Event>),
    /// The subscription fell more than its buffer behind and was ended.
    Lagged,
}

impl Subscription {
    /// The next event, or why there is none.
    pub async fn next(&mut self) -> Next {
        match self.receiver.recv().await {
            Some(event) => Next::Event(event),
            // The hub drops a sender only when its buffer was full.
            None => Next::Lagged,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

/// A resume cursor as clients see it: opaque text.
pub fn encode_cursor(cursor: EventCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("ev:{}:{}", cursor.txid, cursor.id))
}

/// A resume cursor from its text; `None` when it is not one of ours.
pub fn decode_cursor(text: &str) -> Option<EventCursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let mut parts = text.strip_prefix("ev:")?.split(':');
    let txid = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(EventCursor { txid, id })
}

#[cfg(test)]
mod tests;

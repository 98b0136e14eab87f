//! Batching by structure: every key a query level asks for is loaded in one
//! batch, whatever the scheduler does.
//!
//! async-graphql resolves the objects of a list, and the fields of an object, as
//! futures polled together in one task. When a level's resolvers ask for keys they
//! do so in the same poll, and then wait. [`Batcher::run`] drives the request's
//! future and starts the loads only once a poll has ended with nothing left to do
//! but wait (not on a timer, as async-graphql's `DataLoader` does): every key of
//! the level is queued by then. The loads run inside the same task, and a finished
//! batch hands every waiting resolver its value before the request is polled again,
//! so the next level's keys are queued together as well.
//!
//! A poll that ends because the request chose to pause (a CPU-budget
//! [`checkpoint`](crate::graphql::budget::checkpoint), or a `FuturesUnordered`
//! that yields with children still ready) wakes its own task, and is not the end
//! of a level: the keys wait for a poll that ends without such a wake.
//!
//! A value is kept only until the resolvers that asked for it have it: a mutation
//! that changes a row and then reads it is not answered from an earlier read.

use std::any::{Any, TypeId};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use async_graphql::dataloader::Loader;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::error::AppError;

/// What a load answers: the value, `None` when the batch had nothing for the key.
pub type Loaded<V> = Result<Option<V>, Arc<AppError>>;

/// The keys of one request, queued per key type, and the loads that answer them.
pub struct Batcher<L> {
    loader: Arc<L>,
    queues: Mutex<Vec<Registered<L>>>,
    driven: AtomicUsize,
}

/// A key type's queue, typed (to queue a key) and erased (to start its batch).
struct Registered<L> {
    key: TypeId,
    typed: Arc<dyn Any + Send + Sync>,
    erased: Arc<dyn Dispatch<L>>,
}

impl<L: Send + Sync + 'static> Batcher<L> {
    /// A batcher whose batches `loader` answers.
    pub fn new(loader: L) -> Self {
        Self {
            loader: Arc::new(loader),
            queues: Mutex::new(Vec::new()),
            driven: AtomicUsize::new(0),
        }
    }

    /// Loads `key` with every other key its query level asks for.
    pub fn load<K>(&self, key: K) -> LoadOne<K, L::Value>
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        L: Loader<K, Error = Arc<AppError>>,
    {
        let queue = self.queue::<K>();
        queue.ask(&key);
        let load = LoadOne {
            queue,
            key,
            answered: false,
        };
        if self.driven.load(Ordering::Acquire) == 0 {
            // Nothing drives this batcher (a caller outside `run`): load at once,
            // so the key is never left waiting.
            if let Some(batch) = load.queue.clone().take(self.loader.clone()) {
                tokio::spawn(batch);
            }
        }
        load
    }

    /// Drives `work` (a request's execution), starting the queued batches each time
    /// it stalls on them; returns its output.
    pub async fn run<F: Future>(&self, work: F) -> F::Output {
        self.driven.fetch_add(1, Ordering::AcqRel);
        let _driving = Driving(&self.driven);
        let mut work = pin!(work);
        let mut batches = FuturesUnordered::new();
        // The request is polled with a waker that tells whether it woke itself
        // during the poll: futures-util's `FuturesUnordered` (async-graphql's fields
        // and lists) yields that way after a few children, with others still
        // ready, and so does a budget checkpoint.
        let signal = Arc::new(Signal::default());
        let waker = Waker::from(signal.clone());
        std::future::poll_fn(move |cx| loop {
            signal.follow(cx.waker());
            signal.woken.store(false, Ordering::Release);
            if let Poll::Ready(output) = work.as_mut().poll(&mut Context::from_waker(&waker)) {
                return Poll::Ready(output);
            }
            // A request that woke itself paused (a budget checkpoint, a set of
            // futures yielding); one that did not can only be waiting on data.
            if !signal.woken.load(Ordering::Acquire) {
                batches.extend(self.take_batches());
            }
            let mut answered = false;
            while let Poll::Ready(Some(())) = batches.poll_next_unpin(cx) {
                answered = true;
            }
            if !answered {
                return Poll::Pending;
            }
        })
        .await
    }

    fn take_batches(&self) -> Vec<BoxFuture<'static, ()>> {
        let queues: Vec<Arc<dyn Dispatch<L>>> = lock(&self.queues)
            .iter()
            .map(|q| q.erased.clone())
            .collect();
        queues
            .into_iter()
            .filter_map(|q| q.take(self.loader.clone()))
            .collect()
    }

    fn queue<K>(&self) -> Arc<Queue<K, L::Value>>
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        L: Loader<K, Error = Arc<AppError>>,
    {
        let mut queues = lock(&self.queues);
        let found = queues.iter().find(|q| q.key == TypeId::of::<K>());
        if let Some(found) = found {
            if let Ok(queue) = found.typed.clone().downcast::<Queue<K, L::Value>>() {
                return queue;
            }
        }
        let queue = Arc::new(Queue::<K, L::Value>::default());
        queues.push(Registered {
            key: TypeId::of::<K>(),
            typed: queue.clone(),
            erased: queue.clone(),
        });
        queue
    }
}

/// The waker the request is polled with: it notes a wake, and passes it on to the
/// task's own waker.
#[derive(Default)]
struct Signal {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Signal {
    fn follow(&self, task: &Waker) {
        let mut current = lock(&self.task);
        if !current.as_ref().is_some_and(|w| w.will_wake(task)) {
            *current = Some(task.clone());
        }
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = lock(&self.task).as_ref() {
            task.wake_by_ref();
        }
    }
}

/// Marks the end of a [`Batcher::run`], however it ends.
struct Driving<'a>(&'a AtomicUsize);

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent at every step, so a panic elsewhere does not spoil it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One key type's keys: those not yet loaded, and the answers not yet taken.
struct Queue<K, V> {
    state: Mutex<QueueState<K, V>>,
}

struct QueueState<K, V> {
    queued: Vec<K>,
    slots: HashMap<K, Slot<V>>,
}

impl<K, V> Default for Queue<K, V> {
    fn default() -> Self {
        Self {
            state: Mutex::new(QueueState {
                queued: Vec::new(),
                slots: HashMap::new(),
            }),
        }
    }
}

/// A key's answer and who waits for it.
struct Slot<V> {
    answer: Option<Loaded<V>>,
    waiting: usize,
    wakers: Vec<Waker>,
}

impl<K: Hash + Eq + Clone, V: Clone> Queue<K, V> {
    /// Registers one more resolver waiting for `key`, queuing it if it is new.
    fn ask(&self, key: &K) {
        let mut state = lock(&self.state);
        match state.slots.entry(key.clone()) {
            Entry::Occupied(mut slot) => slot.get_mut().waiting += 1,
            Entry::Vacant(slot) => {
                slot.insert(Slot {
                    answer: None,
                    waiting: 1,
                    wakers: Vec::new(),
                });
                state.queued.push(key.clone());
            }
        }
    }

    /// The answer for one waiting resolver, or `None` (and `waker` is woken later).
    fn answer(&self, key: &K, waker: &Waker) -> Option<Loaded<V>> {
        let mut state = lock(&self.state);
        let slot = state.slots.get_mut(key)?;
        match &slot.answer {
            Some(answer) => {
                let answer = answer.clone();
                slot.waiting -= 1;
                if slot.waiting == 0 {
                    state.slots.remove(key);
                }
                Some(answer)
            }
            None => {
                if !slot.wakers.iter().any(|w| w.will_wake(waker)) {
                    slot.wakers.push(waker.clone());
                }
                None
            }
        }
    }

    /// One waiting resolver gave up (its future was dropped unanswered).
    fn leave(&self, key: &K) {
        let mut state = lock(&self.state);
        if let Some(slot) = state.slots.get_mut(key) {
            slot.waiting -= 1;
            if slot.waiting == 0 && slot.answer.is_some() {
                state.slots.remove(key);
            }
        }
    }

    /// Stores a batch's answers and wakes the resolvers waiting for them.
    fn settle(&self, keys: Vec<K>, mut found: Result<HashMap<K, V>, Arc<AppError>>) {
        let mut wakers = Vec::new();
        {
            let mut state = lock(&self.state);
            for key in keys {
                let Entry::Occupied(mut slot) = state.slots.entry(key) else {
                    continue;
                };
                if slot.get().waiting == 0 {
                    slot.remove();
                    continue;
                }
                let answer = match &mut found {
                    Ok(values) => Ok(values.remove(slot.key())),
                    Err(e) => Err(e.clone()),
                };
                let slot = slot.get_mut();
                slot.answer = Some(answer);
                wakers.append(&mut slot.wakers);
            }
        }
        for waker in wakers {
            waker.wake();
        }
    }
}

/// Starts a queue's batch, whatever its key type.
trait Dispatch<L>: Send + Sync {
    /// The load of every queued key, or `None` when none is queued.
    fn take(self: Arc<Self>, loader: Arc<L>) -> Option<BoxFuture<'static, ()>>;
}

impl<K, L> Dispatch<L> for Queue<K, L::Value>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    L: Loader<K, Error = Arc<AppError>>,
{
    fn take(self: Arc<Self>, loader: Arc<L>) -> Option<BoxFuture<'static, ()>> {
        let keys = std::mem::take(&mut lock(&self.state).queued);
        if keys.is_empty() {
            return None;
        }
        Some(Box::pin(async move {
            let found = loader.load(&keys).await;
            self.settle(keys, found);
        }))
    }
}

/// A resolver's wait for one key.
pub struct LoadOne<K: Hash + Eq + Clone, V: Clone> {
    queue: Arc<Queue<K, V>>,
    key: K,
    answered: bool,
}

impl<K: Hash + Eq + Clone + Unpin, V: Clone> Future for LoadOne<K, V> {
    type Output = Loaded<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Loaded<V>> {
        let this = self.get_mut();
        match this.queue.answer(&this.key, cx.waker()) {
            Some(answer) => {
                this.answered = true;
                Poll::Ready(answer)
            }
            None => Poll::Pending,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for LoadOne<K, V> {
    fn drop(&mut self) {
        if !self.answered {
            self.queue.leave(&self.key);
        }
    }
}

#[cfg(test)]
mod tests;

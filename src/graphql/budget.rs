//! A CPU budget per request: the last line of defence against documents that the
//! query limits do not foresee.
//!
//! The limits bound what a document may ask before it runs (`limits.rs`); this
//! bounds what it actually costs. [`within`] measures the CPU time of the thread
//! while it polls the request's future, and only then (time spent waiting on
//! PostgreSQL, or on other requests sharing the thread, is not counted); for the
//! first [`PRECISE_AFTER`] of polling, the polls' wall time stands in for it. Once the
//! total passes the budget the future is dropped, which cancels its statements,
//! and the client gets `TIMEOUT` with `extensions.limit = "cpu"`.
//!
//! A future can only be stopped where it suspends. Execution suspends while
//! loaders wait on the database, but resolving loaded objects is synchronous
//! work that may never suspend, and complexity does not count `__typename`, so
//! `messages(first: 100) { nodes { ...F } }` with a fragment that expands to
//! thousands of `__typename` would run to its end. Every object in a list
//! therefore goes through [`Checked`], whose [`checkpoint`] suspends once the
//! running poll has used up what is left of the budget, or has run for a
//! [`TIME_SLICE`] (so a long request shares its worker thread with the others).
//! Parsing and validation are synchronous too; the limits keep each of them
//! linear in the document.

use std::borrow::Cow;
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, OutputType, Positioned, ServerResult, Value};

/// The request spent more CPU than its budget and was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    /// CPU spent when it was stopped (at least the budget).
    pub spent: Duration,
}

/// CPU spent by the work [`metered`] runs (for the log and `extensions.cost`).
#[derive(Debug, Default)]
pub struct CpuMeter(AtomicU64);

impl CpuMeter {
    /// CPU spent so far.
    pub fn spent(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    fn add(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
}

thread_local! {
    /// While [`within`] polls its work on this thread: when the poll started and
    /// how much of the budget was left then. Read by [`checkpoint`].
    static POLL: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// Runs `work` while it stays within `budget` of CPU time. The work that
/// completes in the poll that crosses the budget is still returned: it is done,
/// and dropping it would waste it.
pub async fn within<F: Future>(budget: Duration, work: F) -> Result<F::Output, OverBudget> {
    let mut work = pin!(work);
    let mut spent = Duration::ZERO;
    let mut cost = PollCost::default();
    std::future::poll_fn(move |cx| {
        let left = budget.saturating_sub(spent);
        let outer = POLL.replace(Some((Instant::now(), left)));
        let (poll, cpu) = cost.measure(|| work.as_mut().poll(cx));
        spent += cpu;
        POLL.set(outer);
        match poll {
            Poll::Ready(output) => Poll::Ready(Ok(output)),
            Poll::Pending if spent > budget => Poll::Ready(Err(OverBudget { spent })),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Runs `work`, adding the CPU time of its polls to `meter`.
pub async fn metered<F: Future>(meter: &CpuMeter, work: F) -> F::Output {
    let mut work = pin!(work);
    let mut cost = PollCost::default();
    std::future::poll_fn(move |cx| {
        let (poll, cpu) = cost.measure(|| work.as_mut().poll(cx));
        meter.add(cpu);
        poll
    })
    .await
}

/// Wall time of its polls after which a piece of work's CPU time is read from the
/// thread's CPU clock. Before it, a poll's wall time stands in for its CPU time
/// (an upper bound: a poll runs on one thread from start to end): reading the CPU
/// clock is a system call, twice per poll, and it cost 5 % of the server's CPU on
/// point reads, whose polls all end well within this. At most this much of a
/// budget can be time the thread was preempted rather than running.
pub const PRECISE_AFTER: Duration = Duration::from_millis(1);

/// The cost of each poll of one piece of work (see [`PRECISE_AFTER`]).
#[derive(Debug, Default)]
struct PollCost {
    /// Wall time of the polls measured by the monotonic clock so far.
    wall: Duration,
}

impl PollCost {
    /// Runs one poll; returns its result and its CPU time (or its wall time while
    /// the work's polls have run for less than [`PRECISE_AFTER`] in all).
    fn measure<R>(&mut self, poll: impl FnOnce() -> R) -> (R, Duration) {
        if self.wall < PRECISE_AFTER {
            let start = Instant::now();
            let output = poll();
            let spent = start.elapsed();
            self.wall += spent;
            (output, spent)
        } else {
            let start = thread_cpu_time();
            let output = poll();
            (output, thread_cpu_time().saturating_sub(start))
        }
    }
}

/// Longest a poll under [`within`] runs before a [`checkpoint`] lets the
/// runtime's other tasks run. A worker busy with one long poll also holds the
/// tasks queued behind it (tokio's LIFO slot is not stolen by the other
/// workers): with the budget alone, `/health` waited up to the whole budget
/// behind a stopped request (`bench/RESULTS.md`).
pub const TIME_SLICE: Duration = Duration::from_millis(2);

/// Suspends while the poll running on this thread (under [`within`]) has used
/// what was left of its budget, so that [`within`] can stop the work, or has run
/// for a [`TIME_SLICE`]; otherwise (and outside [`within`]) returns at once.
/// Costs one clock read (the monotonic clock, read without a system call): the
/// poll's wall time stands in for its CPU time here, and [`within`] decides on
/// the CPU time itself.
pub async fn checkpoint() {
    // Asked again after each suspension: all the objects of a list reach their
    // checkpoint in the same poll, and each must wait for a poll with time left,
    // not merely for the next one (which they would all then fill).
    while POLL
        .get()
        .is_some_and(|(started, left)| started.elapsed() >= left.min(TIME_SLICE))
    {
        SUSPENSIONS.set(SUSPENSIONS.get().wrapping_add(1));
        yield_once().await;
    }
}

/// Suspends once and wakes at once. tokio puts a task that woke itself while
/// running at the back of its queue, as `tokio::task::yield_now` does; unlike
/// `yield_now`, whose wake comes only after the poll, the wake is seen within the
/// poll, so [`crate::graphql::batcher::Batcher::run`] knows the request paused and
/// is not waiting on data.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

thread_local! {
    /// How many times a [`checkpoint`] suspended on this thread.
    static SUSPENSIONS: Cell<u64> = const { Cell::new(0) };
}

/// How many times a [`checkpoint`] suspended on this thread (tests read it).
pub fn suspensions() -> u64 {
    SUSPENSIONS.get()
}

/// An object in a list, resolved after a [`checkpoint`]: lists are where the
/// work of one response multiplies. The schema sees `T`.
pub struct Checked<T>(pub T);

impl<T: OutputType> OutputType for Checked<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        self.0.introspection_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        checkpoint().await;
        self.0.resolve(ctx, field).await
    }
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`): a poll runs
/// on one thread from start to end, so the difference around it is its cost.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant the
    // kernel supports on every Linux (and macOS ≥ 10.12). On failure `now` stays
    // zero and the budget sees no cost, which fails open, never spuriously.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burns about `ms` of CPU, then passes a checkpoint, `rounds` times: like a
    /// list of objects whose resolution never suspends.
    async fn busy(rounds: u32, ms: u64) -> u32 {
        for _ in 0..rounds {
            let start = thread_cpu_time();
            while thread_cpu_time() - start < Duration::from_millis(ms) {
                std::hint::spin_loop();
            }
            checkpoint().await;
        }
        rounds
    }

    #[tokio::test]
    async fn work_within_its_budget_completes() {
        assert_eq!(within(Duration::from_secs(5), busy(3, 2)).await, Ok(3));
    }

    #[tokio::test]
    async fn metered_work_adds_its_cpu_time() {
        let meter = CpuMeter::default();
        assert_eq!(metered(&meter, busy(3, 2)).await, 3);
        assert!(meter.spent() >= Duration::from_millis(6), "{meter:?}");
        assert!(meter.spent() < Duration::from_millis(100), "{meter:?}");
    }

    #[tokio::test]
    async fn work_over_its_budget_is_stopped_at_its_next_checkpoint() {
        let stopped = within(Duration::from_millis(20), busy(1000, 2))
            .await
            .unwrap_err();
        assert!(stopped.spent >= Duration::from_millis(20));
        assert!(stopped.spent < Duration::from_millis(200), "{stopped:?}");
    }

    #[tokio::test]
    async fn waiting_is_not_spending() {
        let sleeper = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            7
        };
        assert_eq!(within(Duration::from_millis(20), sleeper).await, Ok(7));
    }

    #[tokio::test]
    async fn long_work_yields_to_other_tasks_every_time_slice() {
        // One worker thread: the ticker runs only when the busy work yields.
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        };
        tokio::task::yield_now().await; // let the ticker start
        let before = ticks.load(Ordering::Relaxed);
        assert_eq!(within(Duration::from_secs(5), busy(20, 1)).await, Ok(20));
        ticker.abort();
        let ran = ticks.load(Ordering::Relaxed) - before;
        assert!(
            ran >= 5,
            "the other task ran {ran} times in 20 ms of busy work"
        );
    }

    #[tokio::test]
    async fn a_checkpoint_outside_a_budget_does_not_suspend() {
        // No `within` around it: it must not yield (a yield would be a wasted poll).
        let ready = std::pin::pin!(checkpoint());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(ready.poll(&mut cx).is_ready());
    }

    #[test]
    fn a_poll_is_timed_by_the_wall_clock_until_the_work_has_run_for_a_millisecond() {
        let mut cost = PollCost::default();
        // Asleep, not running: the wall clock counts it, the CPU clock would not.
        let ((), first) = cost.measure(|| std::thread::sleep(PRECISE_AFTER));
        assert!(first >= PRECISE_AFTER, "{first:?}");
        let ((), second) = cost.measure(|| std::thread::sleep(Duration::from_millis(20)));
        assert!(second < Duration::from_millis(5), "{second:?}");
    }

    #[test]
    fn the_thread_clock_advances_with_work() {
        let start = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(thread_cpu_time() > start, "{x}");
    }
}

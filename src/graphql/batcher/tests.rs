use super::*;
use std::sync::atomic::AtomicUsize;

/// Squares numbers, counting its batches and refusing 13.
#[derive(Default)]
struct Squares {
    batches: Mutex<Vec<Vec<u32>>>,
}

impl Loader<u32> for Squares {
    type Value = u64;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[u32]) -> Result<HashMap<u32, u64>, Self::Error> {
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        lock(&self.batches).push(sorted);
        tokio::task::yield_now().await;
        if keys.contains(&13) {
            return Err(Arc::new(AppError::Timeout));
        }
        Ok(keys
            .iter()
            .filter(|k| **k != 0)
            .map(|k| (*k, u64::from(*k) * u64::from(*k)))
            .collect())
    }
}

fn batches(batcher: &Batcher<Squares>) -> Vec<Vec<u32>> {
    lock(&batcher.loader.batches).clone()
}

/// Ten parents, each loading its own key and then a child key: two levels.
async fn two_levels(batcher: &Batcher<Squares>, before_each: impl Fn() -> BoxFuture<'static, ()>) {
    let parents = (1..=10u32).map(|n| {
        let pause = before_each();
        async move {
            pause.await;
            let square = batcher.load(n).await.unwrap().unwrap();
            let child = batcher.load(n + 100).await.unwrap().unwrap();
            assert_eq!(
                (square, child),
                (u64::from(n * n), u64::from((n + 100) * (n + 100)))
            );
        }
    });
    futures_util::future::join_all(parents).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_level_is_one_batch_on_a_busy_runtime() {
    // Other tasks keep both workers busy while the request runs.
    let busy: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async {
                for _ in 0..2_000 {
                    std::hint::black_box((0..2_000u64).sum::<u64>());
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let batcher = Batcher::new(Squares::default());
    batcher
        .run(two_levels(&batcher, || Box::pin(std::future::ready(()))))
        .await;
    for task in busy {
        task.abort();
    }
    let seen = batches(&batcher);
    assert_eq!(
        seen,
        vec![(1..=10).collect::<Vec<_>>(), (101..=110).collect()]
    );
}

#[tokio::test]
async fn a_budget_checkpoint_does_not_split_a_level() {
    // Each parent computes for a while first, so the poll passes its time
    // slice and the later parents suspend at their checkpoint before loading.
    let batcher = Batcher::new(Squares::default());
    let spin = || -> BoxFuture<'static, ()> {
        Box::pin(async {
            let start = std::time::Instant::now();
            while start.elapsed() < crate::graphql::budget::TIME_SLICE / 2 {
                std::hint::black_box(0);
            }
            crate::graphql::budget::checkpoint().await;
        })
    };
    let suspended = crate::graphql::budget::suspensions();
    crate::graphql::budget::within(
        std::time::Duration::from_secs(60),
        batcher.run(two_levels(&batcher, spin)),
    )
    .await
    .unwrap();
    assert!(
        crate::graphql::budget::suspensions() > suspended,
        "no checkpoint suspended"
    );
    let seen = batches(&batcher);
    assert_eq!(
        seen,
        vec![(1..=10).collect::<Vec<_>>(), (101..=110).collect()]
    );
}

#[tokio::test]
async fn a_futures_unordered_that_yields_early_does_not_split_a_level() {
    // async-graphql's shape: a set of objects, each a set of fields. An object
    // whose fields all wait wakes itself, and a set with two such children
    // yields before polling the rest.
    let batcher = Batcher::new(Squares::default());
    let object = |n: u32| {
        let batcher = &batcher;
        async move {
            for level in [200, 300] {
                let mut fields: FuturesUnordered<_> =
                    (0..3).map(|f| batcher.load(level + n * 3 + f)).collect();
                while let Some(value) = fields.next().await {
                    value.unwrap();
                }
            }
        }
    };
    batcher
        .run(async {
            let mut objects: FuturesUnordered<_> = (1..=10).map(object).collect();
            while objects.next().await.is_some() {}
        })
        .await;
    let seen = batches(&batcher);
    assert_eq!(
        seen,
        vec![(203..233).collect::<Vec<_>>(), (303..333).collect()]
    );
}

#[tokio::test]
async fn a_key_asked_twice_is_loaded_once_and_answers_both() {
    let batcher = Batcher::new(Squares::default());
    let (a, b) = batcher
        .run(async { futures_util::join!(batcher.load(7), batcher.load(7)) })
        .await;
    assert_eq!((a.unwrap(), b.unwrap()), (Some(49), Some(49)));
    assert_eq!(batches(&batcher), vec![vec![7]]);
    // Answered values are not kept: a later read loads again (after a write).
    let again = batcher.run(batcher.load(7)).await.unwrap();
    assert_eq!(again, Some(49));
    assert_eq!(batches(&batcher).len(), 2);
}

#[tokio::test]
async fn missing_keys_answer_none_and_errors_reach_every_key_of_the_batch() {
    let batcher = Batcher::new(Squares::default());
    let (zero, thirteen, two) = batcher
        .run(async { futures_util::join!(batcher.load(0), batcher.load(13), batcher.load(2)) })
        .await;
    assert_eq!(zero.unwrap_err().code(), "TIMEOUT");
    assert_eq!(thirteen.unwrap_err().code(), "TIMEOUT");
    assert_eq!(two.unwrap_err().code(), "TIMEOUT");
    assert_eq!(batcher.run(batcher.load(0)).await.unwrap(), None);
}

#[tokio::test]
async fn a_load_outside_run_still_completes() {
    let batcher = Batcher::new(Squares::default());
    assert_eq!(batcher.load(3).await.unwrap(), Some(9));
}

#[tokio::test]
async fn a_dropped_wait_leaves_nothing_behind() {
    let batcher = Batcher::new(Squares::default());
    let polled = AtomicUsize::new(0);
    batcher
        .run(async {
            let mut load = Box::pin(batcher.load(5));
            std::future::poll_fn(|cx| {
                polled.fetch_add(1, Ordering::Relaxed);
                let _ = load.as_mut().poll(cx);
                Poll::Ready(())
            })
            .await;
            drop(load);
            // The batch still runs; its answer has no one to go to.
            batcher.load(6).await.unwrap()
        })
        .await;
    let queue = batcher.queue::<u32>();
    assert!(lock(&queue.state).slots.is_empty());
    assert_eq!(polled.load(Ordering::Relaxed), 1);
}

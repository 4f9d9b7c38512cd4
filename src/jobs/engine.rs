//! What the job actors share of the instance's one consumer
//! ([`Streams`]): the consumer itself once the group is joined, the budget of
//! batches in memory, one lookup of positions for all the jobs whose streams
//! went idle, one sweep of the lag of every running job, and the wakers of
//! the streams asleep (their partitions paused while idle). Nothing here
//! runs per job on a timer: an idle instance with thousands of jobs makes a
//! ListOffsets request every [`LAG_EVERY`] and fetches nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify, Semaphore};

use crate::kafka::{Cluster, Streams};
use crate::telemetry::metrics;

/// How often the lag gauges of all running jobs are refreshed (one request).
const LAG_EVERY: Duration = Duration::from_secs(5);
/// Streams asleep are looked at every this many sweeps only: their lag
/// does not change until written to, and a write through any instance
/// wakes them at once; the sweep only catches what no instance announced
/// (another producer, a lost notification). Thousands of them asked for
/// every 5 s would be most of an idle instance's work.
const ASLEEP_EVERY_SWEEPS: u32 = 6;
/// How long position lookups are gathered before one answers them all: a
/// drained stream's last batch waits this long (`position()` is local, but
/// looks at every assigned partition).
const POSITIONS_GATHER: Duration = Duration::from_millis(20);

/// A topic's partition.
pub type Partition = (String, i32);

/// The jobs' shared engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    streams: watch::Sender<Option<Streams>>,
    cluster: Cluster,
    budget: Arc<Semaphore>,
    asks: Mutex<Vec<(Partition, oneshot::Sender<Option<i64>>)>>,
    /// Its own allocation, so the answering task can wait on it without
    /// keeping the engine alive.
    asked: Arc<Notify>,
    lags: Mutex<HashMap<String, Lag>>,
    /// Per topic, what wakes its readers while their partitions sleep.
    sleepers: Mutex<HashMap<String, Arc<Notify>>>,
    /// The topics whose readers sleep now, with how many of them do.
    asleep: Mutex<HashMap<String, usize>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Told which import a job just folded statements of (set once, at
    /// start: the insights keep their working set current with it).
    folded: std::sync::OnceLock<Box<dyn Fn(i64) + Send + Sync>>,
}

/// What the lag sweep knows of one running job.
#[derive(Default)]
struct Lag {
    /// The stored next offset per partition (absent: nothing stored yet).
    next: HashMap<Partition, Option<i64>>,
    /// What the gauge shows.
    shown: Option<i64>,
}

impl Engine {
    /// An engine whose jobs keep at most `batches` batches in memory at once
    /// (read, waiting, or being written); starts its sweeps, which look the
    /// ends of the streams up through `cluster`.
    pub fn start(batches: usize, cluster: Cluster) -> Self {
        let (streams, _) = watch::channel(None);
        let engine = Self {
            inner: Arc::new(Inner {
                streams,
                cluster,
                budget: Arc::new(Semaphore::new(batches.max(1))),
                asks: Mutex::default(),
                asked: Arc::new(Notify::new()),
                lags: Mutex::default(),
                sleepers: Mutex::default(),
                asleep: Mutex::default(),
                tasks: Mutex::default(),
                folded: std::sync::OnceLock::new(),
            }),
        };
        let tasks = vec![
            tokio::spawn(answer_positions(
                engine.downgrade(),
                Arc::clone(&engine.inner.asked),
            )),
            tokio::spawn(sweep_lags(engine.downgrade())),
        ];
        if let Ok(mut slot) = engine.inner.tasks.lock() {
            *slot = tasks;
        }
        engine
    }

    fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// The consumer, once the group is joined.
    pub fn joined(&self, streams: Streams) {
        self.inner.streams.send_replace(Some(streams));
    }

    /// Takes the consumer out (to leave the group) and stops the sweeps.
    pub fn take_streams(&self) -> Option<Streams> {
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
        self.inner.streams.send_replace(None)
    }

    pub fn try_streams(&self) -> Option<Streams> {
        self.inner.streams.borrow().clone()
    }

    /// The consumer, waiting for the group join if need be.
    pub async fn streams(&self) -> Streams {
        let mut joined = self.inner.streams.subscribe();
        loop {
            if let Some(streams) = joined.borrow_and_update().clone() {
                return streams;
            }
            if joined.changed().await.is_err() {
                // The engine is gone: nobody will join any more.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Sets what hears of every fold (once; later calls are ignored).
    pub fn on_folded(&self, hook: impl Fn(i64) + Send + Sync + 'static) {
        let _ = self.inner.folded.set(Box::new(hook));
    }

    /// A job folded statements of `import_id` into the counts and segments.
    pub fn folded(&self, import_id: i64) {
        if let Some(hook) = self.inner.folded.get() {
            hook(import_id);
        }
    }

    /// The budget of batches in memory, shared by every job of the instance:
    /// a reader takes a permit before it reads a batch, and the permit goes
    /// with the batch until it is written (or dropped).
    pub fn budget(&self) -> Arc<Semaphore> {
        Arc::clone(&self.inner.budget)
    }

    /// `partition`'s position (see [`Streams::positions`]), looked up with
    /// those of every other partition asked for within [`POSITIONS_GATHER`].
    pub async fn position(&self, partition: Partition) -> Option<i64> {
        let (answer, answered) = oneshot::channel();
        self.inner.asks.lock().ok()?.push((partition, answer));
        self.inner.asked.notify_one();
        answered.await.ok().flatten()
    }

    /// `job` runs, reading `partitions` from these stored next offsets: its
    /// lag is swept from now on.
    pub fn track(&self, job: &str, partitions: HashMap<Partition, Option<i64>>) {
        if let Ok(mut lags) = self.inner.lags.lock() {
            lags.insert(
                job.to_owned(),
                Lag {
                    next: partitions,
                    shown: None,
                },
            );
        }
    }

    /// `job` stored its next offset of `partition`.
    pub fn stored(&self, job: &str, partition: &Partition, next: i64) {
        if let Ok(mut lags) = self.inner.lags.lock() {
            if let Some(slot) = lags.get_mut(job).and_then(|l| l.next.get_mut(partition)) {
                *slot = Some(next);
            }
        }
    }

    /// `job` no longer runs here.
    pub fn untrack(&self, job: &str) {
        let gone = match self.inner.lags.lock() {
            Ok(mut lags) => lags.remove(job),
            Err(_) => None,
        };
        if let (Some(gone), Ok(mut sleepers)) = (gone, self.inner.sleepers.lock()) {
            for (topic, _) in gone.next.keys() {
                sleepers.remove(topic);
            }
        }
    }

    /// What wakes the readers of `topic` whose partitions sleep: notified
    /// (all waiters at once) by [`Engine::wake`].
    pub fn sleeper(&self, topic: &str) -> Arc<Notify> {
        match self.inner.sleepers.lock() {
            Ok(mut sleepers) => Arc::clone(sleepers.entry(topic.to_owned()).or_default()),
            // Never notified: the reader sleeps until its queue fills,
            // which a paused partition's does not; the lag sweep cannot
            // help either. Poisoning needs a panic under this lock: none.
            Err(_) => Arc::new(Notify::new()),
        }
    }

    /// A reader of `topic` sleeps until the guard is dropped: the lag sweep
    /// looks at its stream less often meanwhile.
    pub fn nap(&self, topic: &str) -> Nap {
        if let Ok(mut asleep) = self.inner.asleep.lock() {
            *asleep.entry(topic.to_owned()).or_default() += 1;
        }
        Nap {
            engine: self.clone(),
            topic: topic.to_owned(),
        }
    }

    /// Records were written to `topic` (by this instance, by another one,
    /// or seen by the lag sweep): its sleeping readers resume their
    /// partitions. Nothing happens for a topic nobody sleeps on. True when
    /// a reader of `topic` slept here at some point (so this instance owns
    /// it).
    pub fn wake(&self, topic: &str) -> bool {
        let sleeper = self
            .inner
            .sleepers
            .lock()
            .ok()
            .and_then(|s| s.get(topic).cloned());
        if let Some(sleeper) = &sleeper {
            sleeper.notify_waiters();
        }
        sleeper.is_some()
    }
}

/// A reader's sleep (see [`Engine::nap`]).
pub struct Nap {
    engine: Engine,
    topic: String,
}

impl Drop for Nap {
    fn drop(&mut self) {
        if let Ok(mut asleep) = self.engine.inner.asleep.lock() {
            if let Some(readers) = asleep.get_mut(&self.topic) {
                *readers -= 1;
                if *readers == 0 {
                    asleep.remove(&self.topic);
                }
            }
        }
    }
}

/// Answers position lookups, in gathered rounds of one `position()` call.
async fn answer_positions(engine: std::sync::Weak<Inner>, asked: Arc<Notify>) {
    loop {
        asked.notified().await;
        tokio::time::sleep(POSITIONS_GATHER).await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let asks = inner
            .asks
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default();
        let streams = inner.streams.borrow().clone();
        drop(inner);
        let positions = match streams {
            Some(streams) => streams.positions().await.unwrap_or_else(|error| {
                tracing::debug!(%error, "positions not read");
                HashMap::new()
            }),
            None => HashMap::new(),
        };
        for (partition, answer) in asks {
            let _ = answer.send(positions.get(&partition).copied());
        }
    }
}

/// Sets the lag gauge of every running job every [`LAG_EVERY`]: the end of
/// its partitions (one request for all of them) minus its stored offsets, as
/// `GET /jobs` shows it; a gauge is set only when its value changed. A job
/// behind its stream is woken: whatever wrote to it and did not say so (a
/// lost notification, another producer), it reads within a sweep.
async fn sweep_lags(engine: std::sync::Weak<Inner>) {
    let mut every = tokio::time::interval(LAG_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeps = 0u32;
    loop {
        every.tick().await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let with_asleep = sweeps % ASLEEP_EVERY_SWEEPS == 0;
        sweeps = sweeps.wrapping_add(1);
        // Looked up under the lock (taken before `lags`, as nowhere else
        // takes both), not copied: thousands of names every sweep.
        let partitions: Vec<Partition> = match (inner.asleep.lock(), inner.lags.lock()) {
            (Ok(asleep), Ok(lags)) => lags
                .values()
                .flat_map(|lag| lag.next.keys())
                .filter(|(topic, _)| with_asleep || !asleep.contains_key(topic))
                .cloned()
                .collect(),
            _ => continue,
        };
        if partitions.is_empty() {
            continue;
        }
        let cluster = inner.cluster.clone();
        drop(inner);
        let ends = match cluster.ends(partitions).await {
            Ok(ends) => ends,
            Err(error) => {
                tracing::debug!(%error, "lag not refreshed");
                continue;
            }
        };
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let mut behind_topics = Vec::new();
        let Ok(mut lags) = inner.lags.lock() else {
            continue;
        };
        for (job, lag) in lags.iter_mut() {
            let behind: Option<i64> = lag
                .next
                .iter()
                .map(|(partition, next)| {
                    ends.get(partition)
                        .map(|end| (end - next.unwrap_or(0)).max(0))
                })
                .sum();
            if behind.is_some_and(|b| b > 0) {
                behind_topics.extend(lag.next.keys().map(|(topic, _)| topic.clone()));
            }
            if let Some(behind) = behind.filter(|b| lag.shown != Some(*b)) {
                metrics::set_job_lag(job, behind);
                lag.shown = Some(behind);
            }
        }
        drop(lags);
        let engine = Engine { inner };
        for topic in behind_topics {
            let _ = engine.wake(&topic);
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

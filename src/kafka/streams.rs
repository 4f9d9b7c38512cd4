//! The instance's Kafka consumers: a small fixed number
//! (`INSIKT_KAFKA_CONSUMERS`, 4 by default), however many streams. Each
//! reads the streams whose job names start with its share of the hex digits
//! and is the instance's member of that share's consumer group, whose
//! cooperative-sticky assignment decides which instance owns which stream.
//! Each assigned partition gets a queue of its own, split off its consumer
//! (`rd_kafka_queue_get_partition`) and read by that partition's job, while
//! a thread per consumer polls its main queue, which serves the group's
//! rebalance callbacks. The clients do not grow with the jobs (with a
//! client per job, 500 jobs took 2,145 threads and 1,006 sockets). There is
//! more than one because a group's metadata, stored by the broker as one
//! record, names every topic of the group several times: one group stops
//! rebalancing at about 2,800 topics (the broker's 1 MiB record limit).
//!
//! A partition is assigned paused at the beginning: its job seeks it to the
//! offsets stored in PostgreSQL and resumes it. Pausing drops what was
//! prefetched for the partition (librdkafka purges its queue), so a stopped
//! job, or one that fell behind, holds no prefetch and never holds back the
//! other partitions, each of which has a queue and a prefetch of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::Offset;
use tokio::sync::{Notify, Semaphore};

use super::group::{
    list_of, shard_group, shard_of, topic_pattern, Assigned, GroupTiming, Member, Ownership,
};
use super::partition::PartitionStream;
use super::polling::{serve, Client, Refresh, REFRESH_FOR, REQUEST_TIMEOUT};
use super::{client_config, KafkaClientError};

/// How the consumer is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamsConfig {
    pub timing: GroupTiming,
    /// How often the pattern subscription looks for new topics (a topic this
    /// instance creates is looked for at once, see [`Streams::refresh`]).
    pub metadata_refresh: Duration,
    /// How many consumers (and consumer groups) the streams are split
    /// over: one of [`super::group::CONSUMER_COUNTS`]. Every instance of a
    /// deployment must use the same number.
    pub consumers: usize,
}

/// Blocking calls (seeks, positions) at once: bounded, so that
/// thousands of jobs starting together do not fill tokio's blocking pool
/// with threads.
const BLOCKING_CALLS: usize = 4;
/// Prefetch per partition, in KiB: librdkafka applies
/// `queued.max.messages.kbytes` to each split partition queue (not to the
/// whole consumer). A job that keeps up drains its queue; one that falls
/// behind has its partition paused, which drops this prefetch. 2 MiB is
/// some 20 ms of the fastest job's reading (`scripts/bench.sh stream`).
const PREFETCH_KIB: u32 = 2048;

/// The instance's consumers; cheap to clone. Leave their groups on
/// [`Streams::leave`] (or when the last handle is dropped).
#[derive(Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Shard>,
    calls: Semaphore,
}

/// One consumer, its group membership and the thread that serves it.
struct Shard {
    consumer: Arc<Client>,
    assigned: Assigned,
    stop: Arc<AtomicBool>,
    refresh: Arc<Mutex<Refresh>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shard {
    fn drop(&mut self) {
        // Without `leave` (e.g. a dropped test app): the thread leaves on its own.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the instance reads: the topics `{stem}.{name}` (by pattern) and
/// the legacy jobs' topics (by name).
pub struct Subscription<'a> {
    pub stem: &'a str,
    pub legacy: &'a [String],
}

impl Streams {
    /// Joins `config.consumers` groups named after `group` (see
    /// [`shard_group`]), each subscribed to its share of `subscription`;
    /// `ownership` hears about every assignment change until the members
    /// leave. Works while Kafka is down (the members join once it answers).
    pub fn join(
        brokers: &str,
        client_id: &str,
        group: &str,
        subscription: Subscription<'_>,
        config: StreamsConfig,
        ownership: impl Ownership,
    ) -> Result<Self, KafkaClientError> {
        let consumers = config.consumers.max(1);
        let ownership: Arc<dyn Ownership> = Arc::new(ownership);
        let shards = (0..consumers)
            .map(|shard| {
                let mut topics = vec![topic_pattern(subscription.stem, shard, consumers)];
                topics.extend(
                    subscription
                        .legacy
                        .iter()
                        .filter(|topic| shard_of(topic, consumers) == shard)
                        .cloned(),
                );
                let group = shard_group(group, shard, consumers);
                let client_id = if consumers == 1 {
                    client_id.to_owned()
                } else {
                    format!("{client_id}-{shard}")
                };
                Shard::join(brokers, &client_id, &group, &topics, &config, &ownership)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                shards,
                calls: Semaphore::new(BLOCKING_CALLS),
            }),
        })
    }

    /// Leaves the groups (after the owner let go of every partition, through
    /// the revoke callbacks) and destroys the clients.
    pub async fn leave(self) {
        let mut threads = Vec::new();
        for shard in &self.inner.shards {
            shard.stop.store(true, Ordering::Relaxed);
            threads.extend(shard.thread.lock().ok().and_then(|mut t| t.take()));
        }
        drop(self);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }

    fn shard(&self, topic: &str) -> &Shard {
        let shards = &self.inner.shards;
        &shards[shard_of(topic, shards.len())]
    }

    /// Asks for the cluster's topics now (on the consumers' threads, at most
    /// once per poll), and again every [`REFRESH_EVERY`] until `topics` are
    /// assigned here or [`REFRESH_FOR`] passed: topics this instance just
    /// created join the subscription, and the group assigns them, without
    /// waiting for the periodic refresh. Only the consumers that read
    /// `topics` ask.
    pub fn refresh(&self, topics: Vec<String>) {
        for topic in topics {
            if let Ok(mut refresh) = self.shard(&topic).refresh.lock() {
                refresh.until = Some(Instant::now() + REFRESH_FOR);
                refresh.awaited.insert(topic);
                refresh.asked = true;
            }
        }
    }

    /// Asks once for the cluster's topics (on the consumers that read
    /// `topics`): another instance made them, and this one's subscription
    /// should not wait for the periodic refresh to include them.
    pub fn look_for(&self, topics: &[String]) {
        for topic in topics {
            if let Ok(mut refresh) = self.shard(topic).refresh.lock() {
                refresh.asked = true;
            }
        }
    }

    /// The partitions of `topic` assigned to this instance.
    pub fn partitions(&self, topic: &str) -> Vec<i32> {
        self.shard(topic)
            .assigned
            .lock()
            .map(|a| a.get(topic).map(|p| p.iter().copied().collect()))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// A queue of its own for one partition's records (new handles on the
    /// same queue after a stop or a revoke are fine).
    pub fn open(&self, topic: &str, partition: i32) -> Result<PartitionStream, KafkaClientError> {
        let mut queue = self
            .shard(topic)
            .consumer
            .split_partition_queue(topic, partition)
            .ok_or_else(|| KafkaClientError::NoSuchTopic(topic.to_owned()))?;
        let ready = Arc::new(Notify::new());
        let waker = Arc::clone(&ready);
        // Called by librdkafka when the queue goes from empty to not empty;
        // a stored permit covers an item that arrives before the reader waits.
        queue.set_nonempty_callback(move || waker.notify_one());
        Ok(PartitionStream { queue, ready })
    }

    /// Positions a partition: its next fetch starts at `offset`.
    pub async fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
    ) -> Result<(), KafkaClientError> {
        let consumer = Arc::clone(&self.shard(topic).consumer);
        let topic = topic.to_owned();
        self.blocking(move || Ok(consumer.seek(&topic, partition, offset, REQUEST_TIMEOUT)?))
            .await
    }

    /// Stops fetching a partition and drops what was prefetched for it; the
    /// next fetch after [`Streams::resume`] starts after the last record
    /// read from its queue (or where a seek put it).
    pub fn pause(&self, topic: &str, partition: i32) -> Result<(), KafkaClientError> {
        let list = list_of(&[(topic.to_owned(), partition)], Offset::Invalid);
        Ok(self.shard(topic).consumer.pause(&list)?)
    }

    pub fn resume(&self, topic: &str, partition: i32) -> Result<(), KafkaClientError> {
        let list = list_of(&[(topic.to_owned(), partition)], Offset::Invalid);
        Ok(self.shard(topic).consumer.resume(&list)?)
    }

    /// Every assigned partition's position: the offset after the last record
    /// read from its queue, or past the transaction markers and aborted
    /// records after it (which `read_committed` skips without delivering).
    /// Partitions without a position (nothing read since a seek) are left out.
    pub async fn positions(&self) -> Result<HashMap<(String, i32), i64>, KafkaClientError> {
        let consumers: Vec<Arc<Client>> = self
            .inner
            .shards
            .iter()
            .map(|shard| Arc::clone(&shard.consumer))
            .collect();
        self.blocking(move || {
            let mut positions = HashMap::new();
            for consumer in consumers {
                for e in consumer.position()?.elements() {
                    if let Offset::Offset(offset) = e.offset() {
                        positions.insert((e.topic().to_owned(), e.partition()), offset);
                    }
                }
            }
            Ok(positions)
        })
        .await
    }

    /// Runs `call` on a blocking thread, at most [`BLOCKING_CALLS`] at once.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> Result<T, KafkaClientError> + Send + 'static,
    ) -> Result<T, KafkaClientError> {
        let _permit = self
            .inner
            .calls
            .acquire()
            .await
            .map_err(|_| KafkaClientError::Interrupted)?;
        tokio::task::spawn_blocking(call)
            .await
            .map_err(|_| KafkaClientError::Interrupted)?
    }
}

impl Shard {
    /// Joins `group` subscribed to `topics` (names, and patterns starting
    /// with `^`), and starts the thread that serves the consumer.
    fn join(
        brokers: &str,
        client_id: &str,
        group: &str,
        topics: &[String],
        config: &StreamsConfig,
        ownership: &Arc<dyn Ownership>,
    ) -> Result<Self, KafkaClientError> {
        let assigned = Assigned::default();
        let context = Member {
            ownership: Arc::clone(ownership),
            assigned: Arc::clone(&assigned),
        };
        let consumer: Client = client_config(brokers, client_id)
            .set("group.id", group)
            // Spreads single-partition topics across members; moves only what must move.
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "topic.metadata.refresh.interval.ms",
                config.metadata_refresh.as_millis().to_string(),
            )
            .set(
                "session.timeout.ms",
                config.timing.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                config.timing.heartbeat.as_millis().to_string(),
            )
            // Offsets live in PostgreSQL; only committed transactional data.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            // A stored offset the broker no longer has (retention deleted
            // it): go on from the oldest record left, not from the newest.
            .set("auto.offset.reset", "earliest")
            .set("queued.max.messages.kbytes", PREFETCH_KIB.to_string())
            // Once a partition's prefetch is full librdkafka waits this long
            // (1 s by default) before fetching it again: a job that drains
            // its queue faster than that would sit idle. 10 ms keeps it fed.
            .set("fetch.queue.backoff.ms", "10")
            .create_with_context(context)?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let refresh = Arc::new(Mutex::new(Refresh::default()));
        let thread = {
            let (consumer, stop, refresh) = (Arc::clone(&consumer), stop.clone(), refresh.clone());
            let assigned = Arc::clone(&assigned);
            std::thread::Builder::new()
                .name("kafka-streams".into())
                .spawn(move || serve(consumer, &stop, &refresh, &assigned))
                .map_err(|_| KafkaClientError::Interrupted)?
        };
        Ok(Self {
            consumer,
            assigned,
            stop,
            refresh,
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").finish_non_exhaustive()
    }
}

//! The only way into the jobs from outside: [`SupervisorHandle`], which
//! sends messages to the supervisor actor, reads job state from PostgreSQL
//! and the ends of the streams from Kafka; and the group join, after which
//! the instance's one consumer reads every stream the group gives it.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};

use super::engine::Engine;
use super::supervisor::{Supervisor, SupervisorMsg};
use super::{archive, job_of_topic, notify, replay, repo};
use super::{Context, JobFilter, JobView, JobsError, Replayed, Settings, Stream};
use crate::archive::ArchiveStore;
use crate::db::Pool;
use crate::kafka::{Cluster, Ownership, Streams, StreamsConfig, Subscription};

/// How long the API waits for the streams' ends before showing them as unknown.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request to the supervisor may take (a stop waits for a batch).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stop through a non-owner waits for the owner to stop the job.
const REMOTE_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a rebalance waits for revoked jobs to stop.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the consumer group tells this instance, passed to the supervisor.
struct GroupOwnership {
    supervisor: ActorRef<SupervisorMsg>,
}

/// Job names from the topics of partitions, once each.
fn names(partitions: Vec<(String, i32)>) -> Vec<String> {
    let mut names: Vec<String> = partitions
        .iter()
        .map(|(topic, _)| job_of_topic(topic).to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

impl Ownership for GroupOwnership {
    fn assigned(&self, partitions: Vec<(String, i32)>) {
        let names = names(partitions);
        let _ = self.supervisor.send_message(SupervisorMsg::Assigned(names));
    }

    fn revoked(&self, partitions: Vec<(String, i32)>) {
        let names = names(partitions);
        let (done, stopped) = std::sync::mpsc::channel();
        if self
            .supervisor
            .send_message(SupervisorMsg::Revoked(names, done))
            .is_ok()
        {
            // Blocks the membership's thread, hence the rebalance, not the runtime.
            let _ = stopped.recv_timeout(REVOKE_TIMEOUT);
        }
    }
}

/// The only way into the jobs from outside: a clonable handle that sends
/// messages to the supervisor actor and reads job state from PostgreSQL.
#[derive(Clone)]
pub struct SupervisorHandle {
    actor: ActorRef<SupervisorMsg>,
    context: Context,
    /// The group join (until done) and the change listener.
    tasks: Arc<[tokio::task::JoinHandle<()>; 2]>,
    announced: Arc<Announced>,
}

/// How often at most an instance tells the others that it wrote to a
/// topic. Shorter than a reader's wait before it sleeps: a write that is not
/// announced follows one that was by less than this, and the reader it woke
/// (or kept awake) cannot have slept since.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);

/// When each topic's writes were last announced.
#[derive(Default)]
struct Announced(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

impl Announced {
    /// Whether a write to `topic` now must be announced (noted if so).
    fn due(&self, topic: &str) -> bool {
        let Ok(mut last) = self.0.lock() else {
            return true;
        };
        let now = std::time::Instant::now();
        if last
            .get(topic)
            .is_some_and(|at| now.duration_since(*at) < ANNOUNCE_EVERY)
        {
            return false;
        }
        if last.len() >= 4096 {
            last.retain(|_, at| now.duration_since(*at) < ANNOUNCE_EVERY);
        }
        last.insert(topic.to_owned(), now);
        true
    }
}

impl SupervisorHandle {
    /// Spawns the supervisor, which reconciles at once and then periodically,
    /// joins the consumer group (whose assignment decides which jobs run
    /// here) and listens for job changes made through other instances.
    /// The group is joined as soon as the deployment's identity can be read
    /// (at once, unless PostgreSQL is down).
    pub async fn start(
        settings: Settings,
        pool: Pool,
        cluster: Cluster,
    ) -> Result<Self, JobsError> {
        let archive = ArchiveStore::from_url(&settings.archive_url)?;
        let engine = Engine::start(settings.batches_in_memory, cluster.clone());
        let context = Context {
            pool,
            cluster,
            archive,
            engine,
            settings: Arc::new(settings),
            naming: Arc::default(),
            producer: Arc::default(),
        };
        let (actor, _) = Actor::spawn(None, Supervisor, context.clone())
            .await
            .map_err(|e| JobsError::Spawn(e.to_string()))?;
        let joining = tokio::spawn(join_group(context.clone(), actor.clone()));
        let listener = tokio::spawn(notify::listen(
            context.settings.database_url.clone(),
            actor.clone(),
            context.engine.clone(),
        ));
        Ok(Self {
            actor,
            context,
            tasks: Arc::new([joining, listener]),
            announced: Arc::default(),
        })
    }

    async fn call<T: Send + 'static>(
        &self,
        build: impl FnOnce(ractor::RpcReplyPort<Result<T, JobsError>>) -> SupervisorMsg,
    ) -> Result<T, JobsError> {
        match self.actor.call(build, Some(CALL_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            _ => Err(JobsError::SupervisorGone),
        }
    }

    /// Makes sure the import has its job, topic and (when wanted) a running
    /// actor; the import handler calls this after its commit. A Kafka outage
    /// leaves the job `pending`, retried by the periodic reconciliation.
    pub async fn ensure(&self, import_id: i64) -> Result<Stream, JobsError> {
        self.call(|reply| SupervisorMsg::Ensure(import_id, reply))
            .await?;
        self.stream(import_id)
            .await?
            .ok_or(JobsError::NoImport(import_id))
    }

    /// The import's stream as stored, without the supervisor (which can be
    /// busy for seconds while Kafka is down) and without counting anything:
    /// what the ingestion route reads on every request.
    pub async fn stream(&self, import_id: i64) -> Result<Option<Stream>, JobsError> {
        let client = self.context.pool.get().await?;
        Ok(repo::of_import(&client, import_id).await?.map(Stream::from))
    }

    /// Produces `records` (key, payload) to the stream of `job`, each with
    /// `headers`, in one Kafka transaction: all of them reach the job, or
    /// (on an error) none.
    pub async fn publish(
        &self,
        stream: &Stream,
        records: Vec<(String, Vec<u8>)>,
        headers: &[(String, String)],
    ) -> Result<usize, JobsError> {
        let producer = self.context.producer().await?;
        let sent = producer
            .send_all_with_headers(&stream.topic, records, headers)
            .await?;
        self.written(&stream.topic);
        Ok(sent)
    }

    /// Wakes the reader of `topic` if it sleeps here; otherwise tells the
    /// other instances (at most once per [`ANNOUNCE_EVERY`] per topic, off
    /// the request's path), since the owner may be one of them.
    fn written(&self, topic: &str) {
        if self.context.engine.wake(topic) || !self.announced.due(topic) {
            return;
        }
        let (pool, topic) = (self.context.pool.clone(), topic.to_owned());
        tokio::spawn(async move {
            let notified = match pool.get().await {
                Ok(client) => repo::notify_written(&client, &topic).await,
                Err(error) => Err(error.into()),
            };
            if let Err(error) = notified {
                // The owner's lag sweep wakes the stream within seconds.
                tracing::debug!(%topic, %error, "write not announced");
            }
        });
    }

    /// Asks for `ensure` without waiting: for callers that must not be slowed
    /// down by a Kafka outage (the periodic reconciliation retries anyway).
    pub fn ensure_later(&self, import_id: i64) -> Result<(), JobsError> {
        self.actor
            .send_message(SupervisorMsg::EnsureLater(import_id))
            .map_err(|_| JobsError::SupervisorGone)
    }

    /// Stops a job after its current batch; it stays stopped across restarts.
    /// Through a non-owner, waits (a bounded time) for the owner to stop it.
    pub async fn stop(&self, name: &str) -> Result<JobView, JobsError> {
        let name = name.to_owned();
        let key = name.clone();
        let stopped = self
            .call(move |reply| SupervisorMsg::Stop(key, reply))
            .await?;
        let deadline = tokio::time::Instant::now() + REMOTE_STOP_TIMEOUT;
        loop {
            let client = self.context.pool.get().await?;
            let row = repo::by_name(&client, &name)
                .await?
                .ok_or_else(|| JobsError::NotFound(name.clone()))?;
            drop(client);
            if stopped || row.state != "running" || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.get(&name).await?.ok_or(JobsError::NotFound(name))
    }

    /// Starts a stopped (or failed) job again.
    pub async fn resume(&self, name: &str) -> Result<JobView, JobsError> {
        let name = name.to_owned();
        let key = name.clone();
        self.call(move |reply| SupervisorMsg::Start(key, reply))
            .await?;
        self.get(&name).await?.ok_or(JobsError::NotFound(name))
    }

    /// Sets what hears of every import whose statements a job folded
    /// (once, at start).
    pub fn on_folded(&self, hook: impl Fn(i64) + Send + Sync + 'static) {
        self.context.engine.on_folded(hook);
    }

    /// The archive store expired jobs write to.
    pub fn archive(&self) -> &ArchiveStore {
        &self.context.archive
    }

    /// The objects archived for job `name`, in partition and offset order.
    pub async fn archives(&self, name: &str) -> Result<Vec<crate::archive::ObjectInfo>, JobsError> {
        let client = self.context.pool.get().await?;
        if repo::by_name(&client, name).await?.is_none() {
            return Err(JobsError::NotFound(name.to_owned()));
        }
        archive::objects(&client, name).await
    }

    /// Replays job `job`'s archive into import `import_id` (see [`replay`]).
    pub async fn replay(&self, job: &str, import_id: i64) -> Result<Replayed, JobsError> {
        let context = &self.context;
        replay::replay(
            &context.pool,
            &context.archive,
            job,
            import_id,
            context.settings.batch_size,
            |_| {},
        )
        .await
    }

    pub async fn get(&self, name: &str) -> Result<Option<JobView>, JobsError> {
        let filter = JobFilter {
            name: Some(name.to_owned()),
            ..JobFilter::default()
        };
        Ok(self.list(&filter).await?.into_iter().next())
    }

    /// Jobs matching `filter`, with the ends of their streams from Kafka
    /// (one request for all of them; unknown when Kafka does not answer in
    /// time).
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobView>, JobsError> {
        let client = self.context.pool.get().await?;
        let mut jobs = repo::list(&client, filter).await?;
        drop(client);
        let mut topics: Vec<String> = jobs
            .iter()
            .filter(|job| job.topic_ready && job.state != "expired")
            .map(|job| job.topic.clone())
            .collect();
        topics.sort();
        topics.dedup();
        let cluster = &self.context.cluster;
        let ends = tokio::time::timeout(
            WATERMARK_TIMEOUT,
            cluster.topic_ends(topics, WATERMARK_TIMEOUT),
        )
        .await;
        let ends = match ends {
            Ok(Ok(ends)) => ends,
            Ok(Err(error)) => {
                tracing::debug!(%error, "stream ends unknown");
                Default::default()
            }
            Err(_) => Default::default(),
        };
        for job in &mut jobs {
            job.high_watermark = if job.state == "expired" {
                // Its archive moved the offsets to the end of the stream,
                // whose topic may be gone since.
                Some(job.committed_offset)
            } else {
                ends.get(&job.topic).copied()
            };
            job.lag = job
                .high_watermark
                .map(|h| (h - job.committed_offset).max(0));
        }
        Ok(jobs)
    }

    /// Stops every job after its current batch, leaves the consumer group
    /// (so that the other instances take the jobs over), then stops the supervisor.
    pub async fn shutdown(&self) {
        for task in self.tasks.iter() {
            task.abort();
        }
        let _ = self
            .actor
            .call(SupervisorMsg::Shutdown, Some(CALL_TIMEOUT))
            .await;
        if let Some(streams) = self.context.engine.take_streams() {
            streams.leave().await;
        }
        let _ = self
            .actor
            .stop_and_wait(Some("shutdown".into()), Some(CALL_TIMEOUT))
            .await;
    }
}

/// How often the group join retries reading what it subscribes to.
const JOIN_RETRY: Duration = Duration::from_secs(1);

/// Joins the consumer group subscribed to this deployment's topics: its
/// own (by pattern) and those of its legacy jobs (by name), retrying until
/// PostgreSQL answers; the jobs read through the joined consumer.
async fn join_group(context: Context, supervisor: ActorRef<SupervisorMsg>) {
    let mut warned = false;
    let (naming, legacy) = loop {
        let read = async {
            let naming = context.naming().await?.clone();
            let client = context.pool.get().await?;
            let legacy = repo::legacy_topics(&client).await?;
            Ok::<_, JobsError>((naming, legacy))
        };
        match read.await {
            Ok(read) => break read,
            Err(error) => {
                if !warned {
                    tracing::warn!(%error, "cannot join the consumer group yet: retrying");
                    warned = true;
                }
                tokio::time::sleep(JOIN_RETRY).await;
            }
        }
    };
    let settings = &context.settings;
    let config = StreamsConfig {
        timing: settings.group_timing,
        metadata_refresh: settings.metadata_refresh,
        consumers: settings.consumers,
    };
    let stem = naming.topic_stem();
    let joined = Streams::join(
        &settings.brokers,
        &format!("insikt-{}-streams", settings.instance),
        &naming.consumer_group(),
        Subscription {
            stem: &stem,
            legacy: &legacy,
        },
        config,
        GroupOwnership { supervisor },
    );
    match joined {
        Ok(streams) => {
            tracing::info!(group = %naming.consumer_group(), consumers = settings.consumers, topics = %stem, "joined the consumer groups");
            context.engine.joined(streams);
        }
        Err(error) => {
            tracing::error!(%error, "cannot join the consumer group: no job will run here")
        }
    }
}

impl std::fmt::Debug for SupervisorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorHandle").finish_non_exhaustive()
    }
}

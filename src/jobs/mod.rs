//! Statement streams and their jobs: a ractor supervisor actor owning this
//! instance's jobs, one job actor per import partition hash, and the handle
//! the rest of the service talks to. PostgreSQL is the source of truth for
//! job state; actors never know about HTTP.

mod archive;
mod job;
mod naming;
mod notify;
mod replay;
mod repo;
mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorRef};
use serde::Serialize;

use crate::archive::{ArchiveError, ArchiveStore};
use crate::config::Config;
use crate::db::{DbError, Pool};
use crate::kafka::{
    Cluster, GroupTiming, KafkaClientError, Membership, Ownership, TransactionalProducer,
};

pub use naming::{job_name, job_of_topic, legacy_job_name, Naming};
pub use replay::{replay, replayed_partition, total as replay_total, Replayed};
pub use repo::{JobFilter, CHANNEL};
pub use supervisor::FailurePolicy;
use supervisor::{Supervisor, SupervisorMsg};

/// What the jobs need from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub brokers: String,
    pub topic_prefix: String,
    pub consumer_group: String,
    pub retention: Duration,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub reconcile_every: Duration,
    /// Batch transactions a job keeps open at once.
    pub writes_in_flight: usize,
    pub failures: FailurePolicy,
    pub group_timing: GroupTiming,
    /// Where expired streams are archived (`file://` or `s3://`).
    pub archive_url: String,
    /// Offsets one archive object spans at most.
    pub archive_object_offsets: i64,
    pub instance: String,
    /// For the dedicated connection that listens for job changes.
    pub database_url: String,
}

/// Longest extra time a topic keeps its messages after its job expired.
const ARCHIVE_GRACE_MAX: Duration = Duration::from_secs(3600);

impl Settings {
    /// The topic's `retention.ms`: the job's retention window plus a grace
    /// (the window itself, at most an hour), so that the job, which archives
    /// its unconsumed rest at expiry, reads it before the broker may delete it.
    pub fn topic_retention(&self) -> Duration {
        self.retention + self.retention.min(ARCHIVE_GRACE_MAX)
    }

    pub fn from_config(config: &Config) -> Self {
        Self {
            brokers: config.kafka_brokers.clone(),
            topic_prefix: config.topic_prefix.clone(),
            consumer_group: config.consumer_group.clone(),
            retention: config.retention,
            batch_size: config.job_batch_size.max(1),
            batch_wait: Duration::from_millis(config.job_batch_ms.max(1)),
            reconcile_every: Duration::from_secs(config.reconcile_secs.max(1)),
            writes_in_flight: usize::from(config.job_writes_in_flight.max(1)),
            failures: FailurePolicy {
                max_failures: config.job_max_failures.max(1) as usize,
                window: config.job_failure_window,
                backoff: config.job_backoff,
                backoff_max: config.job_backoff_max.max(config.job_backoff),
            },
            group_timing: GroupTiming {
                session_timeout: config.kafka_session_timeout,
                heartbeat: config.kafka_heartbeat,
            },
            archive_url: config.archive_url(),
            archive_object_offsets: config.archive_object_offsets.max(1) as i64,
            instance: config.instance_id(),
            database_url: config.database_url.clone(),
        }
    }
}

/// What every actor shares (internal to the jobs; public only because actor
/// arguments must be).
#[derive(Clone)]
pub struct Context {
    pub pool: Pool,
    pub cluster: Cluster,
    pub settings: Arc<Settings>,
    pub archive: ArchiveStore,
    naming: Arc<tokio::sync::OnceCell<Naming>>,
    producer: Arc<tokio::sync::OnceCell<TransactionalProducer>>,
}

impl Context {
    /// This deployment's names, from its identity in the database (read
    /// once; until PostgreSQL answers, an error like any query's).
    pub async fn naming(&self) -> Result<&Naming, JobsError> {
        self.naming
            .get_or_try_init(|| async {
                let client = self.pool.get().await?;
                let deployment = crate::db::deployment_id(&client).await?;
                let settings = &self.settings;
                Ok::<_, JobsError>(Naming::new(
                    deployment,
                    &settings.topic_prefix,
                    &settings.consumer_group,
                ))
            })
            .await
    }

    /// The instance's transactional producer, made once its
    /// `transactional.id` (which carries the deployment) is known.
    async fn producer(&self) -> Result<&TransactionalProducer, JobsError> {
        self.producer
            .get_or_try_init(|| async {
                let settings = &self.settings;
                let naming = self.naming().await?;
                Ok::<_, JobsError>(TransactionalProducer::start(
                    &settings.brokers,
                    &format!("insikt-{}-producer", settings.instance),
                    &naming.transactional_id(&settings.instance),
                )?)
            })
            .await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Kafka(#[from] KafkaClientError),
    #[error("no job {0}")]
    NotFound(String),
    #[error("no import {0}")]
    NoImport(i64),
    #[error("job {0} has expired")]
    Expired(String),
    #[error("the job supervisor is not running")]
    SupervisorGone,
    #[error("archive: {0}")]
    ArchiveStore(#[from] ArchiveError),
    #[error("no archive of job {0}")]
    NoArchive(String),
    #[error("cannot start the job supervisor: {0}")]
    Spawn(String),
}

impl JobsError {
    /// Kafka refused a record for its size (over `message.max.bytes`).
    pub fn is_record_too_large(&self) -> bool {
        matches!(self, Self::Kafka(e) if e.is_record_too_large())
    }
}

impl From<crate::kafka::KafkaError> for JobsError {
    fn from(error: crate::kafka::KafkaError) -> Self {
        Self::Kafka(KafkaClientError::from(error))
    }
}

impl From<tokio_postgres::Error> for JobsError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Db(DbError::from(error))
    }
}

impl From<deadpool_postgres::PoolError> for JobsError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Db(DbError::from(error))
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub name: String,
    pub import: i64,
    pub topic: String,
    /// `pending` (no topic yet), `running`, `stopped`, `expired` or `failed`.
    pub state: String,
    /// What an operator asked for: `running` or `stopped`.
    pub desired: String,
    pub owner: Option<String>,
    pub committed_offset: i64,
    pub high_watermark: Option<i64>,
    pub lag: Option<i64>,
    pub statements_stored: i64,
    pub dead_letters: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// Whether the topic exists (a `pending` job may be waiting for Kafka).
    #[serde(skip)]
    pub topic_ready: bool,
}

/// What producing to an import's stream needs to know of its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub job: String,
    pub topic: String,
    /// The topic exists (a job made while Kafka was down has none yet).
    pub topic_ready: bool,
    pub expired: bool,
}

impl From<repo::JobRow> for Stream {
    fn from(row: repo::JobRow) -> Self {
        Self {
            expired: row.state == "expired",
            job: row.name,
            topic: row.topic,
            topic_ready: row.topic_ready,
        }
    }
}

/// How long the API waits for watermarks before showing them as unknown.
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

/// Job names from topic names.
fn names(topics: Vec<String>) -> Vec<String> {
    topics.iter().map(|t| job_of_topic(t).to_owned()).collect()
}

impl Ownership for GroupOwnership {
    fn assigned(&self, topics: Vec<String>) {
        let names = names(topics);
        let _ = self.supervisor.send_message(SupervisorMsg::Assigned(names));
    }

    fn revoked(&self, topics: Vec<String>) {
        let names = names(topics);
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
    /// This instance's consumer-group member, once joined, until shutdown.
    membership: Arc<std::sync::Mutex<Option<Membership>>>,
    /// The group join (until done) and the change listener.
    tasks: Arc<[tokio::task::JoinHandle<()>; 2]>,
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
        let context = Context {
            pool,
            cluster,
            archive,
            settings: Arc::new(settings),
            naming: Arc::default(),
            producer: Arc::default(),
        };
        let (actor, _) = Actor::spawn(None, Supervisor, context.clone())
            .await
            .map_err(|e| JobsError::Spawn(e.to_string()))?;
        let membership = Arc::new(std::sync::Mutex::new(None));
        let joining = tokio::spawn(join_group(
            context.clone(),
            actor.clone(),
            Arc::clone(&membership),
        ));
        let listener = tokio::spawn(notify::listen(
            context.settings.database_url.clone(),
            actor.clone(),
        ));
        Ok(Self {
            actor,
            context,
            membership,
            tasks: Arc::new([joining, listener]),
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
        Ok(producer
            .send_all_with_headers(&stream.topic, records, headers)
            .await?)
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

    /// Jobs matching `filter`, with their watermarks from Kafka (unknown when
    /// Kafka does not answer in time).
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobView>, JobsError> {
        let client = self.context.pool.get().await?;
        let mut jobs = repo::list(&client, filter).await?;
        drop(client);
        let cluster = &self.context.cluster;
        let watermarks = futures_util::future::join_all(jobs.iter().map(|job| async move {
            if !job.topic_ready {
                return None;
            }
            high_watermark(cluster, &job.topic).await.ok()
        }))
        .await;
        for (job, high) in jobs.iter_mut().zip(watermarks) {
            job.high_watermark = high;
            job.lag = high.map(|h| (h - job.committed_offset).max(0));
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
        let membership = self.membership.lock().ok().and_then(|mut m| m.take());
        if let Some(membership) = membership {
            membership.leave().await;
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
/// PostgreSQL answers.
async fn join_group(
    context: Context,
    supervisor: ActorRef<SupervisorMsg>,
    slot: Arc<std::sync::Mutex<Option<Membership>>>,
) {
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
    let mut subscription = vec![crate::kafka::topic_pattern(&naming.topic_stem())];
    subscription.extend(legacy);
    let settings = &context.settings;
    let joined = Membership::join(
        &settings.brokers,
        &format!("insikt-{}-member", settings.instance),
        &naming.consumer_group(),
        &subscription,
        settings.group_timing,
        GroupOwnership { supervisor },
    );
    match joined {
        Ok(membership) => {
            tracing::info!(group = %naming.consumer_group(), topics = %naming.topic_stem(), "joined the consumer group");
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(membership);
            }
        }
        Err(error) => {
            tracing::error!(%error, "cannot join the consumer group: no job will run here")
        }
    }
}

/// The sum of the high watermarks of a topic's partitions.
async fn high_watermark(cluster: &Cluster, topic: &str) -> Result<i64, KafkaClientError> {
    let partitions = tokio::time::timeout(WATERMARK_TIMEOUT, cluster.partitions(topic))
        .await
        .map_err(|_| KafkaClientError::Interrupted)??;
    let mut total = 0;
    for partition in partitions {
        let (_, high) = cluster
            .watermarks(topic, partition, WATERMARK_TIMEOUT)
            .await?;
        total += high;
    }
    Ok(total)
}

impl std::fmt::Debug for SupervisorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorHandle").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_outlive_their_jobs_by_a_bounded_grace() {
        let mut settings = Settings::from_config(&Config::from_env());
        settings.retention = Duration::from_secs(20);
        assert_eq!(settings.topic_retention(), Duration::from_secs(40));
        settings.retention = Duration::from_secs(14 * 86_400);
        assert_eq!(
            settings.topic_retention(),
            Duration::from_secs(14 * 86_400 + 3600)
        );
    }
}

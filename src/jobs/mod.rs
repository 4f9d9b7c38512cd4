//! Statement streams and their jobs: a ractor supervisor actor owning this
//! instance's jobs, one job actor per import partition hash, and the handle
//! the rest of the service talks to. PostgreSQL is the source of truth for
//! job state; actors never know about HTTP.

mod archive;
mod engine;
mod handle;
mod job;
mod naming;
mod notify;
mod policy;
mod reader;
mod reconcile;
mod replay;
mod repo;
mod supervisor;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::archive::{ArchiveError, ArchiveStore};
use crate::config::Config;
use crate::db::{DbError, Pool};
use crate::kafka::{Cluster, GroupTiming, KafkaClientError, TransactionalProducer};

use engine::Engine;
pub use handle::SupervisorHandle;
pub use naming::{job_name, job_of_topic, legacy_job_name, Naming};
pub use policy::FailurePolicy;
pub use replay::{replay, replayed_partition, total as replay_total, Replayed};
pub use repo::{JobFilter, CHANNEL};

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
    /// How often the consumer looks for new stream topics by itself.
    pub metadata_refresh: Duration,
    /// How many consumers (and consumer groups) the streams are split over.
    pub consumers: usize,
    /// How long a reader waits on an idle stream before its partition sleeps.
    pub sleep_after: Duration,
    /// Batches the instance's jobs keep in memory at once (read, waiting
    /// or being written), whatever the number of jobs.
    pub batches_in_memory: usize,
    /// Whether an expired stream's topic is deleted once it is archived.
    pub delete_expired_topics: bool,
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
/// Batches in memory per pooled PostgreSQL connection (see `Settings`).
const BATCHES_PER_CONNECTION: usize = 4;

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
            metadata_refresh: config.kafka_metadata_refresh,
            consumers: config.kafka_consumers,
            sleep_after: config.stream_sleep_after,
            // Four a pooled connection: two being written (a job keeps two
            // transactions open), one handed over, one being read.
            batches_in_memory: config.db_pool_size.max(1) * BATCHES_PER_CONNECTION,
            delete_expired_topics: config.delete_expired_topics,
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
    engine: Engine,
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
    #[error("job {0}: its topic is not assigned to this instance")]
    NotAssigned(String),
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
    /// The end of the stream: the offset after the last committed record
    /// (an expired job's stream ended at its archive: its committed offset).
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

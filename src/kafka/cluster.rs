//! The cluster as the service asks it things: topics created and deleted
//! (an admin client), and metadata and offsets looked up (a consumer outside
//! any group).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, KafkaClientError, ADMIN_TIMEOUT};

/// A handle on the cluster for administrative requests and lookups; cheap
/// to clone.
#[derive(Clone)]
pub struct Cluster {
    pub(super) admin: Arc<AdminClient<DefaultClientContext>>,
    /// A consumer outside any group, for metadata and offsets: requests on
    /// the instance's reading consumer would queue on its broker connection
    /// behind a fetch the broker holds for up to `fetch.wait.max.ms` (about
    /// half a second per request, measured).
    lookup: Arc<BaseConsumer>,
    topics: TopicSettings,
}

/// How the topics this service creates are replicated; `None`: the broker's
/// default (`default.replication.factor`, `min.insync.replicas`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicSettings {
    pub replication: Option<i32>,
    pub min_insync: Option<i32>,
}

impl Cluster {
    /// Creates the clients; they connect lazily, so this works while Kafka is down.
    pub fn connect(brokers: &str, client_id: &str) -> Result<Self, KafkaClientError> {
        let admin = client_config(brokers, client_id).create()?;
        let lookup = client_config(brokers, &format!("{client_id}-lookup"))
            // What a job can read: the end of its stream is the last stable offset.
            .set("isolation.level", "read_committed")
            .create()?;
        Ok(Self {
            admin: Arc::new(admin),
            lookup: Arc::new(lookup),
            topics: TopicSettings::default(),
        })
    }

    /// The same clients, creating topics with `topics`' replication.
    pub fn with_topic_settings(mut self, topics: TopicSettings) -> Self {
        self.topics = topics;
        self
    }
}

impl Cluster {
    /// Creates `topic` with one partition, the configured (or else the
    /// broker's) replication and `retention`; an existing topic is fine (creation is retried after failures).
    pub async fn create_topic(
        &self,
        topic: &str,
        retention: Duration,
    ) -> Result<(), KafkaClientError> {
        let created = self.create_topics(&[topic.to_owned()], retention).await?;
        created
            .into_iter()
            .next()
            .map_or(Ok(()), |(_, result)| result)
    }

    /// [`Cluster::create_topic`] for many topics in one request; the outcome
    /// of each. An error for the whole request (Kafka unreachable) is `Err`.
    pub async fn create_topics(
        &self,
        topics: &[String],
        retention: Duration,
    ) -> Result<Vec<(String, Result<(), KafkaClientError>)>, KafkaClientError> {
        let retention_ms = retention.as_millis().to_string();
        let min_insync = self.topics.min_insync.map(|m| m.to_string());
        let replication = self.topics.replication.unwrap_or(-1);
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| {
                let new = NewTopic::new(topic, 1, TopicReplication::Fixed(replication))
                    .set("retention.ms", &retention_ms);
                match &min_insync {
                    Some(min) => new.set("min.insync.replicas", min),
                    None => new,
                }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = self.admin.create_topics(&new, &options).await?;
        Ok(results
            .into_iter()
            .map(|result| match result {
                Ok(topic) => (topic, Ok(())),
                Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => (topic, Ok(())),
                Err((topic, code)) => (topic.clone(), Err(KafkaClientError::Topic { topic, code })),
            })
            .collect())
    }

    /// Deletes `topic`; one that is already gone is fine.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), KafkaClientError> {
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        for result in self.admin.delete_topics(&[topic], &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => return Err(KafkaClientError::Topic { topic, code }),
            }
        }
        Ok(())
    }

    /// Deletes every topic whose name starts with `prefix` (what a test or
    /// a benchmark made in bulk), 500 a request; how many there were. The
    /// topics are found with one metadata request for all of them: asking
    /// for a deleted topic by name could have the broker create it again.
    pub async fn delete_topics_with_prefix(&self, prefix: &str) -> Result<usize, KafkaClientError> {
        let lookup = Arc::clone(&self.lookup);
        let prefix = prefix.to_owned();
        let topics: Vec<String> = tokio::task::spawn_blocking(move || {
            let metadata = lookup.fetch_metadata(None, ADMIN_TIMEOUT * 3)?;
            Ok::<_, KafkaClientError>(
                metadata
                    .topics()
                    .iter()
                    .map(|t| t.name().to_owned())
                    .filter(|t| t.starts_with(&prefix))
                    .collect(),
            )
        })
        .await
        .map_err(|_| KafkaClientError::Interrupted)??;
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT * 6));
        for chunk in topics.chunks(500) {
            let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
            for result in self.admin.delete_topics(&names, &options).await? {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                    Err((topic, code)) => return Err(KafkaClientError::Topic { topic, code }),
                }
            }
        }
        Ok(topics.len())
    }

    /// The partition ids of `topic`.
    pub async fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaClientError> {
        let lookup = Arc::clone(&self.lookup);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let metadata = lookup.fetch_metadata(Some(&topic), ADMIN_TIMEOUT)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                return Err(KafkaClientError::NoSuchTopic(topic));
            }
            Ok(partitions)
        })
        .await
        .map_err(|_| KafkaClientError::Interrupted)?
    }

    /// Low and high watermarks of one partition.
    pub async fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> Result<(i64, i64), KafkaClientError> {
        let lookup = Arc::clone(&self.lookup);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            lookup
                .fetch_watermarks(&topic, partition, timeout)
                .map_err(KafkaClientError::from)
        })
        .await
        .map_err(|_| KafkaClientError::Interrupted)?
    }

    /// The end of each partition: the offset after the last record a
    /// `read_committed` reader can read (one ListOffsets request per
    /// broker). Partitions that did not answer are left out.
    pub async fn ends(
        &self,
        partitions: Vec<(String, i32)>,
    ) -> Result<HashMap<(String, i32), i64>, KafkaClientError> {
        if partitions.is_empty() {
            return Ok(HashMap::new());
        }
        let lookup = Arc::clone(&self.lookup);
        tokio::task::spawn_blocking(move || ends(&lookup, &partitions))
            .await
            .map_err(|_| KafkaClientError::Interrupted)?
    }

    /// The end of each of `topics` (summed over its partitions), as the
    /// listing of jobs shows it: one metadata request (for the topic, or
    /// for all when there are several) and one ListOffsets per broker.
    /// Topics Kafka does not know, or whose partitions did not all answer,
    /// are left out.
    pub async fn topic_ends(
        &self,
        topics: Vec<String>,
        timeout: Duration,
    ) -> Result<HashMap<String, i64>, KafkaClientError> {
        if topics.is_empty() {
            return Ok(HashMap::new());
        }
        let lookup = Arc::clone(&self.lookup);
        tokio::task::spawn_blocking(move || {
            let one = (topics.len() == 1).then(|| topics[0].as_str());
            let metadata = lookup.fetch_metadata(one, timeout)?;
            let wanted: HashSet<&str> = topics.iter().map(String::as_str).collect();
            let partitions: Vec<(String, i32)> = metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && wanted.contains(t.name()))
                .flat_map(|t| t.partitions().iter().map(|p| (t.name().to_owned(), p.id())))
                .collect();
            let mut expected: HashMap<&str, usize> = HashMap::new();
            for (topic, _) in &partitions {
                *expected.entry(topic.as_str()).or_default() += 1;
            }
            let mut sums: HashMap<String, (usize, i64)> = HashMap::new();
            for ((topic, _), end) in ends(&lookup, &partitions)? {
                let sum = sums.entry(topic).or_default();
                sum.0 += 1;
                sum.1 += end;
            }
            Ok(sums
                .into_iter()
                .filter(|(topic, (answered, _))| expected.get(topic.as_str()) == Some(answered))
                .map(|(topic, (_, end))| (topic, end))
                .collect())
        })
        .await
        .map_err(|_| KafkaClientError::Interrupted)?
    }
}

/// The end offsets of `partitions`, through ListOffsets (`offsets_for_times`
/// at "latest"); partitions that did not answer are left out.
fn ends(
    consumer: &BaseConsumer,
    partitions: &[(String, i32)],
) -> Result<HashMap<(String, i32), i64>, KafkaClientError> {
    if partitions.is_empty() {
        return Ok(HashMap::new());
    }
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition_offset(topic, *partition, Offset::End)?;
    }
    let answered = consumer.offsets_for_times(list, ADMIN_TIMEOUT)?;
    Ok(answered
        .elements()
        .iter()
        .filter(|e| e.error().is_ok())
        .filter_map(|e| match e.offset() {
            Offset::Offset(end) => Some(((e.topic().to_owned(), e.partition()), end)),
            _ => None,
        })
        .collect())
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

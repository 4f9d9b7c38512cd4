//! Kafka through rdkafka: client configuration and cluster checks. Only the
//! Kafka protocol is used, so any compatible broker works.

mod cluster;
mod group;
mod partition;
mod polling;
mod replication;
mod streams;
mod transactions;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

pub use cluster::{Cluster, TopicSettings};
pub use group::{GroupTiming, Ownership, CONSUMER_COUNTS};
pub use partition::PartitionStream;
pub use rdkafka::consumer::{Consumer, StreamConsumer};
pub use rdkafka::error::KafkaError;
pub use rdkafka::message::{BorrowedMessage, Message};
pub use rdkafka::{Offset, TopicPartitionList};
pub use replication::Replication;
pub use streams::{Streams, StreamsConfig, Subscription};
pub use transactions::TransactionalProducer;

/// How long a produce may wait for the broker before it is reported failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long admin and metadata requests wait.
pub(crate) const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KafkaClientError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("kafka check was interrupted")]
    Interrupted,
    #[error("kafka: topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("kafka: topic {0} does not exist")]
    NoSuchTopic(String),
}

impl KafkaClientError {
    /// Kafka refused a record for its size (over `message.max.bytes`).
    pub fn is_record_too_large(&self) -> bool {
        matches!(
            self,
            Self::Kafka(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize
            ))
        )
    }
}

/// Whether `error`, or an error it came from, says the Kafka cluster could
/// not be reached (no broker answered in time), as opposed to refusing.
pub fn is_outage(error: &(dyn std::error::Error + 'static)) -> bool {
    use RDKafkaErrorCode::{
        AllBrokersDown, BrokerTransportFailure, NetworkException, OperationTimedOut,
        RequestTimedOut,
    };
    let mut current = Some(error);
    while let Some(error) = current {
        let code = match error.downcast_ref::<KafkaClientError>() {
            Some(KafkaClientError::Interrupted) => return true,
            Some(KafkaClientError::Kafka(e)) => e.rdkafka_error_code(),
            _ => error
                .downcast_ref::<KafkaError>()
                .and_then(KafkaError::rdkafka_error_code),
        };
        if matches!(
            code,
            Some(
                AllBrokersDown
                    | BrokerTransportFailure
                    | NetworkException
                    | OperationTimedOut
                    | RequestTimedOut
            )
        ) {
            return true;
        }
        current = error.source();
    }
    false
}

/// `(name, value)` pairs as the headers every record of a send carries;
/// `None` for none.
fn owned_headers(headers: &[(String, String)]) -> Option<OwnedHeaders> {
    (!headers.is_empty()).then(|| {
        headers.iter().fold(
            OwnedHeaders::new_with_capacity(headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v),
                })
            },
        )
    })
}

/// The base configuration every client of this service starts from.
pub fn client_config(brokers: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        // Fail metadata requests quickly instead of retrying for minutes.
        .set("socket.timeout.ms", "10000")
        // The service creates its topics itself. With a broker that has
        // `auto.create.topics.enable`, a metadata request naming a topic
        // would create it again after its deletion: the producer's periodic
        // refresh of every topic it ever wrote to does exactly that
        // (librdkafka's default is on for producers and admin clients).
        .set("allow.auto.create.topics", "false");
    config
}

/// A consumer of its own, outside the consumer group's assignment (the
/// instance reads its streams through [`Streams`]): what the stream
/// benchmark reads with to measure librdkafka's own rate. Its offsets live
/// elsewhere: only committed transactional data, never an automatic commit.
pub fn consumer(
    brokers: &str,
    client_id: &str,
    group: &str,
) -> Result<StreamConsumer, KafkaClientError> {
    let consumer = client_config(brokers, client_id)
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", "10")
        .set("queued.max.messages.kbytes", "16384")
        .create()?;
    Ok(consumer)
}

/// Assigns `topic`'s partitions at `offsets` once the consumer knows the
/// topic's leader. Assigned before that, librdkafka finds no leader for the
/// offset lookup and retries it only after a fixed 500 ms.
pub async fn assign(
    consumer: StreamConsumer,
    topic: &str,
    offsets: Vec<(i32, Offset)>,
) -> Result<StreamConsumer, KafkaClientError> {
    let mut assignment = TopicPartitionList::new();
    for (partition, offset) in offsets {
        assignment.add_partition_offset(topic, partition, offset)?;
    }
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        consumer.fetch_metadata(Some(&topic), ADMIN_TIMEOUT)?;
        consumer.assign(&assignment)?;
        Ok(consumer)
    })
    .await
    .map_err(|_| KafkaClientError::Interrupted)?
}

/// The service's one producer: idempotent, acknowledged by all in-sync replicas.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    /// Creates the producer; it connects lazily.
    pub fn connect(brokers: &str, client_id: &str) -> Result<Self, KafkaClientError> {
        let inner = client_config(brokers, client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // `send_all` queues all of its records at once: they batch
            // without lingering (as in the transactional producer, whose
            // produce rate `scripts/bench.sh produce` compares with this).
            .set("linger.ms", "0")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .create()?;
        Ok(Self { inner })
    }

    /// Produces every `(key, payload)` to `topic` and returns once the broker
    /// acknowledged all of them, or the first failure.
    pub async fn send_all(
        &self,
        topic: &str,
        records: Vec<(String, Vec<u8>)>,
    ) -> Result<usize, KafkaClientError> {
        self.send_all_with_headers(topic, records, &[]).await
    }

    /// Like [`Producer::send_all`], with the same `(name, value)` headers on
    /// every record (e.g. the W3C trace context of the producing request).
    /// Every record that fails is counted in the producer error metric.
    pub async fn send_all_with_headers(
        &self,
        topic: &str,
        records: Vec<(String, Vec<u8>)>,
        headers: &[(String, String)],
    ) -> Result<usize, KafkaClientError> {
        let count = records.len();
        let owned = owned_headers(headers);
        let sends = records.iter().map(|(key, payload)| {
            let mut record = FutureRecord::to(topic).key(key).payload(payload);
            if let Some(headers) = &owned {
                record = record.headers(headers.clone());
            }
            self.inner.send(record, Timeout::After(DELIVERY_TIMEOUT))
        });
        let mut first_error = None;
        for outcome in futures_util::future::join_all(sends).await {
            if let Err((error, _)) = outcome {
                crate::telemetry::metrics::producer_error(error_kind(&error));
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(KafkaClientError::Kafka(error)),
            None => Ok(count),
        }
    }
}

/// A short fixed word for a produce failure, as the error metric's label.
fn error_kind(error: &KafkaError) -> &'static str {
    match error {
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => "queue_full",
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => "timeout",
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge) => "too_large",
        KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition) => "unknown_topic",
        KafkaError::MessageProduction(_) => "broker",
        KafkaError::Canceled => "canceled",
        _ => "other",
    }
}

/// When a consumed record was made: its timestamp (the producer's create
/// time or the broker's append time, whichever the topic keeps), or now for
/// a record without one (only the pre-0.10 message format has none).
pub fn record_time(message: &BorrowedMessage<'_>) -> chrono::DateTime<chrono::Utc> {
    message
        .timestamp()
        .to_millis()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_else(chrono::Utc::now)
}

/// The headers of a consumed message as `(name, value)`; headers without a
/// value are skipped.
pub fn headers<'a>(message: &'a BorrowedMessage<'_>) -> impl Iterator<Item = (&'a str, &'a [u8])> {
    message
        .headers()
        .into_iter()
        .flat_map(|headers| headers.iter())
        .filter_map(|header| Some((header.key, header.value?)))
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

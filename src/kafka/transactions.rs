//! The transactional producer: every request's records become visible to
//! `read_committed` consumers all together or not at all (KIP-98).
//!
//! A librdkafka producer runs one transaction at a time, so requests are
//! committed in groups: one thread takes the requests waiting (up to a
//! bound), produces them all in one transaction and commits it, and every
//! request of the group gets the outcome. Each request is still atomic;
//! the commit's round trip is shared instead of paid per request.
//!
//! The `transactional.id` is given by the caller and must be stable across
//! restarts of one instance and unique among instances: a restarted instance
//! then fences its zombie (the broker refuses the old producer's epoch).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use tokio::sync::{mpsc, oneshot};

use super::{client_config, error_kind, owned_headers, KafkaClientError};

/// The most requests, and records, one transaction takes.
const GROUP_REQUESTS: usize = 256;
const GROUP_RECORDS: usize = 50_000;
/// How many requests may wait for the producer before callers wait to queue.
const QUEUE: usize = 1024;
/// How long a transaction's deliveries and commit may take together: long
/// enough for a partition leader to move, short enough for a client's
/// timeout to see the 503 rather than hanging up first. While Kafka is down
/// a request waits about this long, plus what the transaction before it
/// takes to give up (an abort, then a fresh producer's init).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
const INIT_TIMEOUT: Duration = Duration::from_secs(5);
const ABORT_TIMEOUT: Duration = Duration::from_secs(2);
/// The broker aborts a transaction left open this long (above the commit timeout).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to serve delivery reports, when librdkafka's queue is full,
/// before trying again.
const QUEUE_FULL_POLL: Duration = Duration::from_millis(10);

type Records = Vec<(String, Vec<u8>)>;

struct Request {
    topic: String,
    records: Records,
    headers: Option<OwnedHeaders>,
    reply: oneshot::Sender<Result<usize, KafkaClientError>>,
}

impl Request {
    fn answer(self, outcome: Result<(), &KafkaError>) {
        let outcome = match outcome {
            Ok(()) => Ok(self.records.len()),
            Err(error) => {
                for _ in &self.records {
                    crate::telemetry::metrics::producer_error(error_kind(error));
                }
                Err(KafkaClientError::Kafka(error.clone()))
            }
        };
        // The caller may have given up waiting; nothing to tell then.
        let _ = self.reply.send(outcome);
    }
}

/// A handle on the producer thread; cheap to clone.
#[derive(Clone)]
pub struct TransactionalProducer {
    requests: mpsc::Sender<Request>,
}

impl TransactionalProducer {
    /// Starts the producer thread. The librdkafka producer is made (and its
    /// transactions initialised) at the first request, and again after a
    /// failure it cannot recover from, so this works while Kafka is down.
    pub fn start(
        brokers: &str,
        client_id: &str,
        transactional_id: &str,
    ) -> Result<Self, KafkaClientError> {
        let mut config = client_config(brokers, client_id);
        config
            .set("transactional.id", transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // A request's records are all queued at once and then flushed:
            // lingering for more would only delay the commit.
            .set("linger.ms", "0")
            .set("message.timeout.ms", COMMIT_TIMEOUT.as_millis().to_string())
            .set(
                "transaction.timeout.ms",
                TRANSACTION_TIMEOUT.as_millis().to_string(),
            );
        let (requests, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("kafka-transactions".into())
            .spawn(move || run(&config, queue))
            .map_err(|_| KafkaClientError::Interrupted)?;
        Ok(Self { requests })
    }

    /// Produces every `(key, payload)` to `topic`, with the same `(name,
    /// value)` headers on each, in one transaction; returns once it
    /// committed (all visible), or its error (none visible). A record
    /// Kafka refuses by itself (larger than `message.max.bytes`) fails only
    /// its own request.
    pub async fn send_all_with_headers(
        &self,
        topic: &str,
        records: Records,
        headers: &[(String, String)],
    ) -> Result<usize, KafkaClientError> {
        let headers = owned_headers(headers);
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            topic: topic.to_owned(),
            records,
            headers,
            reply,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| KafkaClientError::Interrupted)?;
        outcome.await.map_err(|_| KafkaClientError::Interrupted)?
    }
}

impl std::fmt::Debug for TransactionalProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalProducer")
            .finish_non_exhaustive()
    }
}

/// A `BaseProducer`, polled by this thread alone (see [`deliver`]).
type Inner = BaseProducer;

/// The producer thread: one group of requests, one transaction, until every
/// handle is gone.
fn run(config: &ClientConfig, mut queue: mpsc::Receiver<Request>) {
    let mut producer: Option<Inner> = None;
    while let Some(first) = queue.blocking_recv() {
        let mut records = first.records.len();
        let mut group = vec![first];
        while group.len() < GROUP_REQUESTS && records < GROUP_RECORDS {
            match queue.try_recv() {
                Ok(request) => {
                    records += request.records.len();
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        let ready = match producer.take() {
            Some(ready) => Ok(ready),
            None => init(config),
        };
        match ready {
            Ok(ready) => producer = commit_group(ready, group),
            Err(error) => {
                tracing::warn!(%error, "kafka transactions cannot start; the requests fail");
                for request in group {
                    request.answer(Err(&error));
                }
            }
        }
    }
}

fn init(config: &ClientConfig) -> Result<Inner, KafkaError> {
    let producer: Inner = config.create()?;
    // Also fences an earlier producer of the same id and aborts what it left open.
    producer.init_transactions(INIT_TIMEOUT)?;
    Ok(producer)
}

/// Commits `group` in one transaction and answers each request. Returns the
/// producer when it can take the next transaction, `None` when it must be
/// made again (its state is unknown or it was fenced).
fn commit_group(producer: Inner, mut group: Vec<Request>) -> Option<Inner> {
    loop {
        if group.is_empty() {
            return Some(producer);
        }
        if let Err(error) = producer.begin_transaction() {
            return give_up(producer, group, &error);
        }
        match enqueue(&producer, &group) {
            Enqueued::All => {}
            Enqueued::Refused(index, error) => {
                // That request alone cannot be sent; the rest go again, in a
                // transaction of their own.
                group.remove(index).answer(Err(&error));
                // As long as a commit: the records queued before it go first.
                if let Err(error) = abort(&producer, COMMIT_TIMEOUT) {
                    return give_up(producer, group, &error);
                }
                continue;
            }
            Enqueued::Failed(error) => return give_up(producer, group, &error),
        }
        let deadline = Instant::now() + COMMIT_TIMEOUT;
        if let Err(error) = deliver(&producer, deadline) {
            return give_up(producer, group, &error);
        }
        return match producer.commit_transaction(until(deadline)) {
            Ok(()) => {
                for request in group {
                    request.answer(Ok(()));
                }
                Some(producer)
            }
            Err(error) => give_up(producer, group, &error),
        };
    }
}

/// How long one wait for delivery reports lasts.
const DELIVERY_POLL: Duration = Duration::from_millis(1);

/// Waits until every record sent is delivered (or failed: the commit then
/// fails). rdkafka's `flush`, which `commit_transaction` calls first, polls
/// in steps of 100 ms that each last their whole 100 ms (its `poll` loops to
/// the deadline), so every transaction took 100 ms: 10 requests a second.
/// Drained here in 1 ms steps, the commit's own flush finds nothing left.
fn deliver(producer: &Inner, deadline: Instant) -> Result<(), KafkaError> {
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        producer.poll(DELIVERY_POLL);
    }
    Ok(())
}

/// The time left until `deadline` (at least a millisecond: librdkafka reads
/// a zero timeout as "do not wait" only for some calls).
fn until(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Aborts the open transaction once what it queued is delivered (into the
/// aborted transaction: never visible). librdkafka's abort needs those
/// delivery reports served first, and only this thread polls. (Purging the
/// queue instead leaves a gap in the idempotent sequence numbers, which
/// fails the next transaction.)
fn abort(producer: &Inner, timeout: Duration) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    deliver(producer, deadline)?;
    producer.abort_transaction(until(deadline))
}

enum Enqueued {
    All,
    /// Request `index` has a record Kafka refuses by itself.
    Refused(usize, KafkaError),
    /// The producer cannot take records now.
    Failed(KafkaError),
}

fn enqueue(producer: &Inner, group: &[Request]) -> Enqueued {
    for (index, request) in group.iter().enumerate() {
        for (key, payload) in &request.records {
            let mut record = BaseRecord::to(&request.topic).key(key).payload(payload);
            if let Some(headers) = &request.headers {
                record = record.headers(headers.clone());
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // Room comes as deliveries complete.
                        record = back;
                        producer.poll(QUEUE_FULL_POLL);
                    }
                    Err((
                        error @ KafkaError::MessageProduction(
                            RDKafkaErrorCode::MessageSizeTooLarge
                            | RDKafkaErrorCode::InvalidMessageSize,
                        ),
                        _,
                    )) => return Enqueued::Refused(index, error),
                    Err((error, _)) => return Enqueued::Failed(error),
                }
            }
        }
    }
    Enqueued::All
}

/// The transaction failed: every request of the group fails (none of their
/// records becomes visible). An abortable error is aborted and the producer
/// kept; any other leaves the transaction's fate to the broker (a commit
/// that timed out may still complete; a retry is deduplicated by
/// `statement_id`), and the producer is made again, which aborts whatever
/// it left open.
fn give_up(producer: Inner, group: Vec<Request>, error: &KafkaError) -> Option<Inner> {
    let requests = group.len();
    for request in group {
        request.answer(Err(error));
    }
    let abortable = matches!(error, KafkaError::Transaction(e) if e.txn_requires_abort());
    if abortable && abort(&producer, ABORT_TIMEOUT).is_ok() {
        tracing::warn!(%error, requests, "kafka transaction aborted");
        return Some(producer);
    }
    let fenced = matches!(
        error,
        KafkaError::Transaction(e) if e.code() == RDKafkaErrorCode::ProducerFenced
    );
    if fenced {
        tracing::error!(
            %error,
            "another producer uses this instance's transactional.id: is INSIKT_INSTANCE_ID unique?"
        );
    } else {
        tracing::warn!(%error, requests, "kafka transaction failed; the producer starts afresh");
    }
    None
}

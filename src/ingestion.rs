//! Statement ingestion, the use case behind `POST /imports/{id}/statements`:
//! every item of a body is parsed and checked (its own rules, then that its
//! citizen belongs to the import), and only when all pass are they produced
//! to the import's stream in one Kafka transaction, under a producer span
//! whose context the job storing them continues; the acceptance is audited.
//! Knows neither HTTP nor rdkafka: the jobs' supervisor holds the stream.

use tracing::Instrument;

use crate::audit::Origin;
use crate::db::{DbError, Pool};
use crate::jobs::{JobsError, SupervisorHandle};
use crate::limits::Capped;
use crate::statements::{self, Statement};
use crate::telemetry;

/// At most this many problems are named when a body is refused.
pub const MAX_REPORTED: usize = 100;

/// What was accepted: how many statements Kafka acknowledged, and the job
/// that will store them.
#[derive(Debug)]
pub struct Ingested {
    pub accepted: usize,
    pub job: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{message}")]
    Malformed { line: usize, message: String },
    #[error("no statements in the body")]
    Empty,
    /// Every problem counted in `total`; the first [`MAX_REPORTED`] named,
    /// in item order, as (`[index].field`, reason).
    #[error("{total} statement problem(s); nothing was accepted")]
    Invalid {
        total: usize,
        named: Vec<(String, String)>,
    },
    #[error("no import {0}")]
    ImportNotFound(i64),
    #[error("the stream of import {0} has expired")]
    Expired(i64),
    /// The job has no topic yet: Kafka was unreachable when it was created.
    #[error("the import's stream is not available yet; retry later")]
    StreamNotReady,
    #[error("a statement is larger than the largest Kafka record; nothing was accepted")]
    RecordTooLarge,
    #[error("Kafka did not commit the statements; none was accepted, retry later")]
    KafkaUnavailable,
    #[error("the check of the body stopped: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Jobs(#[from] JobsError),
}

/// Checks and produces the statements of `body` (a JSON array, or NDJSON when
/// `ndjson`) for `import_id`: all of them or none.
pub async fn ingest(
    pool: &Pool,
    supervisor: &SupervisorHandle,
    import_id: i64,
    body: bytes::Bytes,
    ndjson: bool,
    origin: &Origin,
) -> Result<Ingested, IngestError> {
    let client = pool.get().await.map_err(DbError::from)?;
    let exists = crate::citizens::import_exists(&client, import_id).await?;
    drop(client);
    // Parsing and checking millions of items is CPU work: off the threads
    // that serve other requests, one item at a time (each becomes its
    // record, or a problem while fewer than MAX_REPORTED are named).
    let checked = tokio::task::spawn_blocking(move || {
        check_items(&body, ndjson, exists.then_some(import_id))
    })
    .await
    .map_err(|e| IngestError::Interrupted(e.to_string()))??;
    if checked.items == 0 {
        return Err(IngestError::Empty);
    }
    if !exists {
        return Err(IngestError::ImportNotFound(import_id));
    }
    let Checked {
        problems, records, ..
    } = checked;
    refuse_strangers(pool, import_id, problems, &records).await?;
    let count = records.len();
    // Through the supervisor only when the job has no topic yet.
    let job = match supervisor.stream(import_id).await? {
        Some(job) if job.topic_ready => job,
        _ => supervisor.ensure(import_id).await?,
    };
    if job.expired {
        return Err(IngestError::Expired(import_id));
    }
    if !job.topic_ready {
        return Err(IngestError::StreamNotReady);
    }
    let records: Vec<(String, Vec<u8>)> = records
        .into_iter()
        .map(|r| (r.citizen_id.to_string(), r.payload))
        .collect();
    // A producer span whose W3C context goes into every record's headers, so
    // the job storing them continues this request's trace.
    let span = tracing::info_span!(
        "kafka.produce",
        otel.name = %format_args!("{} publish", job.topic),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.destination.name = %job.topic,
        messaging.batch.message_count = count as i64,
        job = %job.job,
        import = import_id,
    );
    let headers = telemetry::inject_context(&span);
    let accepted = supervisor
        .publish(&job, records, &headers)
        .instrument(span)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "produce failed");
            if e.is_record_too_large() {
                IngestError::RecordTooLarge
            } else {
                IngestError::KafkaUnavailable
            }
        })?;
    // The change is Kafka's transaction, not ours: the row follows its commit.
    let entry = origin
        .entry("accepted")
        .import(import_id)
        .job(&job.job)
        .detail(serde_json::json!({ "statements": accepted }));
    if let Err(error) = entry.record_alone(pool).await {
        tracing::error!(%error, import_id, "audit row not written");
    }
    Ok(Ingested {
        accepted,
        job: job.job,
    })
}

/// [`IngestError::Invalid`] when the body had problems or names citizens
/// the import does not have: both lists are in item order, so the first
/// problems of the body are the first of their union.
async fn refuse_strangers(
    pool: &Pool,
    import_id: i64,
    problems: Capped<(usize, String, String)>,
    records: &[Record],
) -> Result<(), IngestError> {
    let mut ids: Vec<i32> = records.iter().map(|r| r.citizen_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let client = pool.get().await.map_err(DbError::from)?;
    let unknown = statements::unknown_citizens(&client, import_id, &ids).await?;
    drop(client);
    let strangers = records.iter().filter(|r| unknown.contains(&r.citizen_id));
    let total = problems.total() + strangers.clone().count();
    if total == 0 {
        return Ok(());
    }
    let mut named = problems.into_items();
    named.extend(strangers.take(MAX_REPORTED).map(|r| {
        (
            r.index,
            format!("[{}].citizen_id", r.index),
            format!("no citizen {} in import {import_id}", r.citizen_id),
        )
    }));
    named.sort_by_key(|(index, _, _)| *index);
    let named = named
        .into_iter()
        .take(MAX_REPORTED)
        .map(|(_, path, reason)| (path, reason))
        .collect();
    Err(IngestError::Invalid { total, named })
}

/// A statement that passed its own rules, as it goes to the topic.
struct Record {
    index: usize,
    citizen_id: i32,
    payload: Vec<u8>,
}

/// What reading a body found: how many items, their records, the first
/// problems (with their item's index) and how many in all.
struct Checked {
    items: usize,
    records: Vec<Record>,
    problems: Capped<(usize, String, String)>,
}

/// Reads and checks every item of a body; `import_id` is `None` when the
/// import does not exist (then items are only counted: the answer is a 404).
fn check_items(body: &[u8], ndjson: bool, import_id: Option<i64>) -> Result<Checked, IngestError> {
    let mut records = Vec::new();
    let mut problems = Capped::new(MAX_REPORTED);
    let items = statements::read_items(body, ndjson, |index, item| {
        let Some(import_id) = import_id else {
            return;
        };
        match Statement::from_value(&item, Some(import_id)) {
            Ok(statement) => records.push(Record {
                index,
                citizen_id: statement.citizen_id,
                payload: statement.to_payload(),
            }),
            Err(invalid) => problems.push_with(|| {
                (
                    index,
                    format!("[{index}].{}", invalid.field),
                    invalid.reason,
                )
            }),
        }
    })
    .map_err(|(line, message)| IngestError::Malformed { line, message })?;
    Ok(Checked {
        items,
        records,
        problems,
    })
}

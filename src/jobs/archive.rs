//! Expiry: the unconsumed rest of a stream (from the stored offsets to the
//! high watermark) goes to the archive store (`crate::archive`), one object
//! per partition and span of offsets, streamed as it is read; then the
//! job's manifest, then the job is `expired` with its offsets at the end.
//!
//! Each object is recorded in `job_archives`, together with the partition's
//! offsets moved to its end, in one durable transaction once its upload
//! completed: a crash (or a store outage) mid-upload leaves no row and no
//! visible object, and the job, restarted, archives again from its stored
//! offsets. Those commits wait for the disk (`synchronous_commit = on`):
//! once the offsets moved past a range nothing reads it from Kafka again,
//! so a lost commit would lose the only record of its object.

use std::collections::HashMap;
use std::time::Duration;

use super::repo::{self, JobRow};
use super::{Context, JobsError};
use crate::archive::{Line, Manifest, ObjectInfo, ObjectWriter};
use crate::kafka::{self, Message, Offset, PartitionStream, Streams};

/// How long the archive waits for the next message below the high watermark.
const IDLE: Duration = Duration::from_secs(5);

/// Whether a job failed because the archive store refused or could not be
/// reached: retried for as long as it lasts, never given up (the records
/// are gone once the topic's retention passes, archived or not).
pub fn is_store_outage(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(JobsError::ArchiveStore(crate::archive::ArchiveError::Store(_))) =
            error.downcast_ref::<JobsError>()
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// Archives what the job had not consumed, read through the instance's
/// consumer (`streams`, to which the job's partitions are assigned), and
/// marks it `expired`.
pub async fn expire(
    context: &Context,
    streams: &Streams,
    row: &JobRow,
    offsets: &HashMap<i32, i64>,
) -> Result<Manifest, JobsError> {
    let partitions = streams.partitions(&row.topic);
    if partitions.is_empty() {
        return Err(JobsError::NotAssigned(row.name.clone()));
    }
    let mut ends = Vec::new();
    for partition in partitions {
        let (low, high) = context
            .cluster
            .watermarks(&row.topic, partition, Duration::from_secs(10))
            .await?;
        let stored = offsets.get(&partition).copied().unwrap_or(low);
        if stored < low {
            // The broker deleted them before the job read them (retention).
            tracing::warn!(job = %row.name, partition, stored, low, "records lost before archiving");
        }
        let from = stored.max(low);
        ends.push((partition, high.max(from)));
        if from < high {
            archive_partition(context, streams, row, partition, from, high).await?;
        }
    }
    let mut client = context.pool.get().await?;
    let objects = objects(&client, &row.name).await?;
    let manifest = Manifest {
        job: row.name.clone(),
        topic: row.topic.clone(),
        import: row.import_id,
        count: objects.iter().map(|o| o.count).sum(),
        objects,
    };
    // Rewritten whole after a crash before the expiry's commit: idempotent.
    context
        .archive
        .put_manifest(&manifest)
        .await
        .map_err(JobsError::ArchiveStore)?;
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await?;
    for (partition, end) in &ends {
        repo::store_offset(&tx, &row.name, *partition, *end).await?;
    }
    tx.execute(
        "UPDATE jobs SET state = 'expired', owner = NULL, updated_at = now() WHERE name = $1",
        &[&row.name],
    )
    .await?;
    tx.commit().await?;
    crate::telemetry::metrics::set_job_state(&row.name, "expired");
    tracing::info!(job = %row.name, objects = manifest.objects.len(), records = manifest.count, "job expired and archived");
    Ok(manifest)
}

/// The job's archived objects, in partition and offset order.
pub async fn objects(client: &crate::db::Client, job: &str) -> Result<Vec<ObjectInfo>, JobsError> {
    let rows = client
        .query(
            "SELECT partition, from_offset, to_offset, messages, COALESCE(bytes, 0), \
                    COALESCE(sha256, ''), url \
               FROM job_archives WHERE job = $1 ORDER BY partition, from_offset",
            &[&job],
        )
        .await?;
    let object = |r: &tokio_postgres::Row| -> Result<ObjectInfo, tokio_postgres::Error> {
        Ok(ObjectInfo {
            partition: r.try_get(0)?,
            from_offset: r.try_get(1)?,
            to_offset: r.try_get(2)?,
            count: r.try_get(3)?,
            bytes: r.try_get(4)?,
            sha256: r.try_get(5)?,
            url: r.try_get(6)?,
        })
    };
    Ok(rows
        .iter()
        .map(object)
        .collect::<Result<_, _>>()
        .map_err(crate::db::DbError::from)?)
}

/// Archives `[from, high)` of one partition, an object per span of
/// `archive_object_offsets` offsets, each recorded once uploaded. The
/// partition is read from `from` on and paused again after.
async fn archive_partition(
    context: &Context,
    streams: &Streams,
    row: &JobRow,
    partition: i32,
    from: i64,
    high: i64,
) -> Result<(), JobsError> {
    let topic = &row.topic;
    streams.seek(topic, partition, Offset::Offset(from)).await?;
    let stream = streams.open(topic, partition)?;
    streams.resume(topic, partition)?;
    let result = async {
        let span = context.settings.archive_object_offsets.max(1);
        let mut start = from;
        let mut pending = None;
        while start < high {
            let end = (start + span).min(high);
            let (object, next) =
                archive_object(context, row, &stream, partition, start, end, pending.take())
                    .await?;
            record(context, row, partition, start, end, object).await?;
            pending = next;
            start = end;
        }
        Ok::<_, JobsError>(())
    }
    .await;
    drop(stream);
    if let Err(error) = streams.pause(topic, partition) {
        tracing::debug!(job = %row.name, partition, %error, "partition not paused");
    }
    result
}

/// What the reader took past an object's end: the next object's first record.
type Carried = Option<Line>;

/// Streams the records of `[start, end)` into one object; `None` when the
/// span held none (only transaction markers or aborted records).
#[allow(clippy::too_many_arguments)]
async fn archive_object(
    context: &Context,
    row: &JobRow,
    stream: &PartitionStream,
    partition: i32,
    start: i64,
    end: i64,
    carried: Carried,
) -> Result<(Option<crate::archive::Written>, Carried), JobsError> {
    let key = context.archive.object_key(&row.name, partition, start, end);
    let mut writer: Option<ObjectWriter> = None;
    let mut next = carried;
    let outcome = async {
        loop {
            let line = match next.take() {
                Some(line) => line,
                None => {
                    let message = match tokio::time::timeout(IDLE, stream.recv()).await {
                        // Nothing more below the watermark (e.g. transaction markers at the end).
                        Err(_) => break,
                        Ok(Err(error)) => return Err(JobsError::from(error)),
                        Ok(Ok(message)) => message,
                    };
                    Line {
                        partition,
                        offset: message.offset(),
                        key: message
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned()),
                        timestamp: Some(kafka::record_time(&message).timestamp_millis()),
                        payload: String::from_utf8_lossy(message.payload().unwrap_or_default())
                            .into_owned(),
                    }
                }
            };
            if line.offset >= end {
                // The next object's (or past the range: dropped by the caller).
                return Ok(Some(line));
            }
            if writer.is_none() {
                writer = Some(
                    context
                        .archive
                        .create(&key)
                        .await
                        .map_err(JobsError::ArchiveStore)?,
                );
            }
            let w = writer.as_mut().expect("just created");
            w.write(&line).await.map_err(JobsError::ArchiveStore)?;
            if line.offset + 1 >= end {
                break;
            }
        }
        Ok(None)
    }
    .await;
    match outcome {
        Ok(carried) => {
            let written = match writer {
                Some(w) => Some(w.finish().await.map_err(JobsError::ArchiveStore)?),
                None => None,
            };
            Ok((written, carried))
        }
        Err(error) => {
            if let Some(w) = writer {
                w.abort().await;
            }
            Err(error)
        }
    }
}

/// Records an uploaded object and moves the partition's offsets to its
/// end, durably, in one transaction.
async fn record(
    context: &Context,
    row: &JobRow,
    partition: i32,
    from: i64,
    to: i64,
    object: Option<crate::archive::Written>,
) -> Result<(), JobsError> {
    let mut client = context.pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await?;
    if let Some(object) = &object {
        tx.execute(
            "INSERT INTO job_archives (job, partition, from_offset, to_offset, messages, url, bytes, sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (job, partition, from_offset) \
             DO UPDATE SET to_offset = EXCLUDED.to_offset, messages = EXCLUDED.messages, \
                url = EXCLUDED.url, bytes = EXCLUDED.bytes, sha256 = EXCLUDED.sha256, created_at = now()",
            &[
                &row.name,
                &partition,
                &from,
                &to,
                &object.count,
                &context.archive.url_of(&object.key),
                &object.bytes,
                &object.sha256,
            ],
        )
        .await?;
    }
    repo::store_offset(&tx, &row.name, partition, to).await?;
    tx.commit().await?;
    tracing::info!(job = %row.name, partition, from, to, records = object.as_ref().map_or(0, |o| o.count), "archive object recorded");
    Ok(())
}

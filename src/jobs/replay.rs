//! Replay: a job's archive read back into an import, through the stream's
//! own batch write (`statements::write_replayed`), so it is stored exactly
//! once however often it is replayed (statement ids already stored are
//! skipped) and what the import cannot take becomes a dead letter.
//!
//! A replayed statement is stored with `kafka_partition = -1 - partition`
//! (and its archived offset): the count catch-up of the import's own job
//! goes by its topic's partitions (never negative), so it never counts a
//! replayed statement again; a replay adds its counts in its own
//! transactions instead.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{archive, repo, JobsError};
use crate::archive::{ArchiveError, ArchiveStore};
use crate::db::Pool;
use crate::statements::{self, Batch, Received, Rejected};

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub job: String,
    pub import: i64,
    pub objects: u64,
    /// Lines read from the objects.
    pub read: u64,
    pub stored: u64,
    /// Statement ids the import already had (an earlier replay, or the stream).
    pub duplicates: u64,
    pub dead_letters: u64,
}

/// The partition a replayed record is stored under (see the module docs).
pub fn replayed_partition(partition: i32) -> i32 {
    -1 - partition
}

/// How many records a replay is going to read: the sum of the job's objects'.
pub async fn total(pool: &Pool, job: &str) -> Result<i64, JobsError> {
    let client = pool.get().await?;
    Ok(archive::objects(&client, job)
        .await?
        .iter()
        .map(|o| o.count)
        .sum())
}

/// Replays `job`'s archive into import `import_id` in batches of
/// `batch_size`, calling `progress` with the lines read so far.
pub async fn replay(
    pool: &Pool,
    store: &ArchiveStore,
    job: &str,
    import_id: i64,
    batch_size: usize,
    progress: impl Fn(u64),
) -> Result<Replayed, JobsError> {
    let mut client = pool.get().await?;
    let row = repo::by_name(&client, job)
        .await?
        .ok_or_else(|| JobsError::NotFound(job.to_owned()))?;
    if !crate::citizens::import_exists(&client, import_id).await? {
        return Err(JobsError::NoImport(import_id));
    }
    let objects = archive::objects(&client, job).await?;
    if objects.is_empty() && row.state != "expired" {
        return Err(JobsError::NoArchive(job.to_owned()));
    }
    let citizens = statements::citizen_ids(&client, import_id).await?;
    // Dead letters are unique per job label and offset: one label per target.
    let label = format!("replay:{job}:{import_id}");
    let mut done = Replayed {
        job: job.to_owned(),
        import: import_id,
        ..Replayed::default()
    };
    let batch_size = batch_size.max(1);
    for object in &objects {
        let key = store.key_of(&object.url).ok_or_else(|| {
            JobsError::ArchiveStore(ArchiveError::Corrupt {
                key: object.url.clone(),
                reason: format!("not under the configured archive {}", store.url()),
            })
        })?;
        let mut lines = store.lines(&key).await?;
        let mut batch = new_batch(batch_size);
        let mut index = 0i64;
        loop {
            let line = lines.next().await?;
            let Some(line) = line else { break };
            done.read += 1;
            match line {
                Ok(line) => {
                    let ts = line
                        .timestamp
                        .and_then(DateTime::<Utc>::from_timestamp_millis);
                    let partition = replayed_partition(line.partition);
                    match super::reader::accept(line.payload.as_bytes(), row.import_id, &citizens) {
                        Ok(mut statement) => {
                            statement.import_id = import_id;
                            batch.accepted.push(Received {
                                ts: statement.ts.or(ts).unwrap_or_else(Utc::now),
                                statement,
                                partition,
                                offset: line.offset,
                            });
                        }
                        Err(reason) => batch.rejected.push(Rejected {
                            partition,
                            offset: line.offset,
                            payload: line.payload.into_bytes(),
                            reason,
                        }),
                    }
                }
                // Not a record at all: kept under a place no record has.
                Err((raw, reason)) => batch.rejected.push(Rejected {
                    partition: replayed_partition(object.partition),
                    offset: object.from_offset + index,
                    payload: raw,
                    reason,
                }),
            }
            index += 1;
            if batch.accepted.len() + batch.rejected.len() >= batch_size {
                write(&mut client, &label, import_id, &batch, &mut done).await?;
                batch = new_batch(batch_size);
                progress(done.read);
            }
        }
        write(&mut client, &label, import_id, &batch, &mut done).await?;
        progress(done.read);
        // Checked once the whole object was read (and written: the writes
        // are idempotent, so a replay after fixing the object is exact).
        let sha256 = lines.sha256();
        if !object.sha256.is_empty() && sha256 != object.sha256 {
            return Err(JobsError::ArchiveStore(ArchiveError::Corrupt {
                key: key.to_string(),
                reason: format!("sha256 {sha256}, recorded {}", object.sha256),
            }));
        }
        done.objects += 1;
    }
    tracing::info!(?done, "archive replayed");
    Ok(done)
}

fn new_batch(capacity: usize) -> Batch {
    Batch {
        accepted: Vec::with_capacity(capacity),
        durable: true,
        ..Batch::default()
    }
}

async fn write(
    client: &mut crate::db::Client,
    label: &str,
    import_id: i64,
    batch: &Batch,
    done: &mut Replayed,
) -> Result<(), JobsError> {
    if batch.accepted.is_empty() && batch.rejected.is_empty() {
        return Ok(());
    }
    let written = statements::write_replayed(client, label, import_id, batch).await?;
    done.stored += written.stored;
    done.duplicates += written.duplicates;
    done.dead_letters += written.dead_letters;
    Ok(())
}

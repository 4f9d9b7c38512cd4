//! Erasure: an import with everything derived from it, or one resident.
//!
//! The PostgreSQL part of each is one transaction, audited in it. An import's
//! job is stopped first (so no batch of it lands after the erasure), and its
//! topic and archive objects are deleted once the transaction committed (an
//! outage there is reported, not hidden). A resident's job is stopped for
//! the erasure and started again, so it reloads the import's residents and
//! refuses the erased one's statements from then on.
//!
//! What cannot be erased here: records still within the topic's retention
//! when Kafka cannot be reached, archive objects in a store that cannot be
//! reached, and a resident's statements that the job had not yet read from
//! the topic when they were erased (the job dead-letters them on its next
//! start: erase the resident again once the job's lag is 0). docs/access.md,
//! says how to reach them.

use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::Origin;
use crate::citizens::CitizenId;
use crate::db::{DbError, Pool};
use crate::jobs::{JobsError, SupervisorHandle};
use crate::kafka::Cluster;

/// The tables holding an import's data by `import_id` without a foreign key
/// to `imports` (deleted explicitly; the others cascade). A module that adds
/// such a table adds it here.
const IMPORT_TABLES: [&str; 3] = ["statements", "statement_counts", "statement_counts_offsets"];

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error("import {0} does not exist")]
    ImportNotFound(i64),
    #[error("citizen {citizen_id} does not exist in import {import_id}")]
    CitizenNotFound { import_id: i64, citizen_id: i64 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Jobs(#[from] JobsError),
}

impl From<tokio_postgres::Error> for ErasureError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Db(error.into())
    }
}

impl From<deadpool_postgres::PoolError> for ErasureError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Db(error.into())
    }
}

/// What an import's erasure removed, and what it could not.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErasedImport {
    pub import_id: i64,
    pub citizens: u64,
    pub statements: u64,
    pub dead_letters: u64,
    /// The import's job (also removed), if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// `deleted`, `none` (the job had no topic), or why it is still there.
    pub topic: String,
    /// Archive objects deleted (an expired job's unconsumed records).
    pub archive_objects: usize,
    /// Why archive objects may remain, if they may.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_error: Option<String>,
}

/// What a resident's erasure removed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErasedCitizen {
    pub import_id: i64,
    pub citizen_id: i32,
    /// Relatives whose lists no longer name the resident.
    pub relatives: usize,
    pub statements: u64,
    pub dead_letters: u64,
}

/// Erases import `import_id`: its residents, statements, counts, dead
/// letters, job, topic and archive objects.
pub async fn erase_import(
    pool: &Pool,
    supervisor: &SupervisorHandle,
    cluster: &Cluster,
    import_id: i64,
    origin: &Origin,
) -> Result<ErasedImport, ErasureError> {
    if !crate::citizens::import_exists(&*pool.get().await?, import_id).await? {
        return Err(ErasureError::ImportNotFound(import_id));
    }
    let stream = supervisor.stream(import_id).await?;
    if let Some(stream) = stream.as_ref().filter(|s| !s.expired) {
        stop_for_erasure(supervisor, &stream.job).await?;
    }

    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The job's row first: its delete waits for a batch the job may still be
    // committing (which holds a key-share lock on it) and makes any later
    // one fail on its offsets' foreign key, so no statement lands after.
    tx.execute("DELETE FROM jobs WHERE import_id = $1", &[&import_id])
        .await?;
    let mut statements = 0;
    for table in IMPORT_TABLES {
        let deleted = tx
            .execute(
                &format!("DELETE FROM {table} WHERE import_id = $1"),
                &[&import_id],
            )
            .await?;
        if table == "statements" {
            statements = deleted;
        }
    }
    let dead_letters = tx
        .execute(
            "DELETE FROM dead_letters WHERE import_id = $1",
            &[&import_id],
        )
        .await?;
    let citizens = tx
        .execute("DELETE FROM citizens WHERE import_id = $1", &[&import_id])
        .await?;
    if tx
        .execute("DELETE FROM imports WHERE import_id = $1", &[&import_id])
        .await?
        == 0
    {
        return Err(ErasureError::ImportNotFound(import_id)); // erased meanwhile
    }
    let job = stream.as_ref().map(|s| s.job.clone());
    let mut entry = origin.entry("erased").import(import_id).detail(
        json!({"citizens": citizens, "statements": statements, "dead_letters": dead_letters}),
    );
    if let Some(job) = &job {
        entry = entry.job(job);
    }
    entry.record(&tx).await?;
    tx.commit().await?;
    drop(client);
    tracing::info!(
        import_id,
        citizens,
        statements,
        dead_letters,
        "import erased"
    );

    let topic = match stream.as_ref().filter(|s| s.topic_ready) {
        None => "none".to_owned(),
        Some(stream) => match cluster.delete_topic(&stream.topic).await {
            Ok(()) => "deleted".to_owned(),
            Err(error) => {
                tracing::warn!(import_id, topic = %stream.topic, %error, "erased import's topic not deleted");
                format!(
                    "not deleted (Kafka: {error}); its records go with the topic's retention \
                     or `kafka-topics --delete --topic {}`",
                    stream.topic
                )
            }
        },
    };
    let (archive_objects, archive_error) = match &job {
        None => (0, None),
        Some(job) => match supervisor.archive().delete_job(job).await {
            Ok(deleted) => (deleted, None),
            Err(error) => {
                tracing::warn!(import_id, job, %error, "erased import's archive not deleted");
                (
                    0,
                    Some(format!(
                        "not deleted ({error}); objects remain under {job}/"
                    )),
                )
            }
        },
    };
    Ok(ErasedImport {
        import_id,
        citizens,
        statements,
        dead_letters,
        job,
        topic,
        archive_objects,
        archive_error,
    })
}

/// Stops a job ahead of an erasure; one that expired or is gone is fine.
async fn stop_for_erasure(supervisor: &SupervisorHandle, job: &str) -> Result<(), JobsError> {
    match supervisor.stop(job).await {
        Ok(_) | Err(JobsError::Expired(_)) | Err(JobsError::NotFound(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Erases resident `citizen_id` of import `import_id`: their row, their
/// place in their relatives' lists, their statements, counts and dead
/// letters. The import's version moves on, so no kept answer shows them.
pub async fn erase_citizen(
    pool: &Pool,
    supervisor: &SupervisorHandle,
    import_id: i64,
    citizen_id: i64,
    origin: &Origin,
) -> Result<ErasedCitizen, ErasureError> {
    let not_found = ErasureError::CitizenNotFound {
        import_id,
        citizen_id,
    };
    if !crate::citizens::import_exists(&*pool.get().await?, import_id).await? {
        return Err(ErasureError::ImportNotFound(import_id));
    }
    let Some(id) = CitizenId::from_path(citizen_id) else {
        return Err(not_found);
    };
    // The job reloads the residents when it starts again: stop it for the
    // erasure (only if it runs at an operator's wish, which is then restored).
    let resume = match supervisor.stream(import_id).await? {
        Some(stream) if !stream.expired => {
            let running = supervisor
                .get(&stream.job)
                .await?
                .is_some_and(|job| job.desired == "running");
            if running {
                stop_for_erasure(supervisor, &stream.job).await?;
                Some(stream.job)
            } else {
                None
            }
        }
        _ => None,
    };
    let erased = erase_citizen_rows(pool, import_id, id, origin).await;
    if let Some(job) = resume {
        // Desired `running` is recorded first: should the start fail (Kafka
        // down), the reconciliation starts the job later.
        if let Err(error) = supervisor.resume(&job).await {
            tracing::warn!(%job, %error, "job not restarted after an erasure; reconciliation will");
        }
    }
    erased?.ok_or(not_found)
}

/// The PostgreSQL part of a resident's erasure, in one transaction; `None`
/// when the import has no such resident (nothing changed).
async fn erase_citizen_rows(
    pool: &Pool,
    import_id: i64,
    id: CitizenId,
    origin: &Origin,
) -> Result<Option<ErasedCitizen>, ErasureError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The lock PATCHes take turns on, and the version cached answers match.
    let locked = tx
        .query_opt(
            "UPDATE imports SET version = version + 1 WHERE import_id = $1 RETURNING version",
            &[&import_id],
        )
        .await?;
    if locked.is_none() {
        return Err(ErasureError::ImportNotFound(import_id));
    }
    let Some(row) = tx
        .query_opt(
            "DELETE FROM citizens WHERE import_id = $1 AND citizen_id = $2 RETURNING relatives",
            &[&import_id, &id],
        )
        .await?
    else {
        return Ok(None);
    };
    let relatives: Vec<CitizenId> = row.try_get(0)?;
    let others: Vec<CitizenId> = relatives.into_iter().filter(|r| *r != id).collect();
    // The other side of every relation: the relation stays symmetric.
    let unlisted = tx
        .execute(
            "UPDATE citizens SET relatives = array_remove(relatives, $2) \
             WHERE import_id = $1 AND citizen_id = ANY($3)",
            &[&import_id, &id, &others],
        )
        .await?;
    let statements = tx
        .execute(
            "DELETE FROM statements WHERE import_id = $1 AND citizen_id = $2",
            &[&import_id, &id],
        )
        .await?;
    tx.execute(
        "DELETE FROM statement_counts WHERE import_id = $1 AND citizen_id = $2",
        &[&import_id, &id],
    )
    .await?;
    // The insights' compact copies of the statements hold the resident too:
    // dropped, and made again from what `statements` keeps at the next ask.
    tx.execute(
        "INSERT INTO insight_state AS st (import_id, rebuild) VALUES ($1, true) \
         ON CONFLICT (import_id) DO UPDATE SET rebuild = true",
        &[&import_id],
    )
    .await?;
    tx.execute(
        "DELETE FROM insight_segments WHERE import_id = $1",
        &[&import_id],
    )
    .await?;
    let letters = dead_letters_of(&tx, import_id, id.get()).await?;
    let dead_letters = tx
        .execute("DELETE FROM dead_letters WHERE id = ANY($1)", &[&letters])
        .await?;
    origin
        .entry("erased")
        .import(import_id)
        .citizen(id.get())
        .detail(json!({
            "relatives": unlisted, "statements": statements, "dead_letters": dead_letters,
        }))
        .record(&tx)
        .await?;
    tx.commit().await?;
    tracing::info!(import_id, statements, dead_letters, "resident erased");
    Ok(Some(ErasedCitizen {
        import_id,
        citizen_id: id.get(),
        relatives: usize::try_from(unlisted).unwrap_or(usize::MAX),
        statements,
        dead_letters,
    }))
}

/// The ids of the import's dead letters whose payload names `citizen_id`
/// (a dead letter is a record the job could not store: its payload is read
/// as JSON here, leniently, since it may be anything).
async fn dead_letters_of(
    tx: &deadpool_postgres::Transaction<'_>,
    import_id: i64,
    citizen_id: i32,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    use futures_util::TryStreamExt;
    let rows = tx
        .query_raw(
            "SELECT id, payload FROM dead_letters WHERE import_id = $1",
            [&import_id],
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    let mut ids = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let payload: &[u8] = row.try_get(1)?;
        if names_citizen(payload, citizen_id) {
            ids.push(row.try_get(0)?);
        }
    }
    Ok(ids)
}

/// Whether a record's payload is about `citizen_id` (its `citizen_id` is
/// that number, or a string of it).
fn names_citizen(payload: &[u8], citizen_id: i32) -> bool {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(payload) else {
        return false;
    };
    match object.get("citizen_id") {
        Some(Value::Number(n)) => n.as_i64() == Some(i64::from(citizen_id)),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok() == Some(i64::from(citizen_id)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_matched_by_their_citizen() {
        assert!(names_citizen(br#"{"citizen_id": 7, "course": "x"}"#, 7));
        assert!(names_citizen(br#"{"citizen_id": "7"}"#, 7));
        assert!(!names_citizen(br#"{"citizen_id": 70}"#, 7));
        assert!(!names_citizen(br#"{"statement_id": "7"}"#, 7));
        assert!(!names_citizen(b"not json 7", 7));
        assert!(!names_citizen(br#"[7]"#, 7));
    }
}

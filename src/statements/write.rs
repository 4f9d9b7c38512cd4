//! The batch write a job performs: statements, dead letters and the job's
//! next offsets in one transaction, fenced by the job's ownership
//! ([`super::fence`]); the rows themselves go in through [`super::rows`].

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;

use super::fence::{not_owned, FENCE};
use super::rows::{
    copy_statements, encode_copy, insert_isolating, tied_to_a_record, Refusal, TooLarge,
    STATEMENT_COLUMNS,
};
use super::{Counts, Statement};
use crate::db::{Client, DbError, Transaction};

/// A statement read from a topic, with where it came from.
#[derive(Debug, Clone)]
pub struct Received {
    pub statement: Statement,
    pub partition: i32,
    pub offset: i64,
    /// What is stored as its time: the statement's `ts`, else its record's timestamp.
    pub ts: DateTime<Utc>,
}

/// A message a job could not accept.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
    pub reason: String,
}

/// What one job batch writes, all in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub accepted: Vec<Received>,
    pub rejected: Vec<Rejected>,
    /// The next offset to read, per partition.
    pub next_offsets: Vec<(i32, i64)>,
    /// The stored next offsets this batch continues from, per partition of
    /// `next_offsets` (absent: none stored yet). The batch commits only if
    /// they are what is stored ([`DbError::OffsetsMoved`] otherwise): a
    /// PostgreSQL crash can lose the last commits that the job believes made
    /// (they commit without waiting for the disk), and the job must then
    /// read those records again instead of storing offsets past them.
    pub expected_offsets: HashMap<i32, i64>,
    /// Commit only once the commit is on disk (`synchronous_commit = on`).
    /// Otherwise a PostgreSQL crash may lose the last commits, which is safe
    /// only while Kafka still holds their records to read again: the job
    /// asks for it near the end of its stream (see `jobs::job`).
    pub durable: bool,
}

/// What a batch write changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub stored: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
}

/// Writes a batch in ONE transaction: the statements (a statement id already
/// stored is skipped), the dead letters and the job's next offsets. Either
/// all of it is committed or none, which makes a replay after a crash exact.
/// Only while the job's row names `owner` as its owner ([`DbError::Stale`]
/// otherwise, nothing written): the row is locked until the commit, so an
/// instance that lost the job in a rebalance cannot advance it any more, and
/// the new owner's claim of the row waits for a batch in flight.
///
/// Statements go in by binary COPY, about twice as fast as an
/// `INSERT … ON CONFLICT` (no per-row speculative insertion, multi-row heap
/// writes). COPY cannot skip a conflict, so it runs under a savepoint: a
/// statement id stored by an earlier batch (a client resending) fails it
/// with a unique violation, and the batch's statements are then written with
/// `INSERT … ON CONFLICT DO NOTHING` instead, still in the same transaction.
pub async fn write_batch(
    client: &mut Client,
    job: &str,
    import_id: i64,
    batch: &Batch,
    owner: &str,
) -> Result<Written, DbError> {
    let (written, _) =
        write_batch_after(client, job, import_id, batch, owner, None, async { true }).await?;
    Ok(written)
}

/// [`write_batch`] for a batch whose predecessor may still be writing on
/// another connection, so that a job keeps two transactions busy: the
/// statements of both go in at the same time, and the commits stay in
/// stream order. This batch leaves the statement ids of `earlier` (the
/// predecessor, if still open) to it, so neither transaction ever waits for
/// the other's rows; then it waits for `earlier_committed` before it writes
/// its offsets and commits. When the predecessor does not commit (false),
/// neither does this batch ([`DbError::NotCommitted`]): its offsets would
/// skip what the predecessor failed to store. Also returns the counts of
/// the statements it stored, for [`fold_counts`](super::fold_counts).
pub async fn write_batch_after(
    client: &mut Client,
    job: &str,
    import_id: i64,
    batch: &Batch,
    owner: &str,
    earlier: Option<&Batch>,
    earlier_committed: impl std::future::Future<Output = bool>,
) -> Result<(Written, Counts), DbError> {
    write(
        client,
        job,
        import_id,
        batch,
        Some(owner),
        earlier,
        earlier_committed,
    )
    .await
}

/// Writes a batch replayed from a job's archive into an import, through the
/// stream's own path (a statement id already stored is skipped, a record
/// PostgreSQL refuses is a dead letter of `label`), without a job to fence
/// by or offsets to move; the counts of what it stored (and its insights
/// segment) are added in the same transaction (no job folds them later). Durable: the archive is
/// the only copy of these records.
pub async fn write_replayed(
    client: &mut Client,
    label: &str,
    import_id: i64,
    batch: &Batch,
) -> Result<Written, DbError> {
    debug_assert!(batch.next_offsets.is_empty() && batch.durable);
    let (written, _) = write(client, label, import_id, batch, None, None, async { true }).await?;
    Ok(written)
}

/// [`write_batch_after`], fenced by `owner` when there is one; without one
/// (a replay) the counts are added before the commit.
async fn write(
    client: &mut Client,
    job: &str,
    import_id: i64,
    batch: &Batch,
    owner: Option<&str>,
    earlier: Option<&Batch>,
    earlier_committed: impl std::future::Future<Output = bool>,
) -> Result<(Written, Counts), DbError> {
    let tx = client.transaction().await?;
    let unique = distinct(batch, earlier);
    // Prepared before the pipeline: a first prepare inside it would send the
    // dead letters' INSERT after the savepoint, and a COPY that meets a
    // stored statement id would then roll them back with it.
    let dead_letters_insert = tx
        .prepare_cached(
            "INSERT INTO dead_letters (import_id, job, kafka_partition, kafka_offset, payload, reason) \
             SELECT $1, $2, * FROM unnest($3::int4[], $4::int8[], $5::bytea[], $6::text[]) \
             ON CONFLICT (job, kafka_partition, kafka_offset) DO NOTHING",
        )
        .await?;
    let copy = tx
        .prepare_cached(&format!(
            "COPY statements ({STATEMENT_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    // Everything before the statements goes out as one pipeline (tokio-postgres
    // sends concurrent requests back to back, in the order first polled),
    // while the COPY data is encoded.
    let pipeline = async {
        // Not durable is still exactly-once: a PostgreSQL crash can lose the
        // last commits, but their offsets with them, so the job re-reads
        // exactly what was lost, as long as Kafka still has it.
        let settings = tx.batch_execute(if batch.durable {
            "SET LOCAL synchronous_commit = on"
        } else {
            "SET LOCAL synchronous_commit = off"
        });
        let fence = async {
            match owner {
                Some(owner) => tx
                    .query_opt(FENCE, &[&job, &owner])
                    .await
                    .map(|o| o.is_some()),
                None => Ok(true),
            }
        };
        let dead_letters =
            insert_dead_letters(&tx, &dead_letters_insert, import_id, job, &batch.rejected);
        // Last: rolling back to it must keep the dead letters.
        let savepoint = async {
            if unique.is_empty() {
                return Ok(());
            }
            tx.batch_execute("SAVEPOINT statements_copy").await
        };
        tokio::try_join!(settings, fence, dead_letters, savepoint)
    };
    let encode = async {
        if unique.is_empty() {
            return None;
        }
        Some(encode_copy(import_id, &unique))
    };
    let (pipelined, encoded) = tokio::join!(pipeline, encode);
    let (_, owned, dead_letters, _) = pipelined?;
    if !owned {
        // Dropping the transaction rolls back the dead letters.
        return Err(not_owned(job, owner.unwrap_or_default()));
    }
    let (stored, refused) = store_rows(&tx, &copy, import_id, unique, encoded).await?;
    let dead_letters = dead_letters
        + insert_dead_letters(
            &tx,
            &dead_letters_insert,
            import_id,
            job,
            &refused
                .iter()
                .map(|r| Rejected {
                    partition: r.received.partition,
                    offset: r.received.offset,
                    payload: r.received.statement.to_payload(),
                    reason: r.reason.clone(),
                })
                .collect::<Vec<_>>(),
        )
        .await?;
    // In stream order from here: the offsets row is the one both batches
    // write, so the later one takes it only once the earlier committed.
    if !earlier_committed.await {
        return Err(DbError::NotCommitted(format!(
            "job {job}: the batch before this one was not committed"
        )));
    }
    advance_offsets(&tx, job, batch).await?;
    let mut counts = Counts::default();
    counts.add(stored.iter().copied());
    if owner.is_none() {
        super::counts::add_counts(&tx, import_id, &counts).await?;
    }
    tx.commit().await?;
    if owner.is_none() && !counts.is_empty() {
        super::counts::compact(client, import_id).await;
    }
    let written = Written {
        stored: stored.len() as u64,
        duplicates: (batch.accepted.len() - stored.len() - refused.len()) as u64,
        dead_letters,
    };
    Ok((written, counts))
}

/// Stores the batch's distinct statements: by COPY when they encoded and none
/// is stored yet, else (rolled back to the savepoint) by the INSERT path.
/// The statements stored, and those PostgreSQL refused.
async fn store_rows<'a>(
    tx: &Transaction<'_>,
    copy: &tokio_postgres::Statement,
    import_id: i64,
    unique: Vec<&'a Received>,
    encoded: Option<Result<bytes::Bytes, TooLarge>>,
) -> Result<(Vec<&'a Received>, Vec<Refusal<'a>>), DbError> {
    let copied = match encoded {
        None => Ok(()),
        Some(Ok(data)) => copy_statements(tx, copy, data).await.map(drop),
        // A value that cannot be encoded (none is known) takes the INSERT
        // path, whose error then names it.
        Some(Err(TooLarge)) => return Ok(insert_isolating(tx, import_id, unique).await?),
    };
    match copied {
        Ok(()) => Ok((unique, Vec::new())),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) || tied_to_a_record(&e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT statements_copy")
                .await?;
            Ok(insert_isolating(tx, import_id, unique).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Adds `rejected` to the dead letters of `job` (an offset already there is
/// skipped); how many it added.
async fn insert_dead_letters(
    tx: &Transaction<'_>,
    insert: &tokio_postgres::Statement,
    import_id: i64,
    job: &str,
    rejected: &[Rejected],
) -> Result<u64, tokio_postgres::Error> {
    if rejected.is_empty() {
        return Ok(0);
    }
    let partitions: Vec<i32> = rejected.iter().map(|r| r.partition).collect();
    let offsets: Vec<i64> = rejected.iter().map(|r| r.offset).collect();
    let payloads: Vec<&[u8]> = rejected.iter().map(|r| &r.payload[..]).collect();
    let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
    tx.execute(
        insert,
        &[&import_id, &job, &partitions, &offsets, &payloads, &reasons],
    )
    .await
}

/// Moves the job's stored offsets to the batch's next ones, only from the
/// offsets the batch continues from ([`DbError::OffsetsMoved`] otherwise).
async fn advance_offsets(tx: &Transaction<'_>, job: &str, batch: &Batch) -> Result<(), DbError> {
    if batch.next_offsets.is_empty() {
        return Ok(());
    }
    // Moves each partition's stored offset from what the batch expects, or
    // adds it where it expects none; counts the partitions it moved.
    let advance = tx
        .prepare_cached(
            "WITH wanted AS ( \
                 SELECT * FROM unnest($2::int4[], $3::int8[], $4::int8[]) AS w(partition, expected, next_offset) \
             ), moved AS ( \
                 UPDATE job_offsets o SET next_offset = w.next_offset FROM wanted w \
                  WHERE o.job = $1 AND o.partition = w.partition AND o.next_offset = w.expected \
                 RETURNING o.partition \
             ), added AS ( \
                 INSERT INTO job_offsets (job, partition, next_offset) \
                 SELECT $1, w.partition, w.next_offset FROM wanted w WHERE w.expected IS NULL \
                 ON CONFLICT (job, partition) DO NOTHING RETURNING partition \
             ) \
             SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM added)",
        )
        .await?;
    let partitions: Vec<i32> = batch.next_offsets.iter().map(|(p, _)| *p).collect();
    let expected: Vec<Option<i64>> = partitions
        .iter()
        .map(|p| batch.expected_offsets.get(p).copied())
        .collect();
    let offsets: Vec<i64> = batch.next_offsets.iter().map(|(_, o)| *o).collect();
    let moved: i64 = tx
        .query_one(&advance, &[&job, &partitions, &expected, &offsets])
        .await?
        .try_get(0)?;
    if moved != partitions.len() as i64 {
        // Rolled back with the transaction.
        return Err(DbError::OffsetsMoved(format!(
            "job {job}: the stored offsets are not the {expected:?} this batch continues from"
        )));
    }
    Ok(())
}

/// The batch's statements whose ids are new to it: the first copy of an id
/// wins, as with ON CONFLICT DO NOTHING; the predecessor's ids are its own
/// (committed by it, or by neither).
fn distinct<'a>(batch: &'a Batch, earlier: Option<&Batch>) -> Vec<&'a Received> {
    let earlier_ids = earlier.map_or(0, |b| b.accepted.len());
    let mut seen = HashSet::with_capacity(earlier_ids + batch.accepted.len());
    seen.extend(
        earlier
            .into_iter()
            .flat_map(|b| &b.accepted)
            .map(|r| r.statement.statement_id.as_str()),
    );
    batch
        .accepted
        .iter()
        .filter(|r| seen.insert(r.statement.statement_id.as_str()))
        .collect()
}

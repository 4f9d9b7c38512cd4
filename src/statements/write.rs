//! The batch write a job performs: statements, dead letters and the job's
//! next offsets in one transaction, fenced by the job's ownership; the
//! binary COPY encoding of statements and the `INSERT` path it falls back to.

use std::collections::{HashMap, HashSet};

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::SinkExt;
use tokio_postgres::error::SqlState;

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

/// The columns a job writes, in the order of `copy_statements` and of
/// `insert_statements`' arrays.
const STATEMENT_COLUMNS: &str = "import_id, statement_id, citizen_id, course, channel, \
     score, text, ts, kafka_partition, kafka_offset";

/// Locks the job's row while it names `owner`. Shared: two batches and a
/// fold of the job hold it at once; an owner change waits for all of them.
const FENCE: &str = "SELECT 1 FROM jobs WHERE name = $1 AND owner = $2 FOR SHARE";

fn not_owned(job: &str, owner: &str) -> DbError {
    DbError::Stale(format!("job {job} is no longer owned by {owner}"))
}

/// A transaction holding the job's [`FENCE`]; [`DbError::Stale`] when
/// `owner` no longer owns the job.
pub(super) async fn fenced<'a>(
    client: &'a mut Client,
    job: &str,
    owner: &str,
) -> Result<Transaction<'a>, DbError> {
    let tx = client.transaction().await?;
    match tx.query_opt(FENCE, &[&job, &owner]).await? {
        Some(_) => Ok(tx),
        None => Err(not_owned(job, owner)),
    }
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
    // The first copy of a statement id wins, as with ON CONFLICT DO NOTHING;
    // the predecessor's ids are its own (committed by it, or by neither).
    let earlier_ids = earlier.map_or(0, |b| b.accepted.len());
    let mut seen = HashSet::with_capacity(earlier_ids + batch.accepted.len());
    seen.extend(
        earlier
            .into_iter()
            .flat_map(|b| &b.accepted)
            .map(|r| r.statement.statement_id.as_str()),
    );
    let unique: Vec<&Received> = batch
        .accepted
        .iter()
        .filter(|r| seen.insert(r.statement.statement_id.as_str()))
        .collect();
    // Moves each partition's stored offset from what the batch expects, or
    // adds it where it expects none; counts the partitions it moved.
    let offsets_advance = tx
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
        let dead_letters = async {
            if batch.rejected.is_empty() {
                return Ok(0);
            }
            let partitions: Vec<i32> = batch.rejected.iter().map(|r| r.partition).collect();
            let offsets: Vec<i64> = batch.rejected.iter().map(|r| r.offset).collect();
            let payloads: Vec<&[u8]> = batch.rejected.iter().map(|r| &r.payload[..]).collect();
            let reasons: Vec<&str> = batch.rejected.iter().map(|r| r.reason.as_str()).collect();
            tx.execute(
                &dead_letters_insert,
                &[&import_id, &job, &partitions, &offsets, &payloads, &reasons],
            )
            .await
        };
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
    let copied = match encoded {
        None => Ok(Some(0)),
        Some(Ok(data)) => copy_statements(&tx, &copy, data).await.map(Some),
        // A value that cannot be encoded (none is known) takes the INSERT
        // path, whose error then names it.
        Some(Err(TooLarge)) => Ok(None),
    };
    // The statements this batch stored: all of `unique`, unless the INSERT
    // path found some stored before or refused some.
    let (stored, refused): (Vec<&Received>, Vec<Refusal>) = match copied {
        Ok(Some(_)) => (unique, Vec::new()),
        Ok(None) => insert_isolating(&tx, import_id, unique).await?,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) || tied_to_a_record(&e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT statements_copy")
                .await?;
            insert_isolating(&tx, import_id, unique).await?
        }
        Err(e) => return Err(e.into()),
    };
    let dead_letters = dead_letters
        + if refused.is_empty() {
            0
        } else {
            let partitions: Vec<i32> = refused.iter().map(|r| r.received.partition).collect();
            let offsets: Vec<i64> = refused.iter().map(|r| r.received.offset).collect();
            let payloads: Vec<Vec<u8>> = refused
                .iter()
                .map(|r| r.received.statement.to_payload())
                .collect();
            let reasons: Vec<&str> = refused.iter().map(|r| r.reason.as_str()).collect();
            tx.execute(
                &dead_letters_insert,
                &[&import_id, &job, &partitions, &offsets, &payloads, &reasons],
            )
            .await?
        };
    // In stream order from here: the offsets row is the one both batches
    // write, so the later one takes it only once the earlier committed.
    if !earlier_committed.await {
        return Err(DbError::NotCommitted(format!(
            "job {job}: the batch before this one was not committed"
        )));
    }
    if !batch.next_offsets.is_empty() {
        let partitions: Vec<i32> = batch.next_offsets.iter().map(|(p, _)| *p).collect();
        let expected: Vec<Option<i64>> = partitions
            .iter()
            .map(|p| batch.expected_offsets.get(p).copied())
            .collect();
        let offsets: Vec<i64> = batch.next_offsets.iter().map(|(_, o)| *o).collect();
        let moved: i64 = tx
            .query_one(&offsets_advance, &[&job, &partitions, &expected, &offsets])
            .await?
            .get(0);
        if moved != partitions.len() as i64 {
            // Rolled back with the transaction.
            return Err(DbError::OffsetsMoved(format!(
                "job {job}: the stored offsets are not the {expected:?} this batch continues from"
            )));
        }
    }
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

/// A statement PostgreSQL refused to store, and its words for why.
struct Refusal<'a> {
    received: &'a Received,
    reason: String,
}

/// Whether PostgreSQL refused a write because of what one of its rows holds
/// (a value it cannot store, a constraint the row breaks, a value too big
/// for an index), so that the row, found by [`insert_isolating`], is a dead
/// letter and the rest is stored. Anything else (the connection, a broken
/// schema, a trigger that raises) fails the batch and the job retries it.
fn tied_to_a_record(error: &tokio_postgres::Error) -> bool {
    let Some(code) = error.code() else {
        return false;
    };
    match &code.code()[..2] {
        // Data exceptions (e.g. a NUL byte) and program limits (an index row too large).
        "22" | "54" => true,
        // Integrity constraints: a check, not-null or foreign key the row breaks.
        "23" => code != &SqlState::UNIQUE_VIOLATION,
        _ => false,
    }
}

/// Stores `rows` with `INSERT … ON CONFLICT DO NOTHING` (ids stored before
/// are skipped): the statements it stored, and those PostgreSQL refused.
/// All at once first, as before; when PostgreSQL refuses a row the rows are
/// halved under savepoints until each refused row stands alone (about two
/// inserts per refused row and halving), so one bad record costs a few
/// statements and never the batch, nor the stream after it.
async fn insert_isolating<'a>(
    tx: &Transaction<'_>,
    import_id: i64,
    rows: Vec<&'a Received>,
) -> Result<(Vec<&'a Received>, Vec<Refusal<'a>>), tokio_postgres::Error> {
    let mut stored_ids = HashSet::new();
    let mut refused = Vec::new();
    let mut pending: Vec<&[&Received]> = vec![&rows];
    while let Some(chunk) = pending.pop() {
        if chunk.is_empty() {
            continue;
        }
        tx.batch_execute("SAVEPOINT statements_insert").await?;
        match insert_statements(tx, import_id, chunk).await {
            Ok(ids) => {
                tx.batch_execute("RELEASE SAVEPOINT statements_insert")
                    .await?;
                stored_ids.extend(ids);
            }
            Err(e) if tied_to_a_record(&e) => {
                tx.batch_execute(
                    "ROLLBACK TO SAVEPOINT statements_insert; RELEASE SAVEPOINT statements_insert",
                )
                .await?;
                if let [received] = chunk {
                    let reason = e
                        .as_db_error()
                        .map_or_else(|| e.to_string(), |db| db.message().to_owned());
                    refused.push(Refusal {
                        received,
                        reason: format!("refused by the database: {reason}"),
                    });
                } else {
                    let (first, second) = chunk.split_at(chunk.len() / 2);
                    // Popped first half first: the dead letters keep stream order.
                    pending.push(second);
                    pending.push(first);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let stored = rows
        .into_iter()
        .filter(|r| stored_ids.contains(&r.statement.statement_id))
        .collect();
    Ok((stored, refused))
}

/// Binary COPY of statements whose ids are distinct; fails with a unique
/// violation if one is already stored. The rows are encoded up front and sent
/// as one message: `BinaryCopyInWriter` hands the connection 4 KB at a time
/// through a one-slot channel, a task switch every ~25 rows.
async fn copy_statements(
    tx: &Transaction<'_>,
    copy: &tokio_postgres::Statement,
    data: bytes::Bytes,
) -> Result<u64, tokio_postgres::Error> {
    let sink = tx.copy_in::<_, bytes::Bytes>(copy).await?;
    let mut sink = std::pin::pin!(sink);
    sink.send(data).await?;
    sink.finish().await
}

/// Why a batch cannot be COPY-encoded (a value out of the wire format's range).
#[derive(Debug)]
struct TooLarge;

/// The rows in PostgreSQL's binary COPY format: a header, per row the field
/// count then each field's length and bytes (-1: null), a trailer. Encoded
/// by hand (as postgres-types would) rather than through `ToSql` trait
/// objects: this runs for every field of every statement.
fn encode_copy(import_id: i64, rows: &[&Received]) -> Result<bytes::Bytes, TooLarge> {
    const FIELDS: i16 = 10;
    // Roughly the size: saves most re-allocations.
    let estimate: usize = rows
        .iter()
        .map(|r| {
            let s = &r.statement;
            100 + s.statement_id.len()
                + s.course.len()
                + s.channel.as_ref().map_or(0, String::len)
                + s.text.as_ref().map_or(0, String::len)
        })
        .sum();
    let mut buf = BytesMut::with_capacity(19 + estimate + 2);
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0); // flags
    buf.put_i32(0); // header extension length
    let text = |buf: &mut BytesMut, s: &str| -> Result<(), TooLarge> {
        buf.put_i32(i32::try_from(s.len()).map_err(|_| TooLarge)?);
        buf.put_slice(s.as_bytes());
        Ok(())
    };
    for r in rows {
        let s = &r.statement;
        buf.put_i16(FIELDS);
        buf.put_i32(8);
        buf.put_i64(import_id);
        text(&mut buf, &s.statement_id)?;
        buf.put_i32(4);
        buf.put_i32(s.citizen_id);
        text(&mut buf, &s.course)?;
        match &s.channel {
            Some(channel) => text(&mut buf, channel)?,
            None => buf.put_i32(-1),
        }
        match s.score {
            Some(score) => {
                buf.put_i32(8);
                buf.put_f64(score);
            }
            None => buf.put_i32(-1),
        }
        match &s.text {
            Some(t) => text(&mut buf, t)?,
            None => buf.put_i32(-1),
        }
        buf.put_i32(8);
        buf.put_i64(pg_timestamp(r.ts).ok_or(TooLarge)?);
        buf.put_i32(4);
        buf.put_i32(r.partition);
        buf.put_i32(8);
        buf.put_i64(r.offset);
    }
    buf.put_i16(-1); // trailer
    Ok(buf.freeze())
}

/// A timestamptz on the wire: microseconds since 2000-01-01 00:00 UTC.
fn pg_timestamp(ts: DateTime<Utc>) -> Option<i64> {
    let epoch = DateTime::from_timestamp(946_684_800, 0)?;
    (ts - epoch).num_microseconds()
}

/// The slow path: one `INSERT … ON CONFLICT DO NOTHING` over arrays; the
/// ids it stored (the others were stored before).
async fn insert_statements(
    tx: &Transaction<'_>,
    import_id: i64,
    rows: &[&Received],
) -> Result<HashSet<String>, tokio_postgres::Error> {
    let n = rows.len();
    let (mut ids, mut citizens, mut courses, mut channels) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut scores, mut texts, mut tss, mut partitions, mut offsets) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for r in rows {
        let s = &r.statement;
        ids.push(s.statement_id.as_str());
        citizens.push(s.citizen_id);
        courses.push(s.course.as_str());
        channels.push(s.channel.as_deref());
        scores.push(s.score);
        texts.push(s.text.as_deref());
        tss.push(r.ts);
        partitions.push(r.partition);
        offsets.push(r.offset);
    }
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO statements ({STATEMENT_COLUMNS}) \
             SELECT $1, * FROM unnest($2::text[], $3::int4[], $4::text[], $5::text[], \
             $6::float8[], $7::text[], $8::timestamptz[], $9::int4[], $10::int8[]) \
             ON CONFLICT (import_id, statement_id) DO NOTHING \
             RETURNING statement_id"
        ))
        .await?;
    let stored = tx
        .query(
            &insert,
            &[
                &import_id,
                &ids,
                &citizens,
                &courses,
                &channels,
                &scores,
                &texts,
                &tss,
                &partitions,
                &offsets,
            ],
        )
        .await?;
    Ok(stored.iter().map(|row| row.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_encoded_as_postgres_types_would() {
        use tokio_postgres::types::{ToSql, Type};
        for text in [
            "2000-01-01T00:00:00Z",
            "2026-11-28T12:00:00.123456789+03:00",
            "1969-07-20T20:17:40.9999995Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let ts = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            let mut expected = bytes::BytesMut::new();
            ts.to_sql(&Type::TIMESTAMPTZ, &mut expected).unwrap();
            assert_eq!(
                pg_timestamp(ts).unwrap().to_be_bytes(),
                expected[..],
                "{text}"
            );
        }
    }
}

//! Statements: the model that parses (from the API or straight from a topic),
//! the batch write a job performs in one transaction, and dead letters.
//! Knows PostgreSQL through `db`; never Kafka or HTTP.

use std::collections::{HashMap, HashSet};

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::SinkExt;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::error::SqlState;

use crate::db::{Client, DbError, Transaction};

mod parse;

/// A statement that parsed and passed its own rules (not yet the citizen check).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Statement {
    pub statement_id: String,
    /// Optional on ingestion (taken from the path); must match it if given.
    #[schema(required = false)]
    pub import_id: i64,
    pub citizen_id: i32,
    pub course: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// When the statement was made (RFC 3339). Without one, the job stores
    /// the timestamp of the Kafka record that carried it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ts: Option<DateTime<Utc>>,
}

/// Why a statement was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

impl Statement {
    /// The bytes produced to the topic.
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement always serialises")
    }
}

/// A request body of statements: a JSON array, or NDJSON (one object a line).
/// Returns every item as a JSON value, or where the body stopped parsing.
pub fn split_body(body: &[u8], ndjson: Option<bool>) -> Result<Vec<Value>, (usize, String)> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let as_array = ndjson.map_or(first == Some(&b'['), |nd| !nd);
    if as_array {
        return serde_json::from_slice::<Vec<Value>>(body)
            .map_err(|e| (e.line(), format!("invalid JSON array: {e}")));
    }
    let mut items = Vec::new();
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value = serde_json::from_slice(line).map_err(|e| {
            (
                index + 1,
                format!("invalid JSON on line {}: {e}", index + 1),
            )
        })?;
        items.push(value);
    }
    Ok(items)
}

/// The ids among `ids` that are not citizens of the import.
pub async fn unknown_citizens(
    client: &Client,
    import_id: i64,
    ids: &[i32],
) -> Result<HashSet<i32>, DbError> {
    let rows = client
        .query(
            "SELECT citizen_id FROM citizens WHERE import_id = $1 AND citizen_id = ANY($2)",
            &[&import_id, &ids],
        )
        .await?;
    let known: HashSet<i32> = rows.iter().map(|r| r.get(0)).collect();
    Ok(ids
        .iter()
        .copied()
        .filter(|id| !known.contains(id))
        .collect())
}

/// Every citizen id of an import (a job checks its messages against them;
/// an import's set of citizens never changes).
pub async fn citizen_ids(client: &Client, import_id: i64) -> Result<HashSet<i32>, DbError> {
    let rows = client
        .query(
            "SELECT citizen_id FROM citizens WHERE import_id = $1",
            &[&import_id],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn import_exists(client: &Client, import_id: i64) -> Result<bool, DbError> {
    Ok(client
        .query_opt("SELECT 1 FROM imports WHERE import_id = $1", &[&import_id])
        .await?
        .is_some())
}

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
async fn fenced<'a>(
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

/// Stored statements counted per citizen, statement channel and course: what
/// a job adds to `statement_counts` (see migration V8) when it folds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(HashMap<(i32, Option<String>, String), i64>);

impl Counts {
    pub fn add<'a>(&mut self, stored: impl Iterator<Item = &'a Statement>) {
        for s in stored {
            let key = (s.citizen_id, s.channel.clone(), s.course.clone());
            *self.0.entry(key).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: Counts) {
        for (key, n) in other.0 {
            *self.0.entry(key).or_default() += n;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rows to add: one per citizen, channel and course, and one per
    /// citizen and channel for all courses (course `None`), in key order.
    fn rows(&self) -> Vec<(i32, Option<&str>, Option<&str>, i64)> {
        let mut all_courses: HashMap<(i32, Option<&str>), i64> = HashMap::new();
        let mut rows = Vec::with_capacity(self.0.len() * 2);
        for ((citizen, channel, course), n) in &self.0 {
            rows.push((*citizen, channel.as_deref(), Some(course.as_str()), *n));
            *all_courses
                .entry((*citizen, channel.as_deref()))
                .or_default() += n;
        }
        rows.extend(
            all_courses
                .into_iter()
                .map(|((citizen, channel), n)| (citizen, channel, None, n)),
        );
        // One order for every writer of these rows: no lock-order deadlocks.
        rows.sort_unstable();
        rows
    }
}

/// Adds `counts` (of statements a job stored in batches it committed) to the
/// import's statement counts and moves their stop to `through` (the job's
/// next offsets), in one transaction, while `owner` owns the job.
pub async fn fold_counts(
    client: &mut Client,
    job: &str,
    owner: &str,
    import_id: i64,
    counts: &Counts,
    through: &HashMap<i32, i64>,
) -> Result<(), DbError> {
    let tx = fenced(client, job, owner).await?;
    let rows = counts.rows();
    let citizens: Vec<i32> = rows.iter().map(|r| r.0).collect();
    let channels: Vec<Option<&str>> = rows.iter().map(|r| r.1).collect();
    let courses: Vec<Option<&str>> = rows.iter().map(|r| r.2).collect();
    let statements: Vec<i64> = rows.iter().map(|r| r.3).collect();
    let add = tx
        .prepare_cached(
            "INSERT INTO statement_counts AS c (import_id, citizen_id, channel, course, statements) \
             SELECT $1, * FROM unnest($2::int4[], $3::text[], $4::text[], $5::int8[]) \
             ON CONFLICT ON CONSTRAINT statement_counts_key \
             DO UPDATE SET statements = c.statements + EXCLUDED.statements",
        )
        .await?;
    let stop = tx
        .prepare_cached(
            "INSERT INTO statement_counts_offsets AS o (import_id, partition, next_offset) \
             SELECT $1, * FROM unnest($2::int4[], $3::int8[]) \
             ON CONFLICT (import_id, partition) \
             DO UPDATE SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset)",
        )
        .await?;
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = through.iter().unzip();
    let add_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&import_id, &citizens, &channels, &courses, &statements];
    let stop_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&import_id, &partitions, &offsets];
    tokio::try_join!(
        tx.execute(&add, &add_params),
        tx.execute(&stop, &stop_params),
    )?;
    tx.commit().await?;
    Ok(())
}

/// Counts what the job stored past where the import's counts stop, up to
/// `through` (its next offsets): the batches a crash kept from being folded.
pub async fn catch_up_counts(
    client: &mut Client,
    job: &str,
    owner: &str,
    import_id: i64,
    through: &HashMap<i32, i64>,
) -> Result<(), DbError> {
    let tx = fenced(client, job, owner).await?;
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = through.iter().unzip();
    tx.execute(
        "SELECT count_statements($1, $2, $3)",
        &[&import_id, &partitions, &offsets],
    )
    .await?;
    tx.commit().await?;
    Ok(())
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
/// the statements it stored, for [`fold_counts`].
pub async fn write_batch_after(
    client: &mut Client,
    job: &str,
    import_id: i64,
    batch: &Batch,
    owner: &str,
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
    let offsets_upsert = tx
        .prepare_cached(
            "INSERT INTO job_offsets (job, partition, next_offset) \
             SELECT $1, * FROM unnest($2::int4[], $3::int8[]) \
             ON CONFLICT (job, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
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
        // Safe for exactly-once: a PostgreSQL crash can lose the last commits,
        // but their offsets with them, so the job re-reads exactly what was lost.
        let settings = tx.batch_execute("SET LOCAL synchronous_commit = off");
        let fence_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&job, &owner];
        let fence = tx.query_opt(FENCE, &fence_params);
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
    if owned.is_none() {
        // Dropping the transaction rolls back the dead letters.
        return Err(not_owned(job, owner));
    }
    let copied = match encoded {
        None => Ok(Some(0)),
        Some(Ok(data)) => copy_statements(&tx, &copy, data).await.map(Some),
        // A value that cannot be encoded (none is known) takes the INSERT
        // path, whose error then names it.
        Some(Err(TooLarge)) => Ok(None),
    };
    // The statements this batch stored: all of `unique`, unless the INSERT
    // path found some stored before.
    let stored: Vec<&Received> = match copied {
        Ok(Some(_)) => unique,
        Ok(None) => {
            let ids = insert_statements(&tx, import_id, &unique).await?;
            retain_stored(unique, &ids)
        }
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT statements_copy")
                .await?;
            let ids = insert_statements(&tx, import_id, &unique).await?;
            retain_stored(unique, &ids)
        }
        Err(e) => return Err(e.into()),
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
        let offsets: Vec<i64> = batch.next_offsets.iter().map(|(_, o)| *o).collect();
        tx.execute(&offsets_upsert, &[&job, &partitions, &offsets])
            .await?;
    }
    tx.commit().await?;
    let written = Written {
        stored: stored.len() as u64,
        duplicates: (batch.accepted.len() - stored.len()) as u64,
        dead_letters,
    };
    let mut counts = Counts::default();
    counts.add(stored.iter().map(|r| &r.statement));
    Ok((written, counts))
}

fn retain_stored<'a>(rows: Vec<&'a Received>, ids: &HashSet<String>) -> Vec<&'a Received> {
    rows.into_iter()
        .filter(|r| ids.contains(&r.statement.statement_id))
        .collect()
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

/// A dead letter as the API lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub job: String,
    pub partition: i32,
    pub offset: i64,
    /// The raw payload (invalid UTF-8 replaced).
    pub payload: String,
    pub reason: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
}

/// The dead letters of an import, oldest first, after id `after`.
pub async fn dead_letters(
    client: &Client,
    import_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<DeadLetter>, DbError> {
    let rows = client
        .query(
            "SELECT id, job, kafka_partition, kafka_offset, payload, reason, created_at \
             FROM dead_letters WHERE import_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            &[&import_id, &after, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DeadLetter {
            id: r.get(0),
            job: r.get(1),
            partition: r.get(2),
            offset: r.get(3),
            payload: String::from_utf8_lossy(r.get::<_, &[u8]>(4)).into_owned(),
            reason: r.get(5),
            created_at: r.get(6),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_have_a_row_per_course_and_one_for_all_courses_per_citizen_and_channel() {
        let statement = |citizen: i32, channel: Option<&str>, course: &str| {
            let mut value = good();
            value["citizen_id"] = json!(citizen);
            value["channel"] = json!(channel);
            value["course"] = json!(course);
            Statement::from_value(&value, None).unwrap()
        };
        let mut counts = Counts::default();
        let first = [statement(1, None, "rust"), statement(1, None, "go")];
        counts.add(first.iter());
        let mut more = Counts::default();
        let second = [
            statement(1, None, "rust"),
            statement(2, Some("radio"), "go"),
        ];
        more.add(second.iter());
        counts.merge(more);
        assert_eq!(
            counts.rows(),
            [
                (1, None, None, 3),
                (1, None, Some("go"), 1),
                (1, None, Some("rust"), 2),
                (2, Some("radio"), None, 1),
                (2, Some("radio"), Some("go"), 1),
            ]
        );
    }

    fn good() -> Value {
        json!({"statement_id": "s-1", "import_id": 7, "citizen_id": 3, "course": "rust",
               "channel": "radio", "score": 0.5, "text": "want it", "ts": "2026-11-28T10:00:00Z"})
    }

    #[test]
    fn a_complete_statement_parses_and_round_trips() {
        let s = Statement::from_value(&good(), None).unwrap();
        assert_eq!(s.import_id, 7);
        assert_eq!(s.channel.as_deref(), Some("radio"));
        assert_eq!(Statement::from_payload(&s.to_payload()).unwrap(), s);
    }

    #[test]
    fn each_required_field_is_named_when_missing() {
        for field in ["statement_id", "citizen_id", "course"] {
            let mut value = good();
            value.as_object_mut().unwrap().remove(field);
            let error = Statement::from_value(&value, Some(7)).unwrap_err();
            assert_eq!(error.field, field);
        }
        let mut value = good();
        value.as_object_mut().unwrap().remove("import_id");
        assert_eq!(
            Statement::from_value(&value, None).unwrap_err().field,
            "import_id"
        );
        assert_eq!(Statement::from_value(&value, Some(9)).unwrap().import_id, 9);
        value.as_object_mut().unwrap().remove("channel");
        assert_eq!(
            Statement::from_value(&value, Some(9)).unwrap().channel,
            None
        );
    }

    #[test]
    fn channel_score_text_and_ts_are_optional() {
        for absent in [None, Some(Value::Null)] {
            let mut value = good();
            for field in ["channel", "score", "text", "ts"] {
                match &absent {
                    None => value.as_object_mut().unwrap().remove(field),
                    Some(null) => value
                        .as_object_mut()
                        .unwrap()
                        .insert(field.into(), null.clone()),
                };
            }
            let s = Statement::from_value(&value, None).unwrap();
            assert_eq!(
                (s.channel.as_ref(), s.score, s.text.as_ref(), s.ts),
                (None, None, None, None)
            );
            // What is absent stays absent on the topic.
            let payload: Value = serde_json::from_slice(&s.to_payload()).unwrap();
            assert_eq!(
                payload,
                json!({"statement_id": "s-1", "import_id": 7, "citizen_id": 3, "course": "rust"})
            );
            assert_eq!(Statement::from_payload(&s.to_payload()).unwrap(), s);
        }
    }

    #[test]
    fn wrong_values_are_refused() {
        let cases = [
            ("statement_id", json!("  ")),
            ("citizen_id", json!(-1)),
            ("citizen_id", json!("3")),
            ("score", json!("high")),
            ("text", json!(3)),
            ("ts", json!("yesterday")),
            ("ts", json!(1_700_000_000)),
            ("channel", json!(5)),
            ("import_id", json!(8)),
        ];
        for (field, bad) in cases {
            let mut value = good();
            value[field] = bad;
            assert_eq!(
                Statement::from_value(&value, Some(7)).unwrap_err().field,
                field
            );
        }
        assert_eq!(
            Statement::from_payload(b"{not json").unwrap_err().field,
            "payload"
        );
        assert_eq!(
            Statement::from_value(&json!([1]), None).unwrap_err().field,
            "statement"
        );
    }

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

    #[test]
    fn bodies_are_arrays_or_ndjson() {
        let array = br#" [{"a":1},{"b":2}]"#;
        assert_eq!(split_body(array, None).unwrap().len(), 2);
        let nd = b"{\"a\":1}\n\n{\"b\":2}\n";
        assert_eq!(split_body(nd, None).unwrap().len(), 2);
        assert_eq!(split_body(nd, Some(true)).unwrap().len(), 2);
        assert_eq!(split_body(b"{\"a\":1}\n{oops", None).unwrap_err().0, 2);
        assert!(split_body(b"{\"a\":1}\n{\"b\":2}", Some(false)).is_err());
    }
}

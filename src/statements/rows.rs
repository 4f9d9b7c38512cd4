//! How a batch's statements go in: binary COPY (encoded here, by hand) and
//! the `INSERT … ON CONFLICT DO NOTHING` path it falls back to, which also
//! isolates the rows PostgreSQL refuses so they become dead letters.

use std::collections::HashSet;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::SinkExt;
use tokio_postgres::error::SqlState;

use super::Received;
use crate::db::Transaction;

/// The columns a job writes, in the order of `copy_statements` and of
/// `insert_statements`' arrays.
pub(super) const STATEMENT_COLUMNS: &str = "import_id, statement_id, citizen_id, course, channel, \
     score, text, ts, kafka_partition, kafka_offset";

/// A statement PostgreSQL refused to store, and its words for why.
pub(super) struct Refusal<'a> {
    pub received: &'a Received,
    pub reason: String,
}

/// Whether PostgreSQL refused a write because of what one of its rows holds
/// (a value it cannot store, a constraint the row breaks, a value too big
/// for an index), so that the row, found by [`insert_isolating`], is a dead
/// letter and the rest is stored. Anything else (the connection, a broken
/// schema, a trigger that raises) fails the batch and the job retries it.
pub(super) fn tied_to_a_record(error: &tokio_postgres::Error) -> bool {
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
pub(super) async fn insert_isolating<'a>(
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
pub(super) async fn copy_statements(
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
pub(super) struct TooLarge;

/// The rows in PostgreSQL's binary COPY format: a header, per row the field
/// count then each field's length and bytes (-1: null), a trailer. Encoded
/// by hand (as postgres-types would) rather than through `ToSql` trait
/// objects: this runs for every field of every statement.
pub(super) fn encode_copy(import_id: i64, rows: &[&Received]) -> Result<bytes::Bytes, TooLarge> {
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
    stored.iter().map(|row| row.try_get(0)).collect()
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

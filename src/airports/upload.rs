//! The CSV upload, streamed end to end: the body's chunks feed the CSV parser
//! (on a blocking thread, as the `csv` crate reads synchronously) while the
//! rows it yields go straight into a binary COPY, all in one transaction.
//! Nothing is held in memory but a few chunks and batches; any bad row stops
//! the writing, the parser reads on to report every bad line, and the
//! transaction is rolled back.
//!
//! Without an `id` column the rows are copied into `airports` directly. With
//! one, they are copied into a temporary table first and merged with
//! `INSERT … ON CONFLICT (id) DO UPDATE`, which also counts inserts and updates.

use std::fmt::Display;
use std::io::Read;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::csv::{Column, Header, Parser, RefusedFile, Row};
use super::{store, AirportError};
use crate::audit::Origin;
use crate::db::{Client, Pool};

/// Rows handed from the parser to the writer at a time.
const BATCH: usize = 512;

/// `{"inserted": N, "updated": M}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UploadOutcome {
    pub inserted: u64,
    pub updated: u64,
}

enum Event {
    Header(Header),
    Rows(Vec<Row>),
}

/// Streams a CSV body of at most `limit` bytes into `airports`, atomically.
pub async fn upload<S, B, E>(
    pool: &Pool,
    body: S,
    limit: u64,
    origin: &Origin,
) -> Result<UploadOutcome, AirportError>
where
    S: Stream<Item = Result<B, E>> + Send,
    B: Buf,
    E: Display,
{
    let mut client = pool.get().await?;
    let (bytes_tx, bytes_rx) = mpsc::channel(16);
    let (rows_tx, rows_rx) = mpsc::channel(4);
    let parser = tokio::task::spawn_blocking(move || parse(ChannelReader::new(bytes_rx), &rows_tx));
    let (pumped, stored) = tokio::join!(
        pump(body, bytes_tx, limit),
        store(&mut client, rows_rx, parser, origin)
    );
    // A body that failed to arrive explains whatever the parser made of it.
    pumped?;
    stored
}

/// Forwards the body to the parser, counting bytes against the limit. On a
/// failure the parser is told (so it never takes a cut body for a whole one).
async fn pump<S, B, E>(
    body: S,
    bytes: mpsc::Sender<Result<Bytes, String>>,
    limit: u64,
) -> Result<(), AirportError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: Display,
{
    let mut body = std::pin::pin!(body);
    let mut total: u64 = 0;
    // Once the parser stopped (a fatal error), the rest of the body is read
    // and dropped, chunk by chunk: the client then gets its answer instead of
    // a connection reset mid-upload, and nothing more is held.
    let mut draining = false;
    while let Some(chunk) = body.next().await {
        let failure = match chunk {
            Ok(mut chunk) => {
                total += chunk.remaining() as u64;
                if total > limit {
                    AirportError::TooLarge { limit }
                } else {
                    if !draining
                        && bytes
                            .send(Ok(chunk.copy_to_bytes(chunk.remaining())))
                            .await
                            .is_err()
                    {
                        draining = true; // the parser stopped; the writer says why
                    }
                    continue;
                }
            }
            Err(error) => AirportError::Read(error.to_string()),
        };
        if draining {
            return Ok(());
        }
        let _ = bytes.send(Err(failure.to_string())).await;
        return Err(failure);
    }
    Ok(())
}

/// Runs on a blocking thread: parses everything, sends good rows in batches
/// until the first bad one, and says at the end whether the file is whole.
fn parse(input: ChannelReader, rows: &mpsc::Sender<Event>) -> Result<(), RefusedFile> {
    let mut parser = Parser::new(input)?;
    if rows
        .blocking_send(Event::Header(parser.header().clone()))
        .is_err()
    {
        return Ok(()); // the writer failed; its error is the one reported
    }
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(row) = parser.next_row() {
        if parser.failed() {
            batch.clear();
            continue; // keep reading only to report every bad line
        }
        batch.push(row);
        if batch.len() == BATCH
            && rows
                .blocking_send(Event::Rows(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(BATCH),
                )))
                .is_err()
        {
            return Ok(());
        }
    }
    if !batch.is_empty() && !parser.failed() {
        let _ = rows.blocking_send(Event::Rows(batch));
    }
    parser.finish()
}

async fn parsed(parser: JoinHandle<Result<(), RefusedFile>>) -> Result<(), AirportError> {
    match parser.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(rejected)) => Err(AirportError::Refused(rejected)),
        Err(panic) => Err(AirportError::Read(format!(
            "the CSV parser failed: {panic}"
        ))),
    }
}

const CREATE_STAGING: &str = "CREATE TEMPORARY TABLE airports_upload (
        line bigint, id bigint, name text, city text, country text, iata text, icao text,
        latitude float8, longitude float8, altitude integer, timezone numeric(4, 2),
        dst text, tz text, type text, source text
    ) ON COMMIT DROP";

const COPY_STAGING: &str = "COPY airports_upload FROM STDIN (FORMAT binary)";

const AIRPORT_TYPES: [Type; 13] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::INT4,
    Type::NUMERIC,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// Writes the rows as they come and commits only if the parser accepted the
/// whole file.
async fn store(
    client: &mut Client,
    mut rows: mpsc::Receiver<Event>,
    parser: JoinHandle<Result<(), RefusedFile>>,
    origin: &Origin,
) -> Result<UploadOutcome, AirportError> {
    let Some(Event::Header(header)) = rows.recv().await else {
        parsed(parser).await?;
        return Err(AirportError::Read("the body ended early".to_owned()));
    };
    let staged = header.has(Column::Id);
    let tx = client.transaction().await?;
    let types: Vec<Type> = if staged {
        tx.batch_execute(CREATE_STAGING).await?;
        [Type::INT8, Type::INT8]
            .into_iter()
            .chain(AIRPORT_TYPES)
            .collect()
    } else {
        AIRPORT_TYPES.to_vec()
    };
    let copy = if staged {
        COPY_STAGING.to_owned()
    } else {
        format!(
            "COPY airports ({}) FROM STDIN (FORMAT binary)",
            store::WRITTEN
        )
    };
    let sink = tx.copy_in(copy.as_str()).await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    while let Some(Event::Rows(batch)) = rows.recv().await {
        for row in &batch {
            let a = &row.airport;
            let line = i64::try_from(row.line).unwrap_or(i64::MAX);
            let (name, latitude, longitude) =
                (a.name.as_str(), a.latitude.get(), a.longitude.get());
            let dst = a.dst.map(String::from);
            let airport: [&(dyn ToSql + Sync); 13] = [
                &name,
                &a.city,
                &a.country,
                &a.iata,
                &a.icao,
                &latitude,
                &longitude,
                &a.altitude,
                &a.timezone,
                &dst,
                &a.tz,
                &a.kind,
                &a.source,
            ];
            if staged {
                let mut values: Vec<&(dyn ToSql + Sync)> = vec![&line, &row.id];
                values.extend(airport);
                writer.as_mut().write(&values).await?;
            } else {
                writer.as_mut().write(&airport).await?;
            }
        }
    }
    // The parser is done: commit only a file it found whole.
    parsed(parser).await?;
    let written = writer.finish().await?;
    let outcome = if staged {
        merge(&tx, &header).await?
    } else {
        UploadOutcome {
            inserted: written,
            updated: 0,
        }
    };
    origin
        .entry("uploaded")
        .detail(serde_json::json!({ "inserted": outcome.inserted, "updated": outcome.updated }))
        .record(&tx)
        .await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Inserts or updates (by id) the staged rows in file order; rows without an
/// id take the next ones from the sequence, moved past every given id first.
async fn merge(
    tx: &deadpool_postgres::Transaction<'_>,
    header: &Header,
) -> Result<UploadOutcome, AirportError> {
    tx.execute(
        "SELECT setval('airports_id_seq', m)
         FROM (SELECT max(id) AS m FROM airports_upload) staged
         WHERE m >= (SELECT last_value FROM airports_id_seq)",
        &[],
    )
    .await?;
    // Only the header's columns are set on update; names come from `Column`.
    let columns: Vec<String> = header
        .columns()
        .iter()
        .filter(|c| **c != Column::Id)
        .map(|c| format!("\"{}\"", c.name()))
        .collect();
    let list = columns.join(", ");
    let updates: Vec<String> = columns
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    // `xmax = 0` marks a row this statement inserted rather than updated.
    let sql = format!(
        "WITH upserted AS (
             INSERT INTO airports (id, {list})
             SELECT COALESCE(id, nextval('airports_id_seq')), {list}
             FROM airports_upload ORDER BY line
             ON CONFLICT (id) DO UPDATE
             SET {}, deleted_at = NULL, updated_at = now()
             RETURNING (xmax = 0) AS inserted)
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
         FROM upserted",
        updates.join(", ")
    );
    let row = tx.query_one(&sql, &[]).await?;
    let count = |i: usize| {
        row.try_get::<_, i64>(i)
            .map(|n| u64::try_from(n).unwrap_or(0))
    };
    Ok(UploadOutcome {
        inserted: count(0)?,
        updated: count(1)?,
    })
}

/// The body chunks as a blocking `Read` for the CSV reader.
struct ChannelReader {
    chunks: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(chunks: mpsc::Receiver<Result<Bytes, String>>) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(reason)) => return Err(std::io::Error::other(reason)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

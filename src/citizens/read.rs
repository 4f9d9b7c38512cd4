//! The whole-import read (`GET citizens`): the body kept at import while the
//! import is unchanged, else the rows streamed as JSON as PostgreSQL sends
//! them.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

use super::rows::{columns, from_row};
use super::statistics::{current_version, KeptAnswers, Key};
use super::{BirthDate, CitizenId, CitizensError};
use crate::db::{DbError, Pool};

/// The read query, public so the benchmark can EXPLAIN exactly it. `$1` is
/// the import id.
pub const SELECT_CITIZENS: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM citizens WHERE import_id = $1 ORDER BY citizen_id"
);

/// A citizen borrowed from its row: serialises exactly like [`super::Citizen`]
/// (same fields, same order) without copying its strings first.
#[derive(Serialize)]
struct CitizenRow<'a> {
    citizen_id: CitizenId,
    town: &'a str,
    street: &'a str,
    building: &'a str,
    apartment: i32,
    name: &'a str,
    birth_date: BirthDate,
    gender: &'a str,
    relatives: Vec<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
}

/// Bytes of JSON per message between the reading task and the response body:
/// enough to amortise the hand-over, small enough to keep memory flat.
const CHUNK: usize = 64 * 1024;

/// Every citizen of an import as JSON objects separated by commas (the
/// inside of the API's array), ordered by `citizen_id`, in chunks as
/// PostgreSQL sends the rows. A task reads and serialises the rows and hands
/// the chunks over a bounded channel, so a slow client slows the query
/// instead of filling memory, and a client that goes away ends the query
/// (and frees the connection).
/// The body kept at import (see [`KeptAnswers::keep_import`]) answers while the
/// import is at the version it was written with.
pub async fn citizens_json(
    pool: &Pool,
    kept: &KeptAnswers,
    import_id: i64,
) -> Result<JsonChunks, CitizensError> {
    let client = pool.get().await?;
    let key = Key {
        import_id,
        version: current_version(&client, import_id).await?,
        day: None,
    };
    if let Some(body) = kept.citizens.get(key) {
        return Ok(JsonChunks::Kept(Some(Bytes::clone(&body))));
    }
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let read = async {
            let statement = client.prepare_cached(SELECT_CITIZENS).await?;
            let rows = client.query_raw(&statement, [&import_id]).await?;
            let mut rows = std::pin::pin!(rows);
            let mut chunk = Vec::with_capacity(CHUNK + 1024);
            let mut first = true;
            while let Some(row) = rows.try_next().await? {
                if !std::mem::take(&mut first) {
                    chunk.push(b',');
                }
                let citizen = from_row!(CitizenRow, &row);
                serde_json::to_writer(&mut chunk, &citizen).expect("writing JSON to memory");
                if chunk.len() >= CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK + 1024));
                    if tx.send(Ok(Bytes::from(full))).await.is_err() {
                        return Ok(()); // the client went away
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(Ok(Bytes::from(chunk))).await;
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        if let Err(error) = read.await {
            let _ = tx.send(Err(DbError::from(error))).await;
        }
    });
    Ok(JsonChunks::Streamed(rx))
}

/// The stream [`citizens_json`] returns: a kept body, or chunks as the rows
/// are read.
pub enum JsonChunks {
    Kept(Option<Bytes>),
    Streamed(mpsc::Receiver<Result<Bytes, DbError>>),
}

impl Stream for JsonChunks {
    type Item = Result<Bytes, DbError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut *self {
            Self::Kept(body) => Poll::Ready(body.take().filter(|b| !b.is_empty()).map(Ok)),
            Self::Streamed(rx) => rx.poll_recv(cx),
        }
    }
}

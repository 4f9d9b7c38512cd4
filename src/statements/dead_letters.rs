//! Dead letters: the messages a job could not accept, as the API lists them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::{Client, DbError};

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
    let letter = |r: &tokio_postgres::Row| -> Result<DeadLetter, tokio_postgres::Error> {
        Ok(DeadLetter {
            id: r.try_get(0)?,
            job: r.try_get(1)?,
            partition: r.try_get(2)?,
            offset: r.try_get(3)?,
            payload: String::from_utf8_lossy(r.try_get::<_, &[u8]>(4)?).into_owned(),
            reason: r.try_get(5)?,
            created_at: r.try_get(6)?,
        })
    };
    Ok(rows.iter().map(letter).collect::<Result<_, _>>()?)
}

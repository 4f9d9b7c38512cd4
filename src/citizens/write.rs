//! Writing an import: one transaction, the import's row, a binary COPY of
//! its citizens and the audit entry; nothing is visible until it commits.

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::rows::columns;
use super::Citizen;
use crate::audit::Origin;
use crate::db::{DbError, Pool};

/// A stored import: its id and the version it was committed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub import_id: i64,
    pub version: i64,
}

/// Writes a validated import (see `parse::import` and `check_import`) in one
/// transaction and returns its id. Nothing is visible until it commits.
pub async fn insert_import(
    pool: &Pool,
    citizens: &[Citizen],
    origin: &Origin,
) -> Result<Stored, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Prepared once per connection: each saves a round trip per import.
    let insert = tx
        .prepare_cached("INSERT INTO imports DEFAULT VALUES RETURNING import_id, version")
        .await?;
    let created = tx.query_one(&insert, &[]).await?;
    let (import_id, version): (i64, i64) = (created.try_get(0)?, created.try_get(1)?);
    let copy = tx
        .prepare_cached(concat!(
            "COPY citizens (import_id, ",
            columns!(),
            ") FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let sink = tx.copy_in(&copy).await?;
    let types = [
        Type::INT8,
        Type::INT4,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT4,
        Type::TEXT,
        Type::DATE,
        Type::TEXT,
        Type::INT4_ARRAY,
        Type::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for c in citizens {
        let row: [&(dyn ToSql + Sync); 11] = [
            &import_id,
            &c.citizen_id,
            &c.town,
            &c.street,
            &c.building,
            &c.apartment,
            &c.name,
            &c.birth_date,
            &c.gender,
            &c.relatives,
            &c.channel,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    origin
        .entry("created")
        .import(import_id)
        .detail(serde_json::json!({ "citizens": citizens.len() }))
        .record(&tx)
        .await?;
    tx.commit().await?;
    Ok(Stored { import_id, version })
}

//! The citizens' queries. Imports are written in one transaction with a
//! binary COPY; the whole-import read streams rows as PostgreSQL sends them;
//! PATCH serialises per import on the import's row lock.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};

use chrono::NaiveDate;
use futures_util::{Stream, TryStreamExt};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use super::{Citizen, CitizenId, CitizenPatch, CitizensError, Invalid};
use crate::db::{DbError, Pool};

/// A citizen's columns in the order `citizen` reads them (a macro, so that
/// the queries below can be `concat!`-ed constants).
macro_rules! columns {
    () => {
        "citizen_id, town, street, building, apartment, name, birth_date, gender, relatives, channel"
    };
}

/// The read queries, public so the benchmark can EXPLAIN exactly them.
/// `$1` is always the import id.
pub const SELECT_CITIZENS: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM citizens WHERE import_id = $1 ORDER BY citizen_id"
);

/// Relations are symmetric, so "c's relatives born in month m" is "the
/// citizens born in m who list c": each citizen's own row gives its birth
/// month to every relative it lists, no join needed. A self-relative is
/// listed once, so counted once.
pub const BIRTHDAYS_BY_MONTH: &str =
    "SELECT extract(month FROM c.birth_date)::int4, r.id, count(*)::int4 \
     FROM citizens c, unnest(c.relatives) AS r(id) \
     WHERE c.import_id = $1 AND cardinality(c.relatives) > 0 GROUP BY 1, 2 ORDER BY 1, 2";

/// `$2`: the key of citizens without a channel.
pub const BIRTHDAYS_BY_CHANNEL: &str = "SELECT coalesce(channel, $2) COLLATE \"C\", \
       coalesce(array_agg(citizen_id ORDER BY citizen_id) \
         FILTER (WHERE cardinality(relatives) > 0), '{}'), \
       coalesce(array_agg(cardinality(relatives) ORDER BY citizen_id) \
         FILTER (WHERE cardinality(relatives) > 0), '{}') \
     FROM citizens WHERE import_id = $1 GROUP BY 1 ORDER BY 1";

/// `$2`: today (UTC), the day ages are counted on. The array form of
/// `percentile_cont` sorts each town's ages once for all three percentiles.
/// Grouping and ordering by byte order (`COLLATE "C"`) spares the locale's
/// string comparisons; towns come back in code-point order.
pub const AGE_PERCENTILES: &str = "SELECT town, round(p[1]::numeric, 2)::float8, \
       round(p[2]::numeric, 2)::float8, round(p[3]::numeric, 2)::float8 \
     FROM (SELECT town COLLATE \"C\" AS town, \
             percentile_cont(ARRAY[0.5, 0.75, 0.99]) WITHIN GROUP \
               (ORDER BY extract(year FROM age($2::date, birth_date))::float8) AS p \
           FROM citizens WHERE import_id = $1 GROUP BY 1) AS towns \
     ORDER BY town";

/// Writes a validated import (see `parse::import` and `check_import`) in one
/// transaction and returns its id. Nothing is visible until it commits.
pub async fn insert_import(pool: &Pool, citizens: &[Citizen]) -> Result<i64, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let import_id: i64 = tx
        .query_one(
            "INSERT INTO imports DEFAULT VALUES RETURNING import_id",
            &[],
        )
        .await?
        .get(0);
    let sink = tx
        .copy_in(concat!(
            "COPY citizens (import_id, ",
            columns!(),
            ") FROM STDIN (FORMAT binary)"
        ))
        .await?;
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
    tx.commit().await?;
    Ok(import_id)
}

async fn ensure_import(
    client: &tokio_postgres::Client,
    import_id: i64,
) -> Result<(), CitizensError> {
    let found = client
        .query_opt("SELECT 1 FROM imports WHERE import_id = $1", &[&import_id])
        .await?;
    found
        .map(drop)
        .ok_or(CitizensError::ImportNotFound(import_id))
}

fn citizen(row: &Row) -> Result<Citizen, tokio_postgres::Error> {
    Ok(Citizen {
        citizen_id: row.try_get(0)?,
        town: row.try_get(1)?,
        street: row.try_get(2)?,
        building: row.try_get(3)?,
        apartment: row.try_get(4)?,
        name: row.try_get(5)?,
        birth_date: row.try_get(6)?,
        gender: row.try_get(7)?,
        relatives: row.try_get(8)?,
        channel: row.try_get(9)?,
    })
}

/// Citizens per message between the reading task and the response body:
/// enough to amortise the hand-over, small enough to keep memory flat.
const BATCH: usize = 256;

/// Every citizen of an import, ordered by `citizen_id`, in batches as
/// PostgreSQL sends them. A task reads the rows and hands them over a bounded
/// channel, so a slow client slows the query instead of filling memory, and a
/// client that goes away ends the query (and frees the connection).
pub async fn citizens(pool: &Pool, import_id: i64) -> Result<CitizenBatches, CitizensError> {
    let client = pool.get().await?;
    ensure_import(&client, import_id).await?;
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let read = async {
            let statement = client.prepare_cached(SELECT_CITIZENS).await?;
            let rows = client.query_raw(&statement, [&import_id]).await?;
            let mut rows = std::pin::pin!(rows);
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(row) = rows.try_next().await? {
                batch.push(citizen(&row)?);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(Ok(full)).await.is_err() {
                        return Ok(()); // the client went away
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Ok(batch)).await;
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        if let Err(error) = read.await {
            let _ = tx.send(Err(DbError::from(error))).await;
        }
    });
    Ok(CitizenBatches(rx))
}

/// The stream [`citizens`] returns.
pub struct CitizenBatches(mpsc::Receiver<Result<Vec<Citizen>, DbError>>);

impl Stream for CitizenBatches {
    type Item = Result<Vec<Citizen>, DbError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Applies a PATCH and returns the citizen as stored. Relatives are edited on
/// both sides; the import's row lock makes concurrent PATCHes of one import
/// take turns, so the relation stays symmetric.
pub async fn patch(
    pool: &Pool,
    import_id: i64,
    citizen_id: i64,
    patch: &CitizenPatch,
) -> Result<Citizen, CitizensError> {
    let not_found = CitizensError::CitizenNotFound {
        import_id,
        citizen_id,
    };
    let Some(id) = CitizenId::from_path(citizen_id) else {
        // Still 404 for an unknown import rather than an unknown citizen.
        ensure_import(&*pool.get().await?, import_id).await?;
        return Err(not_found);
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // FOR NO KEY UPDATE conflicts with itself (PATCHes take turns) but not with
    // the key-share locks that foreign keys to `imports` take.
    let lock = tx
        .prepare_cached("SELECT 1 FROM imports WHERE import_id = $1 FOR NO KEY UPDATE")
        .await?;
    if tx.query_opt(&lock, &[&import_id]).await?.is_none() {
        return Err(CitizensError::ImportNotFound(import_id));
    }

    let mut side_effects = None;
    if let Some(relatives) = &patch.relatives {
        let current = tx
            .prepare_cached(
                "SELECT relatives FROM citizens WHERE import_id = $1 AND citizen_id = $2",
            )
            .await?;
        let Some(row) = tx.query_opt(&current, &[&import_id, &id]).await? else {
            return Err(not_found);
        };
        let old: Vec<CitizenId> = row.try_get(0)?;
        check_relatives_exist(&tx, import_id, relatives).await?;
        let old_set: HashSet<_> = old.iter().copied().collect();
        let new_set: HashSet<_> = relatives.iter().copied().collect();
        // The citizen's own list is written whole below; these are the others.
        let removed: Vec<CitizenId> = old
            .iter()
            .filter(|r| !new_set.contains(r) && **r != id)
            .copied()
            .collect();
        let added: Vec<CitizenId> = relatives
            .iter()
            .filter(|r| !old_set.contains(r) && **r != id)
            .copied()
            .collect();
        side_effects = Some((removed, added));
    }

    let update = tx
        .prepare_cached(concat!(
            "UPDATE citizens SET \
               town = coalesce($3, town), street = coalesce($4, street), \
               building = coalesce($5, building), apartment = coalesce($6, apartment), \
               name = coalesce($7, name), birth_date = coalesce($8, birth_date), \
               gender = coalesce($9, gender), relatives = coalesce($10, relatives), \
               channel = coalesce($11, channel) \
             WHERE import_id = $1 AND citizen_id = $2 \
             RETURNING ",
            columns!()
        ))
        .await?;
    let row = tx
        .query_opt(
            &update,
            &[
                &import_id,
                &id,
                &patch.town,
                &patch.street,
                &patch.building,
                &patch.apartment,
                &patch.name,
                &patch.birth_date,
                &patch.gender,
                &patch.relatives,
                &patch.channel,
            ],
        )
        .await?;
    let Some(row) = row else {
        return Err(not_found);
    };
    let updated = citizen(&row)?;

    if let Some((removed, added)) = side_effects.filter(|(r, a)| !r.is_empty() || !a.is_empty()) {
        let others = tx
            .prepare_cached(
                "UPDATE citizens SET relatives = CASE WHEN citizen_id = ANY($3) \
                   THEN array_remove(relatives, $2) ELSE array_append(relatives, $2) END \
                 WHERE import_id = $1 AND citizen_id = ANY($3::int4[] || $4::int4[])",
            )
            .await?;
        tx.execute(&others, &[&import_id, &id, &removed, &added])
            .await?;
    }
    tx.commit().await?;
    Ok(updated)
}

/// A PATCH may only name citizens of the same import.
async fn check_relatives_exist(
    tx: &deadpool_postgres::Transaction<'_>,
    import_id: i64,
    relatives: &[CitizenId],
) -> Result<(), CitizensError> {
    let missing = tx
        .prepare_cached(
            "SELECT id FROM unnest($2::int4[]) AS t(id) WHERE NOT EXISTS \
               (SELECT 1 FROM citizens c WHERE c.import_id = $1 AND c.citizen_id = t.id)",
        )
        .await?;
    let missing: HashSet<CitizenId> = tx
        .query(&missing, &[&import_id, &relatives])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    if missing.is_empty() {
        return Ok(());
    }
    let fields: Vec<(String, String)> = relatives
        .iter()
        .enumerate()
        .filter(|(_, r)| missing.contains(r))
        .map(|(i, r)| {
            (
                format!("relatives[{i}]"),
                format!("relative {r} is not a citizen of this import"),
            )
        })
        .collect();
    Err(Invalid {
        message: format!("invalid patch: {} {}", fields[0].0, fields[0].1),
        fields,
    }
    .into())
}

/// How `birthdays` groups the buyers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    /// Keys `"1"`…`"12"`: the month of the relative's birthday.
    #[default]
    Month,
    /// Keys are the buyer's channel (`"unknown"` when unset); presents count
    /// every relative, a year's worth.
    Channel,
}

/// The channel key of citizens without one.
pub const UNKNOWN_CHANNEL: &str = "unknown";

/// One buyer and how many presents they buy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Presents {
    pub citizen_id: CitizenId,
    pub presents: i32,
}

/// Buyers per group, in key order; serialises as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Birthdays(pub Vec<(String, Vec<Presents>)>);

impl Serialize for Birthdays {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, buyers) in &self.0 {
            map.serialize_entry(key, buyers)?;
        }
        map.end()
    }
}

/// How many presents each citizen buys for their relatives' birthdays, by
/// month (every month present) or by the buyer's channel.
pub async fn birthdays(
    pool: &Pool,
    import_id: i64,
    group_by: GroupBy,
) -> Result<Birthdays, CitizensError> {
    let client = pool.get().await?;
    let birthdays = match group_by {
        GroupBy::Month => {
            let statement = client.prepare_cached(BIRTHDAYS_BY_MONTH).await?;
            let rows = client.query(&statement, &[&import_id]).await?;
            let mut months: Vec<(String, Vec<Presents>)> =
                (1..=12).map(|m| (m.to_string(), Vec::new())).collect();
            for row in &rows {
                let month: i32 = row.try_get(0)?;
                let buyers = &mut months[(month - 1) as usize].1;
                buyers.push(Presents {
                    citizen_id: row.try_get(1)?,
                    presents: row.try_get(2)?,
                });
            }
            if rows.is_empty() {
                ensure_import(&client, import_id).await?;
            }
            Birthdays(months)
        }
        GroupBy::Channel => {
            let statement = client.prepare_cached(BIRTHDAYS_BY_CHANNEL).await?;
            let rows = client
                .query(&statement, &[&import_id, &UNKNOWN_CHANNEL])
                .await?;
            if rows.is_empty() {
                ensure_import(&client, import_id).await?;
            }
            let mut groups = Vec::with_capacity(rows.len());
            for row in &rows {
                let ids: Vec<CitizenId> = row.try_get(1)?;
                let counts: Vec<i32> = row.try_get(2)?;
                let buyers = ids
                    .into_iter()
                    .zip(counts)
                    .map(|(citizen_id, presents)| Presents {
                        citizen_id,
                        presents,
                    })
                    .collect();
                groups.push((row.try_get(0)?, buyers));
            }
            Birthdays(groups)
        }
    };
    Ok(birthdays)
}

/// Age percentiles of one town's citizens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgePercentiles {
    pub town: String,
    pub p50: f64,
    pub p75: f64,
    pub p99: f64,
}

/// Per town (ordered by name), the 50th, 75th and 99th percentiles of the
/// citizens' ages in full years on `today`, interpolated linearly between
/// ranks (`percentile_cont`, numpy's default) and rounded to 2 decimals.
pub async fn age_percentiles(
    pool: &Pool,
    import_id: i64,
    today: NaiveDate,
) -> Result<Vec<AgePercentiles>, CitizensError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(AGE_PERCENTILES).await?;
    let rows = client.query(&statement, &[&import_id, &today]).await?;
    if rows.is_empty() {
        ensure_import(&client, import_id).await?;
    }
    rows.iter()
        .map(|row| {
            Ok(AgePercentiles {
                town: row.try_get(0)?,
                p50: row.try_get(1)?,
                p75: row.try_get(2)?,
                p99: row.try_get(3)?,
            })
        })
        .collect()
}

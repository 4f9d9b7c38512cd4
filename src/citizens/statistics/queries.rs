//! The statistics in SQL, for an import's versions after its first (which
//! `POST /imports` computes and keeps, see `kept`), each answer kept for the
//! version it was read at.

use std::sync::Arc;

use chrono::NaiveDate;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::Row;

use super::answers::{AgePercentiles, Birthdays, GroupBy, Presents, UNKNOWN_CHANNEL};
use super::kept::{current_version, KeptAnswers};
use super::versioned::Key;
use crate::citizens::{CitizenId, CitizensError};
use crate::db::{Client, Pool};

/// The statistics queries read the import's version (see `versioned`) in the
/// same statement, hence in the same snapshot, as the answer: one row with
/// NULLs when the import has nothing to count, none when it does not exist.
/// `$1` is the import id.
macro_rules! with_version {
    ($select:literal, $inner:literal, $order:literal) => {
        concat!(
            "SELECT i.version, ",
            $select,
            " FROM imports i LEFT JOIN LATERAL (",
            $inner,
            ") AS s ON true WHERE i.import_id = $1 ORDER BY ",
            $order
        )
    };
}

/// Relations are symmetric, so "c's relatives born in month m" is "the
/// citizens born in m who list c": each citizen's own row gives its birth
/// month to every relative it lists, no join needed. A self-relative is
/// listed once, so counted once.
pub const BIRTHDAYS_BY_MONTH: &str = with_version!(
    "s.month, s.id, s.presents",
    "SELECT extract(month FROM c.birth_date)::int4 AS month, r.id, count(*)::int4 AS presents \
     FROM citizens c, unnest(c.relatives) AS r(id) \
     WHERE c.import_id = $1 AND cardinality(c.relatives) > 0 GROUP BY 1, 2",
    "s.month, s.id"
);

/// `$2`: the key of citizens without a channel.
pub const BIRTHDAYS_BY_CHANNEL: &str = with_version!(
    "s.channel, s.ids, s.presents",
    "SELECT coalesce(channel, $2) COLLATE \"C\" AS channel, \
       coalesce(array_agg(citizen_id ORDER BY citizen_id) \
         FILTER (WHERE cardinality(relatives) > 0), '{}') AS ids, \
       coalesce(array_agg(cardinality(relatives) ORDER BY citizen_id) \
         FILTER (WHERE cardinality(relatives) > 0), '{}') AS presents \
     FROM citizens WHERE import_id = $1 GROUP BY 1",
    "s.channel"
);

/// `$2`: today (UTC), the day ages are counted on. The array form of
/// `percentile_cont` sorts each town's ages once for all three percentiles.
/// Grouping and ordering by byte order (`COLLATE "C"`) spares the locale's
/// string comparisons; towns come back in code-point order.
pub const AGE_PERCENTILES: &str = with_version!(
    "s.town, round(s.p[1]::numeric, 2)::float8, \
       round(s.p[2]::numeric, 2)::float8, round(s.p[3]::numeric, 2)::float8",
    "SELECT town COLLATE \"C\" AS town, \
       percentile_cont(ARRAY[0.5, 0.75, 0.99]) WITHIN GROUP \
         (ORDER BY extract(year FROM age($2::date, birth_date))::float8) AS p \
     FROM citizens WHERE import_id = $1 GROUP BY 1",
    "s.town"
);

/// Runs a statistics query (see `with_version!`): the version it saw and its
/// rows, minus the all-NULL row of an import with nothing to count (`K` is
/// the type of the rows' first column after the version).
async fn versioned_rows<K: for<'a> FromSql<'a>>(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    import_id: i64,
) -> Result<(i64, Vec<Row>), CitizensError> {
    let statement = client.prepare_cached(sql).await?;
    let rows = client.query(&statement, params).await?;
    let Some(first) = rows.first() else {
        return Err(CitizensError::ImportNotFound(import_id));
    };
    let version: i64 = first.try_get(0)?;
    let mut counted = Vec::with_capacity(rows.len());
    for row in rows {
        if row.try_get::<_, Option<K>>(1)?.is_some() {
            counted.push(row);
        }
    }
    Ok((version, counted))
}

/// How many presents each citizen buys for their relatives' birthdays, by
/// month (every month present) or by the buyer's channel. Answered from
/// `kept` while the import is unchanged.
pub async fn birthdays(
    pool: &Pool,
    kept: &KeptAnswers,
    import_id: i64,
    group_by: GroupBy,
) -> Result<Arc<Birthdays>, CitizensError> {
    let client = pool.get().await?;
    let cache = match group_by {
        GroupBy::Month => &kept.by_month,
        GroupBy::Channel => &kept.by_channel,
    };
    let key = |version| Key {
        import_id,
        version,
        day: None,
    };
    if let Some(hit) = cache.get(key(current_version(&client, import_id).await?)) {
        return Ok(hit);
    }
    let (version, birthdays) = match group_by {
        GroupBy::Month => {
            let (version, rows) =
                versioned_rows::<i32>(&client, BIRTHDAYS_BY_MONTH, &[&import_id], import_id)
                    .await?;
            let mut months: Vec<(String, Vec<Presents>)> =
                (1..=12).map(|m| (m.to_string(), Vec::new())).collect();
            for row in &rows {
                let month: i32 = row.try_get(1)?;
                let buyers = &mut months[(month - 1) as usize].1;
                buyers.push(Presents {
                    citizen_id: row.try_get(2)?,
                    presents: row.try_get(3)?,
                });
            }
            (version, Birthdays(months))
        }
        GroupBy::Channel => {
            let (version, rows) = versioned_rows::<String>(
                &client,
                BIRTHDAYS_BY_CHANNEL,
                &[&import_id, &UNKNOWN_CHANNEL],
                import_id,
            )
            .await?;
            let mut groups = Vec::with_capacity(rows.len());
            for row in &rows {
                let ids: Vec<CitizenId> = row.try_get(2)?;
                let counts: Vec<i32> = row.try_get(3)?;
                let buyers = ids
                    .into_iter()
                    .zip(counts)
                    .map(|(citizen_id, presents)| Presents {
                        citizen_id,
                        presents,
                    })
                    .collect();
                groups.push((row.try_get(1)?, buyers));
            }
            (version, Birthdays(groups))
        }
    };
    let birthdays = Arc::new(birthdays);
    cache.put(key(version), Arc::clone(&birthdays));
    Ok(birthdays)
}

/// Per town (ordered by name), the 50th, 75th and 99th percentiles of the
/// citizens' ages in full years on `today`, interpolated linearly between
/// ranks (`percentile_cont`, numpy's default) and rounded to 2 decimals.
pub async fn age_percentiles(
    pool: &Pool,
    kept: &KeptAnswers,
    import_id: i64,
    today: NaiveDate,
) -> Result<Arc<Vec<AgePercentiles>>, CitizensError> {
    let client = pool.get().await?;
    let key = |version| Key {
        import_id,
        version,
        day: Some(today),
    };
    if let Some(hit) = kept
        .percentiles
        .get(key(current_version(&client, import_id).await?))
    {
        return Ok(hit);
    }
    let (version, rows) =
        versioned_rows::<String>(&client, AGE_PERCENTILES, &[&import_id, &today], import_id)
            .await?;
    let towns = rows
        .iter()
        .map(|row| {
            Ok(AgePercentiles {
                town: row.try_get(1)?,
                p50: row.try_get(2)?,
                p75: row.try_get(3)?,
                p99: row.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let towns = Arc::new(towns);
    kept.percentiles.put(key(version), Arc::clone(&towns));
    Ok(towns)
}

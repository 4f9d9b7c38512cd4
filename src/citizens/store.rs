//! The citizens' queries. Imports are written in one transaction with a
//! binary COPY; the whole-import read streams rows as PostgreSQL sends them;
//! PATCH serialises per import on the import's row lock.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use chrono::NaiveDate;
use futures_util::{Stream, TryStreamExt};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::Row;

use super::cache::{Cache, Key};
use super::{BirthDate, Citizen, CitizenId, CitizenPatch, CitizensError, Invalid};
use crate::audit::Origin;
use crate::db::{Client, DbError, Pool};

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

/// The statistics queries read the import's version (see `cache`) in the
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

async fn ensure_import(
    client: &tokio_postgres::Client,
    import_id: i64,
) -> Result<(), CitizensError> {
    if super::import_exists(client, import_id).await? {
        Ok(())
    } else {
        Err(CitizensError::ImportNotFound(import_id))
    }
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

/// A citizen borrowed from its row: serialises exactly like [`Citizen`]
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

impl<'a> CitizenRow<'a> {
    fn read(row: &'a Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
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
/// The body kept at import (see [`Stats::keep_import`]) answers while the
/// import is at the version it was written with.
pub async fn citizens_json(
    pool: &Pool,
    stats: &Stats,
    import_id: i64,
) -> Result<JsonChunks, CitizensError> {
    let client = pool.get().await?;
    let key = Key {
        import_id,
        version: version(&client, import_id).await?,
        day: None,
    };
    if let Some(body) = stats.citizens.get(key) {
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
                let citizen = CitizenRow::read(&row)?;
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

/// Applies a PATCH and returns the citizen as stored. Relatives are edited on
/// both sides; the import's row lock makes concurrent PATCHes of one import
/// take turns, so the relation stays symmetric. Three round trips besides
/// BEGIN: lock with the read of the relatives, write both sides, COMMIT.
pub async fn patch(
    pool: &Pool,
    import_id: i64,
    citizen_id: i64,
    patch: &CitizenPatch,
    origin: &Origin,
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
    // Bumping the version takes the import row's FOR NO KEY UPDATE lock:
    // PATCHes of one import take turns (it does not conflict with the
    // key-share locks foreign keys to `imports` take), and cached answers
    // about the import stop matching once this commits. A failed PATCH rolls
    // the bump back.
    let lock = tx
        .prepare_cached(
            "UPDATE imports SET version = version + 1 WHERE import_id = $1 RETURNING version",
        )
        .await?;
    // The citizen's relatives and which of the new ones are unknown.
    let current = tx
        .prepare_cached(
            "SELECT (SELECT relatives FROM citizens WHERE import_id = $1 AND citizen_id = $2), \
               ARRAY(SELECT t.id FROM unnest($3::int4[]) AS t(id) WHERE NOT EXISTS \
                 (SELECT 1 FROM citizens c WHERE c.import_id = $1 AND c.citizen_id = t.id))",
        )
        .await?;
    let lock_params: [&(dyn ToSql + Sync); 1] = [&import_id];
    let locked = tx.query_opt(&lock, &lock_params);
    let (locked, current) = match &patch.relatives {
        // Sent together, saving a round trip: one session runs its
        // statements in order, so the read starts (and takes its snapshot)
        // only once the lock is granted, and no other PATCH of the import
        // comes between it and the writes below.
        Some(relatives) => {
            let read_params: [&(dyn ToSql + Sync); 3] = [&import_id, &id, relatives];
            let read = tx.query_one(&current, &read_params);
            let (locked, row) = futures_util::future::try_join(locked, read).await?;
            (locked, Some((relatives, row)))
        }
        None => (locked.await?, None),
    };
    if locked.is_none() {
        return Err(CitizensError::ImportNotFound(import_id));
    }

    let mut removed: Vec<CitizenId> = Vec::new();
    let mut added: Vec<CitizenId> = Vec::new();
    if let Some((relatives, row)) = current {
        let Some(old): Option<Vec<CitizenId>> = row.try_get(0)? else {
            return Err(not_found);
        };
        let missing: Vec<CitizenId> = row.try_get(1)?;
        if !missing.is_empty() {
            return Err(missing_relatives(relatives, &missing).into());
        }
        let old_set: HashSet<_> = old.iter().copied().collect();
        let new_set: HashSet<_> = relatives.iter().copied().collect();
        // The citizen's own list is written whole below; these are the others.
        removed = old
            .iter()
            .filter(|r| !new_set.contains(r) && **r != id)
            .copied()
            .collect();
        added = relatives
            .iter()
            .filter(|r| !old_set.contains(r) && **r != id)
            .copied()
            .collect();
    }

    // One statement writes the citizen and the other side of every changed
    // relation (the others only when the citizen exists).
    let update = tx
        .prepare_cached(concat!(
            "WITH me AS (UPDATE citizens SET \
               town = coalesce($3, town), street = coalesce($4, street), \
               building = coalesce($5, building), apartment = coalesce($6, apartment), \
               name = coalesce($7, name), birth_date = coalesce($8, birth_date), \
               gender = coalesce($9, gender), relatives = coalesce($10, relatives), \
               channel = coalesce($11, channel) \
             WHERE import_id = $1 AND citizen_id = $2 \
             RETURNING ",
            columns!(),
            "), others AS (UPDATE citizens SET relatives = CASE WHEN citizen_id = ANY($12) \
               THEN array_remove(relatives, $2) ELSE array_append(relatives, $2) END \
             WHERE import_id = $1 AND citizen_id = ANY($12::int4[] || $13::int4[]) \
               AND EXISTS (SELECT 1 FROM me)) \
             SELECT * FROM me"
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
                &removed,
                &added,
            ],
        )
        .await?;
    let Some(row) = row else {
        return Err(not_found);
    };
    let updated = citizen(&row)?;
    origin
        .entry("updated")
        .import(import_id)
        .citizen(id.get())
        .detail(serde_json::json!({ "fields": patch.field_names() }))
        .record(&tx)
        .await?;
    tx.commit().await?;
    Ok(updated)
}

/// The 400 for relatives that are not citizens of the import, naming each
/// (the first [`super::parse::MAX_PROBLEMS`]; a set, so linear in the list).
fn missing_relatives(relatives: &[CitizenId], missing: &[CitizenId]) -> Invalid {
    let missing: HashSet<CitizenId> = missing.iter().copied().collect();
    let mut problems = super::parse::Problems::default();
    for (i, r) in relatives.iter().enumerate() {
        if missing.contains(r) {
            problems.add(
                format!("relatives[{i}]"),
                format!("relative {r} is not a citizen of this import"),
            );
        }
    }
    match problems.finish("invalid patch", ()) {
        Err(invalid) => invalid,
        Ok(()) => Invalid {
            message: "invalid patch: a relative is not a citizen of this import".to_owned(),
            fields: Vec::new(),
        },
    }
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

/// The statistics' answers per import version (see [`Cache`]).
#[derive(Debug)]
pub struct Stats {
    /// The body of `GET citizens` for an import's first version (see
    /// [`citizens_json`]): a few MB each, so fewer of them.
    citizens: Cache<Bytes>,
    by_month: Cache<Birthdays>,
    by_channel: Cache<Birthdays>,
    percentiles: Cache<Vec<AgePercentiles>>,
}

impl Stats {
    /// Keeps the answers about the `imports` most recently asked about
    /// (each a few hundred kB at most for 10,000 citizens).
    pub fn new(imports: usize) -> Self {
        Self {
            citizens: Cache::new(KEPT_BODIES.min(imports)),
            by_month: Cache::new(imports),
            by_channel: Cache::new(imports),
            percentiles: Cache::new(imports),
        }
    }

    /// Keeps the answers about a just-committed import, worked out from the
    /// citizens it was written from (see `stats`): they are what the SQL
    /// would answer for that version, which a PATCH on any instance ends.
    pub fn keep_import(&self, stored: Stored, answers: ImportAnswers) {
        let key = |day| Key {
            import_id: stored.import_id,
            version: stored.version,
            day,
        };
        self.citizens.put(key(None), Arc::new(answers.citizens));
        self.by_month.put(key(None), Arc::new(answers.by_month));
        self.by_channel.put(key(None), Arc::new(answers.by_channel));
        self.percentiles
            .put(key(Some(answers.day)), Arc::new(answers.percentiles));
    }
}

impl Stats {
    /// Drops every answer kept about `import_id` (an erased import).
    pub fn forget(&self, import_id: i64) {
        self.citizens.forget(import_id);
        self.by_month.forget(import_id);
        self.by_channel.forget(import_id);
        self.percentiles.forget(import_id);
    }
}

/// Imports whose `GET citizens` body is kept: 2.4 MB each at 10,000
/// citizens, so at most ~20 MB.
const KEPT_BODIES: usize = 8;

/// What [`citizens_json`] streams for `citizens`: the same JSON objects in
/// the same (`citizen_id`) order as the rows give.
fn citizens_body(citizens: &[Citizen]) -> Bytes {
    let mut sorted: Vec<&Citizen> = citizens.iter().collect();
    sorted.sort_unstable_by_key(|c| c.citizen_id);
    let mut body = Vec::with_capacity(citizens.len() * 256);
    for (i, c) in sorted.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, c).expect("writing JSON to memory");
    }
    Bytes::from(body)
}

/// Every answer kept about one set of citizens, on `day`.
#[derive(Debug)]
pub struct ImportAnswers {
    citizens: Bytes,
    by_month: Birthdays,
    by_channel: Birthdays,
    percentiles: Vec<AgePercentiles>,
    day: NaiveDate,
}

impl ImportAnswers {
    pub fn of(citizens: &[Citizen], day: NaiveDate) -> Self {
        Self {
            citizens: citizens_body(citizens),
            by_month: super::stats::birthdays_by_month(citizens),
            by_channel: super::stats::birthdays_by_channel(citizens),
            percentiles: super::stats::age_percentiles(citizens, day),
            day,
        }
    }
}

/// The import's current version; `ImportNotFound` when it does not exist.
async fn version(client: &Client, import_id: i64) -> Result<i64, CitizensError> {
    let statement = client
        .prepare_cached("SELECT version FROM imports WHERE import_id = $1")
        .await?;
    match client.query_opt(&statement, &[&import_id]).await? {
        Some(row) => Ok(row.try_get(0)?),
        None => Err(CitizensError::ImportNotFound(import_id)),
    }
}

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
/// `stats` while the import is unchanged.
pub async fn birthdays(
    pool: &Pool,
    stats: &Stats,
    import_id: i64,
    group_by: GroupBy,
) -> Result<Arc<Birthdays>, CitizensError> {
    let client = pool.get().await?;
    let cache = match group_by {
        GroupBy::Month => &stats.by_month,
        GroupBy::Channel => &stats.by_channel,
    };
    let key = |version| Key {
        import_id,
        version,
        day: None,
    };
    if let Some(hit) = cache.get(key(version(&client, import_id).await?)) {
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
    stats: &Stats,
    import_id: i64,
    today: NaiveDate,
) -> Result<Arc<Vec<AgePercentiles>>, CitizensError> {
    let client = pool.get().await?;
    let key = |version| Key {
        import_id,
        version,
        day: Some(today),
    };
    if let Some(hit) = stats
        .percentiles
        .get(key(version(&client, import_id).await?))
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
    stats.percentiles.put(key(version), Arc::clone(&towns));
    Ok(towns)
}

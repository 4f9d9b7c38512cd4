//! An import's residents as the insights group them: the population
//! behind every rate. Loaded per import version (a PATCH bumps it), so a
//! moved resident counts in their new town at the next request.

use chrono::NaiveDate;
use tokio_postgres::types::{FromSql, Type};

use crate::citizens::BirthDate;
use crate::db::{Client, DbError};

/// A name list and each resident's index into it (towns, channels).
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub names: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

impl Names {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        i
    }
}

/// The genders' names, by the index [`Residents::gender`] holds (1: male).
pub const GENDERS: [&str; 2] = ["female", "male"];

/// Columns per resident, in citizen id order.
#[derive(Debug, Clone, Default)]
pub struct Residents {
    pub version: i64,
    pub ids: Vec<i32>,
    pub town: Vec<u32>,
    pub towns: Names,
    pub birth: Vec<BirthDate>,
    /// Index into [`GENDERS`].
    pub gender: Vec<u8>,
    /// The resident's advertising channel; `unknown` when unset.
    pub channel: Vec<u32>,
    pub channels: Names,
}

impl Residents {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Full years of resident `r` on `day` (0 for a day before the birth).
    pub fn age_on(&self, r: usize, day: NaiveDate) -> i32 {
        self.birth[r].age_on(day).max(0)
    }

    /// Roughly the memory they take.
    pub fn bytes(&self) -> usize {
        self.ids.len() * 20
            + self
                .towns
                .names
                .iter()
                .chain(&self.channels.names)
                .map(|n| 2 * n.len() + 64)
                .sum::<usize>()
    }
}

/// The residents of an import in one row, a column an array, in citizen
/// id order: one row parses much faster than 10,000, and aggregating rows
/// read in the primary key's order costs one index scan (an `ORDER BY` in
/// each aggregate sorted five times, twice the time). PostgreSQL keeps a
/// sorted subquery's order in practice, not by promise: [`load`] checks it.
const RESIDENTS: &str = "SELECT i.version, \
        COALESCE(c.ids, '{}') AS ids, COALESCE(c.towns, '{}') AS towns, \
        COALESCE(c.births, '{}') AS births, COALESCE(c.males, '{}') AS males, \
        COALESCE(c.channels, '{}') AS channels \
   FROM imports i CROSS JOIN LATERAL ( \
        SELECT array_agg(citizen_id) AS ids, array_agg(town) AS towns, \
               array_agg(birth_date) AS births, array_agg(gender = 'male') AS males, \
               array_agg(channel) AS channels \
          FROM (SELECT citizen_id, town, birth_date, gender, channel FROM citizens \
                 WHERE import_id = i.import_id ORDER BY citizen_id) o) c \
  WHERE i.import_id = $1";

/// The residents kept compact (migration V18) when they are of the
/// import's current version, read with that version in one statement.
const KEPT: &str = "SELECT i.version, r.data FROM imports i \
    LEFT JOIN insight_residents r ON r.import_id = i.import_id AND r.version = i.version \
    WHERE i.import_id = $1";

/// Prepares the statements on `client` (the service warms its connections).
pub async fn prepare(client: &Client) -> Result<(), DbError> {
    client.prepare_cached(RESIDENTS).await?;
    client.prepare_cached(KEPT).await?;
    Ok(())
}

/// Residents as [`load_kept`] found them.
#[derive(Debug)]
pub struct Fetched {
    pub residents: Residents,
    /// False when they were aggregated from `citizens` (none kept at the
    /// import's version): the caller should [`keep`] them.
    pub kept: bool,
}

/// The residents of import `import_id`: their compact row when it is of
/// the import's version (one value of ~17 bytes a resident), else
/// aggregated from `citizens` as [`load`] does. `None`: no such import.
pub async fn load_kept(client: &Client, import_id: i64) -> Result<Option<Fetched>, DbError> {
    let query = client.prepare_cached(KEPT).await?;
    let Some(row) = client.query_opt(&query, &[&import_id]).await? else {
        return Ok(None);
    };
    let version: i64 = row.try_get("version")?;
    if let Some(data) = row.try_get::<_, Option<&[u8]>>("data")? {
        let residents = decode(data, version).map_err(|e| DbError::Corrupt(e.to_string()))?;
        return Ok(Some(Fetched {
            residents,
            kept: true,
        }));
    }
    Ok(load(client, import_id).await?.map(|residents| Fetched {
        residents,
        kept: false,
    }))
}

/// Keeps `residents` compact for the next cold loads of any instance (and
/// marks the import as asked when it was). Never replaces a newer
/// version's row.
pub async fn keep(
    client: &Client,
    import_id: i64,
    residents: &Residents,
    asked: bool,
) -> Result<(), DbError> {
    let data = encode(residents);
    client
        .execute(
            "INSERT INTO insight_residents AS r (import_id, version, asked_at, data) \
             SELECT import_id, $2, CASE WHEN $4 THEN now() END, $3 \
               FROM imports WHERE import_id = $1 \
             ON CONFLICT (import_id) DO UPDATE \
             SET version = EXCLUDED.version, data = EXCLUDED.data, \
                 asked_at = COALESCE(EXCLUDED.asked_at, r.asked_at) \
             WHERE r.version < EXCLUDED.version",
            &[&import_id, &residents.version, &data, &asked],
        )
        .await?;
    Ok(())
}

/// Marks the import as asked now (at most once a minute: a cold load, not
/// every request, calls this), for [`recently_asked`].
pub async fn asked(client: &Client, import_id: i64) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE insight_residents SET asked_at = now() WHERE import_id = $1 \
             AND (asked_at IS NULL OR asked_at < now() - interval '1 minute')",
            &[&import_id],
        )
        .await?;
    Ok(())
}

/// Up to `limit` imports asked within `within`, most recent first, with
/// how many statements their segments hold (to estimate their memory).
pub async fn recently_asked(
    client: &Client,
    within: std::time::Duration,
    limit: i64,
) -> Result<Vec<(i64, i64)>, DbError> {
    let rows = client
        .query(
            "SELECT r.import_id, COALESCE((SELECT sum(s.statements) FROM insight_segments s \
                    WHERE s.import_id = r.import_id), 0)::int8 AS statements \
               FROM insight_residents r \
              WHERE r.asked_at > now() - make_interval(secs => $1) \
              ORDER BY r.asked_at DESC LIMIT $2",
            &[&within.as_secs_f64(), &limit],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

const MAGIC: &[u8; 4] = b"IRS1";
/// More residents than an import may have: a corrupt count is refused
/// before anything is allocated for it.
const MAX_RESIDENTS: usize = 1 << 24;

/// The compact form: `"IRS1"`, u32 residents, u32 towns, u32 channels, the
/// town then channel names (u32 length + UTF-8 each), then the columns
/// little-endian: ids i32, town u32, channel u32, birth i32 (days since
/// 2000-01-01, PostgreSQL's date), gender u8.
pub fn encode(r: &Residents) -> Vec<u8> {
    let n = r.len();
    let mut out = Vec::with_capacity(16 + n * 17 + r.bytes() / 4);
    out.extend_from_slice(MAGIC);
    for count in [n, r.towns.names.len(), r.channels.names.len()] {
        out.extend_from_slice(&(count as u32).to_le_bytes());
    }
    for name in r.towns.names.iter().chain(&r.channels.names) {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    out.extend(r.ids.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(r.town.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(r.channel.iter().flat_map(|v| v.to_le_bytes()));
    let y2k = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
    out.extend(r.birth.iter().flat_map(|b| {
        let days = (b.date() - y2k).num_days();
        i32::try_from(days).unwrap_or(i32::MAX).to_le_bytes()
    }));
    out.extend_from_slice(&r.gender);
    out
}

/// Why bytes are not kept residents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt kept residents: {0}")]
pub struct KeptError(pub &'static str);

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KeptError> {
        let end = self.at.checked_add(n).ok_or(KeptError("length"))?;
        let out = self.bytes.get(self.at..end).ok_or(KeptError("truncated"))?;
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, KeptError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn names(&mut self, count: usize) -> Result<Names, KeptError> {
        let mut names = Names::default();
        for _ in 0..count {
            let len = self.u32()? as usize;
            let name = std::str::from_utf8(self.take(len)?).map_err(|_| KeptError("name"))?;
            if names.intern(name) as usize != names.names.len() - 1 {
                return Err(KeptError("repeated name"));
            }
        }
        Ok(names)
    }

    fn column(&mut self, n: usize) -> Result<impl Iterator<Item = [u8; 4]> + 'a, KeptError> {
        let bytes = self.take(n.checked_mul(4).ok_or(KeptError("length"))?)?;
        Ok(bytes.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]))
    }
}

/// The residents [`encode`] wrote, at `version`.
pub fn decode(bytes: &[u8], version: i64) -> Result<Residents, KeptError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != MAGIC {
        return Err(KeptError("magic"));
    }
    let n = r.u32()? as usize;
    let (towns, channels) = (r.u32()? as usize, r.u32()? as usize);
    if n > MAX_RESIDENTS || towns > n.max(1) || channels > n.max(1) {
        return Err(KeptError("counts"));
    }
    let towns = r.names(towns)?;
    let channels = r.names(channels)?;
    let ids: Vec<i32> = r.column(n)?.map(i32::from_le_bytes).collect();
    if !ids.windows(2).all(|w| w[0] < w[1]) {
        return Err(KeptError("ids out of order"));
    }
    let index = |column: Vec<u32>, names: &Names| -> Result<Vec<u32>, KeptError> {
        match column.iter().all(|i| (*i as usize) < names.names.len()) {
            true => Ok(column),
            false => Err(KeptError("name index")),
        }
    };
    let town = index(r.column(n)?.map(u32::from_le_bytes).collect(), &towns)?;
    let channel = index(r.column(n)?.map(u32::from_le_bytes).collect(), &channels)?;
    // Through the date's own SQL decoding: the days PostgreSQL would send.
    let birth = r
        .column(n)?
        .map(|le| {
            let days = i32::from_le_bytes(le).to_be_bytes();
            BirthDate::from_sql(&Type::DATE, &days).map_err(|_| KeptError("birth date"))
        })
        .collect::<Result<Vec<BirthDate>, KeptError>>()?;
    let gender = r.take(n)?.to_vec();
    if gender.iter().any(|g| usize::from(*g) >= GENDERS.len()) || r.at != bytes.len() {
        return Err(KeptError("gender or trailing bytes"));
    }
    Ok(Residents {
        version,
        ids,
        town,
        towns,
        birth,
        gender,
        channel,
        channels,
    })
}

/// The residents of import `import_id` and the version they were read at,
/// in one statement; `None` when the import does not exist.
pub async fn load(client: &Client, import_id: i64) -> Result<Option<Residents>, DbError> {
    let query = client.prepare_cached(RESIDENTS).await?;
    let Some(row) = client.query_opt(&query, &[&import_id]).await? else {
        return Ok(None);
    };
    let ids: Vec<i32> = row.try_get("ids")?;
    let towns: Vec<&str> = row.try_get("towns")?;
    let births: Vec<BirthDate> = row.try_get("births")?;
    let males: Vec<bool> = row.try_get("males")?;
    let channels: Vec<Option<&str>> = row.try_get("channels")?;
    let n = ids.len();
    if [towns.len(), births.len(), males.len(), channels.len()] != [n; 4] {
        return Err(DbError::Corrupt(
            "residents' columns of unequal length".into(),
        ));
    }
    // In citizen id order (see RESIDENTS), else sorted here.
    let mut order: Vec<usize> = (0..n).collect();
    if !ids.windows(2).all(|w| w[0] < w[1]) {
        order.sort_by_key(|i| ids[*i]);
    }
    let mut residents = Residents {
        version: row.try_get("version")?,
        ids: order.iter().map(|i| ids[*i]).collect(),
        birth: order.iter().map(|i| births[*i]).collect(),
        gender: order.iter().map(|i| u8::from(males[*i])).collect(),
        ..Residents::default()
    };
    residents.town = order
        .iter()
        .map(|i| residents.towns.intern(towns[*i]))
        .collect();
    residents.channel = order
        .iter()
        .map(|i| residents.channels.intern(channels[*i].unwrap_or("unknown")))
        .collect();
    Ok(Some(residents))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Residents {
        let today = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        let mut r = Residents {
            version: 3,
            ids: vec![1, 7, 42],
            birth: ["29.02.1992", "01.01.0001", "07.12.2026"]
                .iter()
                .map(|d| BirthDate::parse(d, today).unwrap())
                .collect(),
            gender: vec![1, 0, 1],
            ..Residents::default()
        };
        r.town = ["Москва", "=Bath", "Москва"]
            .iter()
            .map(|t| r.towns.intern(t))
            .collect();
        r.channel = ["unknown", "tiktok", "tiktok"]
            .iter()
            .map(|c| r.channels.intern(c))
            .collect();
        r
    }

    #[test]
    fn kept_residents_read_back_as_written() {
        let r = sample();
        let mut back = decode(&encode(&r), 3).unwrap();
        assert_eq!(back.ids, r.ids);
        assert_eq!(back.town, r.town);
        assert_eq!(back.towns.names, r.towns.names);
        assert_eq!(back.channel, r.channel);
        assert_eq!(back.channels.names, r.channels.names);
        assert_eq!(back.birth, r.birth);
        assert_eq!(back.gender, r.gender);
        assert_eq!(back.version, 3);
        assert_eq!(back.channels.intern("tiktok"), 1);
        let empty = decode(&encode(&Residents::default()), 0).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn corrupt_kept_residents_are_refused_not_panicked_on() {
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 3).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad.push(0);
        assert!(decode(&bad, 3).is_err());
        let mut bad_gender = bytes;
        *bad_gender.last_mut().unwrap() = 2;
        assert!(decode(&bad_gender, 3).is_err());
    }
}

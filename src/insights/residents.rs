//! An import's residents as the insights group them: the population
//! behind every rate. Loaded per import version (a PATCH bumps it), so a
//! moved resident counts in their new town at the next request.

use chrono::NaiveDate;

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

/// Prepares the statement on `client` (the service warms its connections).
pub async fn prepare(client: &Client) -> Result<(), DbError> {
    client.prepare_cached(RESIDENTS).await?;
    Ok(())
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

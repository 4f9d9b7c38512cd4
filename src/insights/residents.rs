//! An import's residents as the insights group them: the population
//! behind every rate. Loaded per import version (a PATCH bumps it), so a
//! moved resident counts in their new town at the next request.

use chrono::NaiveDate;

use crate::citizens::{BirthDate, Gender};
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

/// The genders' names, by the index [`Residents::gender`] holds.
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

/// The residents of import `import_id` and the version they were read at,
/// in one statement; `None` when the import does not exist.
pub async fn load(client: &Client, import_id: i64) -> Result<Option<Residents>, DbError> {
    let query = client
        .prepare_cached(
            "SELECT i.version, c.citizen_id, c.town, c.birth_date, c.gender, c.channel \
               FROM imports i LEFT JOIN citizens c ON c.import_id = i.import_id \
              WHERE i.import_id = $1 ORDER BY c.citizen_id",
        )
        .await?;
    let rows = client.query(&query, &[&import_id]).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut residents = Residents {
        version: first.try_get(0)?,
        ..Residents::default()
    };
    for row in &rows {
        let Some(id) = row.try_get::<_, Option<i32>>(1)? else {
            continue; // an import without citizens
        };
        let town: &str = row.try_get(2)?;
        let gender: Gender = row.try_get(4)?;
        let channel: Option<&str> = row.try_get(5)?;
        residents.ids.push(id);
        let town = residents.towns.intern(town);
        residents.town.push(town);
        residents.birth.push(row.try_get(3)?);
        residents
            .gender
            .push(u8::from(gender.as_str() == GENDERS[1]));
        let channel = residents.channels.intern(channel.unwrap_or("unknown"));
        residents.channel.push(channel);
    }
    Ok(Some(residents))
}

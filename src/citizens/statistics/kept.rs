//! The answers kept about imports, per import version: what `POST /imports`
//! worked out from the citizens it wrote, and what the SQL answered since.
//! A reader first reads the import's current version ([`current_version`])
//! and uses a kept answer only when it was kept for that version.

use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;

use super::answers::{AgePercentiles, Birthdays};
use super::computed;
use super::versioned::{Key, PerVersion};
use crate::citizens::write::Stored;
use crate::citizens::{Citizen, CitizensError};
use crate::db::Client;

/// Every kind of answer kept about the imports most recently asked about
/// (see [`PerVersion`]); shared by the handlers, emptied of an erased
/// import by [`KeptAnswers::forget`].
#[derive(Debug)]
pub struct KeptAnswers {
    /// The body of `GET citizens` for an import's first version (see
    /// `read::citizens_json`): a few MB each, so fewer of them.
    pub(in crate::citizens) citizens: PerVersion<Bytes>,
    pub(in crate::citizens) by_month: PerVersion<Birthdays>,
    pub(in crate::citizens) by_channel: PerVersion<Birthdays>,
    pub(in crate::citizens) percentiles: PerVersion<Vec<AgePercentiles>>,
}

impl KeptAnswers {
    /// Keeps the answers about the `imports` most recently asked about
    /// (each a few hundred kB at most for 10,000 citizens).
    pub fn new(imports: usize) -> Self {
        Self {
            citizens: PerVersion::new(KEPT_BODIES.min(imports)),
            by_month: PerVersion::new(imports),
            by_channel: PerVersion::new(imports),
            percentiles: PerVersion::new(imports),
        }
    }

    /// Keeps the answers about a just-committed import, worked out from the
    /// citizens it was written from (see `computed`): they are what the SQL
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
            by_month: computed::birthdays_by_month(citizens),
            by_channel: computed::birthdays_by_channel(citizens),
            percentiles: computed::age_percentiles(citizens, day),
            day,
        }
    }
}

/// What `read::citizens_json` streams for `citizens`: the same JSON objects
/// in the same (`citizen_id`) order as the rows give.
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

/// The import's current version, which a kept answer must have been kept
/// for; `ImportNotFound` when the import does not exist.
pub async fn current_version(client: &Client, import_id: i64) -> Result<i64, CitizensError> {
    let statement = client
        .prepare_cached("SELECT version FROM imports WHERE import_id = $1")
        .await?;
    match client.query_opt(&statement, &[&import_id]).await? {
        Some(row) => Ok(row.try_get(0)?),
        None => Err(CitizensError::ImportNotFound(import_id)),
    }
}

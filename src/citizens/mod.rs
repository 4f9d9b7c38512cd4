//! Citizens imports, compatible with the 2019 backend-school citizens API,
//! plus insikt's optional advertising `channel`.
//!
//! `fields` holds the types a valid citizen is made of, `parse` turns JSON
//! bodies into them (`fast` first tries a valid import's quick path),
//! `relatives` checks the rules spanning a whole import. The PostgreSQL side
//! is one file per use: `write` (an import), `read` (the whole import as
//! JSON), `patch` (one citizen), with `rows` the columns they share;
//! `statistics` answers the questions about an import and keeps the answers
//! per import version. No HTTP here: errors are [`CitizensError`].

pub mod fast;
pub mod fields;
pub mod parse;
pub mod patch;
pub mod read;
mod relatives;
mod rows;
pub mod statistics;
pub mod write;

use serde::Serialize;

pub use fields::{Apartment, BirthDate, CitizenId, FieldError, Gender, Place, Text};
pub use relatives::check_import;
pub use statistics::{AgePercentiles, Birthdays, GroupBy, KeptAnswers, Presents};

use crate::db::DbError;

/// Whether import `import_id` exists: the one such check of every module
/// (statements, demand, towns and these), since imports are the citizens'.
pub async fn import_exists(
    client: &tokio_postgres::Client,
    import_id: i64,
) -> Result<bool, DbError> {
    Ok(client
        .query_opt("SELECT 1 FROM imports WHERE import_id = $1", &[&import_id])
        .await?
        .is_some())
}

/// Most citizens one import may hold.
pub const MAX_CITIZENS: usize = 10_000;

/// A valid citizen. Serialises exactly as the API shows it (`channel` only
/// when set).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citizen {
    pub citizen_id: CitizenId,
    pub town: Place,
    pub street: Place,
    pub building: Place,
    pub apartment: Apartment,
    pub name: Text,
    pub birth_date: BirthDate,
    pub gender: Gender,
    pub relatives: Vec<CitizenId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Text>,
}

/// The fields a PATCH changes; `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CitizenPatch {
    pub town: Option<Place>,
    pub street: Option<Place>,
    pub building: Option<Place>,
    pub apartment: Option<Apartment>,
    pub name: Option<Text>,
    pub birth_date: Option<BirthDate>,
    pub gender: Option<Gender>,
    pub relatives: Option<Vec<CitizenId>>,
    pub channel: Option<Text>,
}

impl CitizenPatch {
    /// The names of the fields it changes (what the audit trail records:
    /// never the values).
    pub fn field_names(&self) -> Vec<&'static str> {
        [
            ("town", self.town.is_some()),
            ("street", self.street.is_some()),
            ("building", self.building.is_some()),
            ("apartment", self.apartment.is_some()),
            ("name", self.name.is_some()),
            ("birth_date", self.birth_date.is_some()),
            ("gender", self.gender.is_some()),
            ("relatives", self.relatives.is_some()),
            ("channel", self.channel.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// Input that broke the API's rules: a summary and, per offending value, its
/// path (`citizens[3].birth_date`, `relatives[1]`) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub message: String,
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CitizensError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("import {0} does not exist")]
    ImportNotFound(i64),
    #[error("citizen {citizen_id} does not exist in import {import_id}")]
    CitizenNotFound { import_id: i64, citizen_id: i64 },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for CitizensError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Db(error.into())
    }
}

impl From<deadpool_postgres::PoolError> for CitizensError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Db(error.into())
    }
}

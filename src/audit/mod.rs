//! The audit trail: one row per accepted change (who by token name, when,
//! which route, what it touched, the outcome), written by the domain in the
//! change's own transaction where there is one (migration V15). Rows never
//! carry a personal field's value: ids, counts and field names only.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;

use crate::db::{DbError, Pool};

/// Who asked for a change, and through which route: what every row starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The name of the token the request carried, if any.
    pub token: Option<String>,
    pub method: String,
    /// The route-table pattern, e.g. `/imports/{import_id}/citizens/{citizen_id}`.
    pub route: &'static str,
}

/// One row, built from an [`Origin`] with [`Origin::entry`].
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    origin: &'a Origin,
    outcome: &'static str,
    import_id: Option<i64>,
    citizen_id: Option<i32>,
    airport_id: Option<i64>,
    job: Option<String>,
    detail: Value,
}

impl Origin {
    /// A row saying this change's `outcome` (`created`, `updated`, `erased`…).
    pub fn entry(&self, outcome: &'static str) -> Entry<'_> {
        Entry {
            origin: self,
            outcome,
            import_id: None,
            citizen_id: None,
            airport_id: None,
            job: None,
            detail: Value::Object(serde_json::Map::new()),
        }
    }
}

impl Entry<'_> {
    pub fn import(mut self, id: i64) -> Self {
        self.import_id = Some(id);
        self
    }

    pub fn citizen(mut self, id: i32) -> Self {
        self.citizen_id = Some(id);
        self
    }

    pub fn airport(mut self, id: i64) -> Self {
        self.airport_id = Some(id);
        self
    }

    pub fn job(mut self, name: &str) -> Self {
        self.job = Some(name.to_owned());
        self
    }

    /// Counts and field names only, never a field's value.
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// Writes the row through `client`: inside the change's transaction,
    /// it commits or rolls back with the change.
    pub async fn record(&self, client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
        let insert = client
            .prepare_cached(
                "INSERT INTO audit (token, method, route, outcome, import_id, citizen_id, \
                 airport_id, job, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await?;
        client
            .execute(
                &insert,
                &[
                    &self.origin.token,
                    &self.origin.method,
                    &self.origin.route,
                    &self.outcome,
                    &self.import_id,
                    &self.citizen_id,
                    &self.airport_id,
                    &self.job,
                    &self.detail,
                ],
            )
            .await?;
        Ok(())
    }

    /// Writes the row on its own, for a change PostgreSQL did not make (a
    /// Kafka transaction, a job stopped through its actor).
    pub async fn record_alone(&self, pool: &Pool) -> Result<(), DbError> {
        let client = pool.get().await?;
        self.record(&client).await?;
        Ok(())
    }
}

/// A row as `GET /audit` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    /// The name of the token used; absent when none was (open mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub method: String,
    /// The route-table pattern of the request.
    pub route: String,
    /// What happened: `created`, `updated`, `deleted`, `soft_deleted`,
    /// `uploaded`, `accepted`, `stopped`, `started`, `replayed`, `erased`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub citizen_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub airport_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Counts and field names (never field values).
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// Rows with an id above `after`, oldest first, at most `limit`.
pub async fn page(pool: &Pool, after: i64, limit: i64) -> Result<Vec<AuditRow>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, at, token, method, route, outcome, import_id, citizen_id, airport_id, \
             job, detail FROM audit WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditRow {
                id: row.try_get(0)?,
                at: row.try_get(1)?,
                token: row.try_get(2)?,
                method: row.try_get(3)?,
                route: row.try_get(4)?,
                outcome: row.try_get(5)?,
                import_id: row.try_get(6)?,
                citizen_id: row.try_get(7)?,
                airport_id: row.try_get(8)?,
                job: row.try_get(9)?,
                detail: row.try_get(10)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(DbError::from)
}

//! The jobs' rows in PostgreSQL: the source of truth for job state.
// Still read with Row::get: the engine rework (branch `engine`, issue 27)
// reads every row here with try_get and lands with it.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{JobView, Naming};
use crate::db::{Client, DbError};
use crate::telemetry::metrics;

/// Filters of `GET /jobs`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub name: Option<String>,
    pub state: Option<String>,
    pub import: Option<i64>,
}

/// What a job actor needs to know about its row.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub name: String,
    pub import_id: i64,
    pub topic: String,
    pub state: String,
    pub desired: String,
    pub topic_ready: bool,
    pub expires_at: DateTime<Utc>,
    /// The instance whose consumer-group member holds the job's topic.
    pub owner: Option<String>,
}

const ROW_COLUMNS: &str = "name, import_id, topic, state, desired, topic_ready, expires_at, owner";

fn row(r: &tokio_postgres::Row) -> JobRow {
    JobRow {
        name: r.get(0),
        import_id: r.get(1),
        topic: r.get(2),
        state: r.get(3),
        desired: r.get(4),
        topic_ready: r.get(5),
        expires_at: r.get(6),
        owner: r.get(7),
    }
}

/// Gives every import without a job (or just `only`) its `pending` job row.
pub async fn create_missing(
    client: &Client,
    naming: &Naming,
    retention: Duration,
    only: Option<i64>,
) -> Result<(), DbError> {
    let imports = client
        .query(
            "SELECT i.import_id FROM imports i \
             WHERE ($1::bigint IS NULL OR i.import_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.import_id = i.import_id)",
            &[&only],
        )
        .await?;
    let seconds = retention.as_secs_f64();
    for import in imports {
        let import_id: i64 = import.get(0);
        let name = naming.job_name(import_id);
        let inserted = client
            .execute(
                "INSERT INTO jobs (name, import_id, topic, expires_at) \
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4)) ON CONFLICT DO NOTHING",
                &[&name, &import_id, &naming.topic(&name), &seconds],
            )
            .await?;
        if inserted > 0 {
            metrics::set_job_state(&name, "pending");
        }
    }
    Ok(())
}

/// The topics of jobs named before deployments had identities (migration
/// V9) that may still be consumed: they are subscribed to by name.
pub async fn legacy_topics(client: &Client) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "SELECT topic FROM jobs WHERE legacy_topic AND state <> 'expired' ORDER BY topic",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Jobs that are not finished (not expired or failed), or just `only`'s.
pub async fn live(client: &Client, only: Option<i64>) -> Result<Vec<JobRow>, DbError> {
    let rows = client
        .query(
            &format!(
                "SELECT {ROW_COLUMNS} FROM jobs WHERE state NOT IN ('expired', 'failed') \
                 AND ($1::bigint IS NULL OR import_id = $1) ORDER BY import_id"
            ),
            &[&only],
        )
        .await?;
    Ok(rows.iter().map(row).collect())
}

/// The job of an import, whatever its state.
pub async fn of_import(client: &Client, import_id: i64) -> Result<Option<JobRow>, DbError> {
    let row_opt = client
        .query_opt(
            &format!("SELECT {ROW_COLUMNS} FROM jobs WHERE import_id = $1"),
            &[&import_id],
        )
        .await?;
    Ok(row_opt.as_ref().map(row))
}

pub async fn by_name(client: &Client, name: &str) -> Result<Option<JobRow>, DbError> {
    let row_opt = client
        .query_opt(
            &format!("SELECT {ROW_COLUMNS} FROM jobs WHERE name = $1"),
            &[&name],
        )
        .await?;
    Ok(row_opt.as_ref().map(row))
}

/// The topic exists: a stopped job becomes `stopped`, others stay pending
/// until their actor reports `running`.
pub async fn topic_created(client: &Client, name: &str) -> Result<(), DbError> {
    let updated = client
        .query_opt(
            "UPDATE jobs SET topic_ready = true, last_error = NULL, updated_at = now(), \
             state = CASE WHEN desired = 'stopped' AND state = 'pending' THEN 'stopped' ELSE state END \
             WHERE name = $1 RETURNING state",
            &[&name],
        )
        .await?;
    if let Some(row) = updated {
        metrics::set_job_state(name, row.get(0));
    }
    Ok(())
}

pub async fn set_desired(client: &Client, name: &str, desired: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE jobs SET desired = $2, updated_at = now() WHERE name = $1",
            &[&name, &desired],
        )
        .await?;
    Ok(())
}

/// Records a state change (never leaving `expired`) in the table and in the
/// job state gauge, and the owner when given (ownership itself changes only
/// with [`claim`] and [`release`]).
pub async fn set_state(
    client: &Client,
    name: &str,
    state: &str,
    owner: Option<&str>,
    error: Option<&str>,
) -> Result<(), DbError> {
    let updated = client
        .execute(
            "UPDATE jobs SET state = $2, owner = COALESCE($3, owner), \
             last_error = COALESCE($4, last_error), updated_at = now(), \
             started_at = CASE WHEN $2 = 'running' THEN COALESCE(started_at, now()) ELSE started_at END \
             WHERE name = $1 AND state <> 'expired'",
            &[&name, &state, &owner, &error],
        )
        .await?;
    if updated > 0 {
        metrics::set_job_state(name, state);
    }
    Ok(())
}

/// Records `owner` as the owner of the jobs `names` (its group member was
/// just assigned their topics). Waits for a batch in flight to commit: the
/// batch's fence holds the row.
pub async fn claim(client: &Client, names: &[String], owner: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE jobs SET owner = $2, updated_at = now() WHERE name = ANY($1)",
            &[&names, &owner],
        )
        .await?;
    Ok(())
}

/// `owner` no longer holds the jobs `names` (all of its jobs when `None`):
/// their owner is cleared and a running one is `pending` until its next
/// owner starts it.
pub async fn release(
    client: &Client,
    names: Option<&[String]>,
    owner: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE jobs SET owner = NULL, updated_at = now(), \
             state = CASE WHEN state = 'running' THEN 'pending' ELSE state END \
             WHERE owner = $2 AND ($1::text[] IS NULL OR name = ANY($1))",
            &[&names, &owner],
        )
        .await?;
    Ok(())
}

/// The channel on which instances tell each other that a job's desired
/// state changed (the payload is the job's name).
pub const CHANNEL: &str = "insikt_jobs";

/// Tells every instance (the owner among them) that job `name` changed.
pub async fn notify(client: &Client, name: &str) -> Result<(), DbError> {
    client
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &name])
        .await?;
    Ok(())
}

/// The stored next offset per partition.
pub async fn offsets(client: &Client, name: &str) -> Result<HashMap<i32, i64>, DbError> {
    let rows = client
        .query(
            "SELECT partition, next_offset FROM job_offsets WHERE job = $1",
            &[&name],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn list(client: &Client, filter: &JobFilter) -> Result<Vec<JobView>, DbError> {
    let rows = client
        .query(
            "SELECT j.name, j.import_id, j.topic, j.state, j.desired, j.owner, \
             COALESCE((SELECT sum(o.next_offset) FROM job_offsets o WHERE o.job = j.name), 0)::bigint, \
             (SELECT count(*) FROM statements s WHERE s.import_id = j.import_id), \
             (SELECT count(*) FROM dead_letters d WHERE d.import_id = j.import_id), \
             j.created_at, j.started_at, j.expires_at, j.last_error, j.topic_ready \
             FROM jobs j \
             WHERE ($1::text IS NULL OR j.name = $1) AND ($2::text IS NULL OR j.state = $2) \
             AND ($3::bigint IS NULL OR j.import_id = $3) \
             ORDER BY j.import_id",
            &[&filter.name, &filter.state, &filter.import],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| JobView {
            name: r.get(0),
            import: r.get(1),
            topic: r.get(2),
            state: r.get(3),
            desired: r.get(4),
            owner: r.get(5),
            committed_offset: r.get(6),
            high_watermark: None,
            lag: None,
            statements_stored: r.get(7),
            dead_letters: r.get(8),
            created_at: r.get(9),
            started_at: r.get(10),
            expires_at: r.get(11),
            last_error: r.get(12),
            topic_ready: r.get(13),
        })
        .collect())
}

//! The fence of a job's writes: a transaction that holds the job's row while
//! it names the writing instance as its owner, so an instance that lost the
//! job in a rebalance cannot write for it any more. Used by the batch write
//! and by the fold of its counts.

use crate::db::{Client, DbError, Transaction};

/// Locks the job's row while it names `owner`. Shared: two batches and a
/// fold of the job hold it at once; an owner change waits for all of them.
pub(super) const FENCE: &str = "SELECT 1 FROM jobs WHERE name = $1 AND owner = $2 FOR SHARE";

pub(super) fn not_owned(job: &str, owner: &str) -> DbError {
    DbError::Stale(format!("job {job} is no longer owned by {owner}"))
}

/// A transaction holding the job's [`FENCE`]; [`DbError::Stale`] when
/// `owner` no longer owns the job.
pub(super) async fn fenced<'a>(
    client: &'a mut Client,
    job: &str,
    owner: &str,
) -> Result<Transaction<'a>, DbError> {
    let tx = client.transaction().await?;
    match tx.query_opt(FENCE, &[&job, &owner]).await? {
        Some(_) => Ok(tx),
        None => Err(not_owned(job, owner)),
    }
}

//! What a statement is checked against before it is accepted: its import,
//! and the citizens of that import.

use std::collections::HashSet;

use crate::db::{Client, DbError};

/// The ids among `ids` that are not citizens of the import.
pub async fn unknown_citizens(
    client: &Client,
    import_id: i64,
    ids: &[i32],
) -> Result<HashSet<i32>, DbError> {
    let rows = client
        .query(
            "SELECT citizen_id FROM citizens WHERE import_id = $1 AND citizen_id = ANY($2)",
            &[&import_id, &ids],
        )
        .await?;
    let known = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<HashSet<i32>, _>>()?;
    Ok(ids
        .iter()
        .copied()
        .filter(|id| !known.contains(id))
        .collect())
}

/// Every citizen id of an import (a job checks its messages against them;
/// an import's set of citizens never changes).
pub async fn citizen_ids(client: &Client, import_id: i64) -> Result<HashSet<i32>, DbError> {
    let rows = client
        .query(
            "SELECT citizen_id FROM citizens WHERE import_id = $1",
            &[&import_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<HashSet<i32>, _>>()?)
}

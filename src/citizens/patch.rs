//! PATCH of one citizen: its fields and, when its relatives change, the
//! other side of every changed relation, serialised per import on the
//! import's row lock.

use std::collections::HashSet;

use tokio_postgres::types::ToSql;

use super::rows::{columns, from_row};
use super::{Citizen, CitizenId, CitizenPatch, CitizensError, Invalid};
use crate::audit::Origin;
use crate::db::Pool;

/// Bumping the version takes the import row's FOR NO KEY UPDATE lock:
/// PATCHes of one import take turns (it does not conflict with the key-share
/// locks foreign keys to `imports` take), and kept answers about the import
/// stop matching once this commits. A failed PATCH rolls the bump back.
const LOCK: &str =
    "UPDATE imports SET version = version + 1 WHERE import_id = $1 RETURNING version";

/// The citizen's relatives (NULL when there is no such citizen) and which of
/// the relatives `$3` are not citizens of the import.
const CURRENT: &str =
    "SELECT (SELECT relatives FROM citizens WHERE import_id = $1 AND citizen_id = $2), \
       ARRAY(SELECT t.id FROM unnest($3::int4[]) AS t(id) WHERE NOT EXISTS \
         (SELECT 1 FROM citizens c WHERE c.import_id = $1 AND c.citizen_id = t.id))";

/// One statement writes the citizen and the other side of every changed
/// relation (`$12` the relatives removed, `$13` those added).
const UPDATE: &str = concat!(
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
);

/// Applies a PATCH and returns the citizen as stored. Relatives are edited on
/// both sides; the import's row lock makes concurrent PATCHes of one import
/// take turns, so the relation stays symmetric. Three round trips besides
/// BEGIN, each carrying what does not wait on an answer: the lock with the
/// read of the citizen, the write of both sides with the audit entry, COMMIT.
pub async fn apply(
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
        if !super::import_exists(&*pool.get().await?, import_id).await? {
            return Err(CitizensError::ImportNotFound(import_id));
        }
        return Err(not_found);
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Prepared once per connection, all three in one round trip.
    let (lock, current, update) = futures_util::future::try_join3(
        tx.prepare_cached(LOCK),
        tx.prepare_cached(CURRENT),
        tx.prepare_cached(UPDATE),
    )
    .await?;
    // Sent together, saving a round trip: one session runs its statements in
    // order, so the read starts (and takes its snapshot) only once the lock
    // is granted, and no other PATCH (or erasure) of the import comes
    // between it and the writes below.
    let no_relatives: &[CitizenId] = &[];
    let relatives = patch.relatives.as_deref().unwrap_or(no_relatives);
    let lock_params: [&(dyn ToSql + Sync); 1] = [&import_id];
    let read_params: [&(dyn ToSql + Sync); 3] = [&import_id, &id, &relatives];
    let (locked, row) = futures_util::future::try_join(
        tx.query_opt(&lock, &lock_params),
        tx.query_one(&current, &read_params),
    )
    .await?;
    if locked.is_none() {
        return Err(CitizensError::ImportNotFound(import_id));
    }
    let Some(old): Option<Vec<CitizenId>> = row.try_get(0)? else {
        return Err(not_found);
    };

    let mut removed: Vec<CitizenId> = Vec::new();
    let mut added: Vec<CitizenId> = Vec::new();
    if let Some(relatives) = &patch.relatives {
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

    // The citizen exists and stays (the lock keeps erasure out), so the
    // audit entry goes with the write instead of after it.
    let update_params: [&(dyn ToSql + Sync); 13] = [
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
    ];
    let entry = origin
        .entry("updated")
        .import(import_id)
        .citizen(id.get())
        .detail(serde_json::json!({ "fields": patch.field_names() }));
    let (row, ()) =
        futures_util::future::try_join(tx.query_opt(&update, &update_params), entry.record(&tx))
            .await?;
    let Some(row) = row else {
        return Err(not_found); // rolled back, audit entry included
    };
    let updated = from_row!(Citizen, &row);
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

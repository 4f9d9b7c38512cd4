//! Statement counts: what a job's stored statements add to the import's
//! `statement_counts` and to the insights' segments, folded in while the
//! job owns the import, and the catch up after a crash.

use std::collections::HashMap;

use futures_util::{pin_mut, TryStreamExt};

use super::fence::fenced;
use super::Received;
use crate::db::{Client, DbError};
use crate::insights::{segment, segment::micros, store as segments};

/// Stored statements counted per citizen, statement channel and course: what
/// a job adds to `statement_counts` (see migration V8) when it folds; and
/// the same statements in the compact form the insights read (migration V13),
/// written in the same transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    counts: HashMap<(i32, Option<String>, String), i64>,
    segment: segment::Builder,
}

impl Counts {
    pub fn add<'a>(&mut self, stored: impl Iterator<Item = &'a Received>) {
        for r in stored {
            let s = &r.statement;
            self.add_one(
                s.citizen_id,
                s.channel.as_deref(),
                &s.course,
                micros(r.ts),
                s.score,
            );
        }
    }

    fn add_one(
        &mut self,
        citizen: i32,
        channel: Option<&str>,
        course: &str,
        ts: i64,
        score: Option<f64>,
    ) {
        let key = (citizen, channel.map(str::to_owned), course.to_owned());
        *self.counts.entry(key).or_default() += 1;
        self.segment.push(citizen, course, ts, score);
    }

    pub fn merge(&mut self, other: Counts) {
        for (key, n) in other.counts {
            *self.counts.entry(key).or_default() += n;
        }
        self.segment.merge(other.segment);
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The rows to add: one per citizen, channel and course, and one per
    /// citizen and channel for all courses (course `None`), in key order.
    fn rows(&self) -> Vec<(i32, Option<&str>, Option<&str>, i64)> {
        let mut all_courses: HashMap<(i32, Option<&str>), i64> = HashMap::new();
        let mut rows = Vec::with_capacity(self.counts.len() * 2);
        for ((citizen, channel, course), n) in &self.counts {
            rows.push((*citizen, channel.as_deref(), Some(course.as_str()), *n));
            *all_courses
                .entry((*citizen, channel.as_deref()))
                .or_default() += n;
        }
        rows.extend(
            all_courses
                .into_iter()
                .map(|((citizen, channel), n)| (citizen, channel, None, n)),
        );
        // One order for every writer of these rows: no lock-order deadlocks.
        rows.sort_unstable();
        rows
    }
}

/// Adds `counts` (of statements a job stored in batches it committed) to the
/// import's statement counts and segments and moves their stop to `through`
/// (the job's next offsets), in one transaction, while `owner` owns the job;
/// then merges the import's segments if four of a level have piled up.
pub async fn fold_counts(
    client: &mut Client,
    job: &str,
    owner: &str,
    import_id: i64,
    counts: &Counts,
    through: &HashMap<i32, i64>,
) -> Result<(), DbError> {
    let tx = fenced(client, job, owner).await?;
    add_and_stop(&tx, import_id, counts, through).await?;
    tx.commit().await?;
    compact(client, import_id).await;
    Ok(())
}

/// Adds `counts` to the import's counts and segments and moves the counts'
/// stop to `through`, in `tx`.
async fn add_and_stop(
    tx: &crate::db::Transaction<'_>,
    import_id: i64,
    counts: &Counts,
    through: &HashMap<i32, i64>,
) -> Result<(), DbError> {
    let stop = tx
        .prepare_cached(
            "INSERT INTO statement_counts_offsets AS o (import_id, partition, next_offset) \
             SELECT $1, * FROM unnest($2::int4[], $3::int8[]) \
             ON CONFLICT (import_id, partition) \
             DO UPDATE SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset)",
        )
        .await?;
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = through.iter().unzip();
    let stop_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&import_id, &partitions, &offsets];
    tokio::try_join!(
        add_counts(tx, import_id, counts),
        tx.execute(&stop, &stop_params),
    )?;
    Ok(())
}

/// Merges the import's segments after a write that added one. A failure
/// costs nothing but the merge (the next write tries again): logged.
pub(super) async fn compact(client: &mut Client, import_id: i64) {
    if let Err(error) = segments::compact(client, import_id).await {
        tracing::warn!(import = import_id, %error, "insights segments not merged");
    }
}

/// Adds `counts` to the import's statement counts, then its statements to
/// the import's segments (in this order, as every writer of both: the
/// segments' state row is locked last), in `tx`.
pub(super) async fn add_counts(
    tx: &crate::db::Transaction<'_>,
    import_id: i64,
    counts: &Counts,
) -> Result<u64, tokio_postgres::Error> {
    if counts.is_empty() {
        return Ok(0);
    }
    let rows = counts.rows();
    let citizens: Vec<i32> = rows.iter().map(|r| r.0).collect();
    let channels: Vec<Option<&str>> = rows.iter().map(|r| r.1).collect();
    let courses: Vec<Option<&str>> = rows.iter().map(|r| r.2).collect();
    let statements: Vec<i64> = rows.iter().map(|r| r.3).collect();
    let add = tx
        .prepare_cached(
            "INSERT INTO statement_counts AS c (import_id, citizen_id, channel, course, statements) \
             SELECT $1, * FROM unnest($2::int4[], $3::text[], $4::text[], $5::int8[]) \
             ON CONFLICT ON CONSTRAINT statement_counts_key \
             DO UPDATE SET statements = c.statements + EXCLUDED.statements",
        )
        .await?;
    let added = tx
        .execute(
            &add,
            &[&import_id, &citizens, &channels, &courses, &statements],
        )
        .await?;
    segments::append(tx, import_id, &counts.segment).await?;
    Ok(added)
}

/// Counts what the job stored past where the import's counts stop, up to
/// `through` (its next offsets): the batches a crash kept from being folded.
/// Read back from `statements` and added as a fold adds them (segments too).
pub async fn catch_up_counts(
    client: &mut Client,
    job: &str,
    owner: &str,
    import_id: i64,
    through: &HashMap<i32, i64>,
) -> Result<(), DbError> {
    let tx = fenced(client, job, owner).await?;
    // Nothing to count when the counts already stop at the job's offsets
    // (every clean stop): skip the read, a scan of all the import's statements.
    let stops: HashMap<i32, i64> = tx
        .query(
            "SELECT partition, next_offset FROM statement_counts_offsets WHERE import_id = $1",
            &[&import_id],
        )
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    if through
        .iter()
        .all(|(partition, next)| stops.get(partition).is_some_and(|stop| stop >= next))
    {
        return Ok(());
    }
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = through.iter().unzip();
    let rows = tx
        .query_raw(
            "SELECT s.citizen_id, s.channel, s.course, s.ts, s.score \
               FROM statements s \
               JOIN unnest($2::int4[], $3::int8[]) AS t (partition, through) \
                 ON t.partition = s.kafka_partition \
               LEFT JOIN statement_counts_offsets o \
                 ON o.import_id = $1 AND o.partition = s.kafka_partition \
              WHERE s.import_id = $1 \
                AND s.kafka_offset >= COALESCE(o.next_offset, 0) \
                AND s.kafka_offset < t.through",
            [
                &import_id as &(dyn tokio_postgres::types::ToSql + Sync),
                &partitions,
                &offsets,
            ],
        )
        .await?;
    pin_mut!(rows);
    let mut counts = Counts::default();
    while let Some(row) = rows.try_next().await? {
        let ts: chrono::DateTime<chrono::Utc> = row.try_get(3)?;
        counts.add_one(
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            micros(ts),
            row.try_get(4)?,
        );
    }
    add_and_stop(&tx, import_id, &counts, through).await?;
    tx.commit().await?;
    if !counts.is_empty() {
        compact(client, import_id).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::tests::good;
    use crate::statements::Statement;
    use serde_json::json;

    #[test]
    fn counts_have_a_row_per_course_and_one_for_all_courses_per_citizen_and_channel() {
        let statement = |citizen: i32, channel: Option<&str>, course: &str| {
            let mut value = good();
            value["citizen_id"] = json!(citizen);
            value["channel"] = json!(channel);
            value["course"] = json!(course);
            let statement = Statement::from_value(&value, None).unwrap();
            Received {
                ts: statement.ts.unwrap(),
                statement,
                partition: 0,
                offset: 0,
            }
        };
        let mut counts = Counts::default();
        let first = [statement(1, None, "rust"), statement(1, None, "go")];
        counts.add(first.iter());
        let mut more = Counts::default();
        let second = [
            statement(1, None, "rust"),
            statement(2, Some("radio"), "go"),
        ];
        more.add(second.iter());
        counts.merge(more);
        assert_eq!(
            counts.rows(),
            [
                (1, None, None, 3),
                (1, None, Some("go"), 1),
                (1, None, Some("rust"), 2),
                (2, Some("radio"), None, 1),
                (2, Some("radio"), Some("go"), 1),
            ]
        );
    }
}

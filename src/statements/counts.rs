//! Statement counts: what a job's stored statements add to the import's
//! `statement_counts`, folded in while the job owns the import, and the catch
//! up after a crash.

use std::collections::HashMap;

use super::write::fenced;
use super::Statement;
use crate::db::{Client, DbError};

/// Stored statements counted per citizen, statement channel and course: what
/// a job adds to `statement_counts` (see migration V8) when it folds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(HashMap<(i32, Option<String>, String), i64>);

impl Counts {
    pub fn add<'a>(&mut self, stored: impl Iterator<Item = &'a Statement>) {
        for s in stored {
            let key = (s.citizen_id, s.channel.clone(), s.course.clone());
            *self.0.entry(key).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: Counts) {
        for (key, n) in other.0 {
            *self.0.entry(key).or_default() += n;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rows to add: one per citizen, channel and course, and one per
    /// citizen and channel for all courses (course `None`), in key order.
    fn rows(&self) -> Vec<(i32, Option<&str>, Option<&str>, i64)> {
        let mut all_courses: HashMap<(i32, Option<&str>), i64> = HashMap::new();
        let mut rows = Vec::with_capacity(self.0.len() * 2);
        for ((citizen, channel, course), n) in &self.0 {
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
/// import's statement counts and moves their stop to `through` (the job's
/// next offsets), in one transaction, while `owner` owns the job.
pub async fn fold_counts(
    client: &mut Client,
    job: &str,
    owner: &str,
    import_id: i64,
    counts: &Counts,
    through: &HashMap<i32, i64>,
) -> Result<(), DbError> {
    let tx = fenced(client, job, owner).await?;
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
        add_counts(&tx, import_id, counts),
        tx.execute(&stop, &stop_params),
    )?;
    tx.commit().await?;
    Ok(())
}

/// Adds `counts` to the import's statement counts, in `tx`.
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
    tx.execute(
        &add,
        &[&import_id, &citizens, &channels, &courses, &statements],
    )
    .await
}

/// Counts what the job stored past where the import's counts stop, up to
/// `through` (its next offsets): the batches a crash kept from being folded.
pub async fn catch_up_counts(
    client: &mut Client,
    job: &str,
    owner: &str,
    import_id: i64,
    through: &HashMap<i32, i64>,
) -> Result<(), DbError> {
    let tx = fenced(client, job, owner).await?;
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = through.iter().unzip();
    tx.execute(
        "SELECT count_statements($1, $2, $3)",
        &[&import_id, &partitions, &offsets],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::tests::good;
    use serde_json::json;

    #[test]
    fn counts_have_a_row_per_course_and_one_for_all_courses_per_citizen_and_channel() {
        let statement = |citizen: i32, channel: Option<&str>, course: &str| {
            let mut value = good();
            value["citizen_id"] = json!(citizen);
            value["channel"] = json!(channel);
            value["course"] = json!(course);
            Statement::from_value(&value, None).unwrap()
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

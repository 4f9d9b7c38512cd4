//! The segments in PostgreSQL (migration V13): appended by the statements'
//! writers in their own transactions, merged four at a time, rebuilt from
//! `statements` when counted by SQL, listed and read by the insights.

use futures_util::{pin_mut, TryStreamExt};

use super::segment::{self, Builder, Decoded};
use crate::db::{Client, DbError};

/// The level a rebuild writes its one segment at: above any a merge makes,
/// so the segments made after it never merge into it.
const REBUILT_LEVEL: i16 = 30;
/// How many segments of one level merge into one of the next.
const FANOUT: usize = 4;

/// Appends the statements of `builder` to import `import_id`'s segments in
/// the caller's transaction, which also stores or counts them. False when a
/// rebuild is pending: it will read them from `statements` instead.
pub async fn append(
    tx: &crate::db::Transaction<'_>,
    import_id: i64,
    builder: &Builder,
) -> Result<bool, tokio_postgres::Error> {
    if builder.is_empty() {
        return Ok(true);
    }
    let data = builder.encode();
    let statements = builder.len() as i32;
    // Taking the number locks the import's state row until the commit, so
    // segments commit in number order. A pending rebuild takes none.
    let append = tx
        .prepare_cached(
            "WITH seq AS ( \
                 INSERT INTO insight_state AS s (import_id, next_seq) VALUES ($1, 2) \
                 ON CONFLICT (import_id) DO UPDATE SET next_seq = s.next_seq + 1 \
                 WHERE NOT s.rebuild \
                 RETURNING s.next_seq - 1 AS seq \
             ) \
             INSERT INTO insight_segments (import_id, first_seq, last_seq, level, statements, data) \
             SELECT $1, seq, seq, 0, $2, $3 FROM seq",
        )
        .await?;
    Ok(tx
        .execute(&append, &[&import_id, &statements, &data])
        .await?
        == 1)
}

/// One segment as the directory lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub first_seq: i64,
    pub last_seq: i64,
    pub level: i16,
    pub statements: i32,
    /// The length of its data.
    pub bytes: i64,
}

/// What the insights check on every request, in one round trip: the
/// import's version (bumped by PATCH), whether its segments await a
/// rebuild, its segments, and the courses on offer. `None`: no such import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    pub version: i64,
    pub rebuild: bool,
    pub segments: Vec<Listed>,
    pub offered: Vec<String>,
}

const DIRECTORY: &str = "SELECT i.version, COALESCE(st.rebuild, false) AS rebuild, \
                    g.firsts, g.lasts, g.levels, g.counts, g.bytes, \
                    ARRAY(SELECT course FROM courses WHERE offered ORDER BY course) AS offered \
               FROM imports i \
               LEFT JOIN insight_state st ON st.import_id = i.import_id \
              CROSS JOIN LATERAL ( \
                    SELECT COALESCE(array_agg(first_seq ORDER BY first_seq), '{}') AS firsts, \
                           COALESCE(array_agg(last_seq ORDER BY first_seq), '{}') AS lasts, \
                           COALESCE(array_agg(level ORDER BY first_seq), '{}') AS levels, \
                           COALESCE(array_agg(statements ORDER BY first_seq), '{}') AS counts, \
                           COALESCE(array_agg(length(data) ORDER BY first_seq), '{}') AS bytes \
                      FROM insight_segments WHERE import_id = i.import_id) g \
              WHERE i.import_id = $1";

/// The statement that reads a slice of a segment.
const READ: &str = "SELECT substring(data FROM $4::int8::int4 + 1 FOR $5::int8::int4) \
      FROM insight_segments WHERE import_id = $1 AND first_seq = $2 AND last_seq = $3";

/// Prepares the statements a load uses on `client` (the service warms its
/// connections, so a first request after a start does not parse them).
pub async fn prepare(client: &Client) -> Result<(), DbError> {
    client.prepare_cached(DIRECTORY).await?;
    client.prepare_cached(READ).await?;
    Ok(())
}

pub async fn directory(client: &Client, import_id: i64) -> Result<Option<Directory>, DbError> {
    let query = client.prepare_cached(DIRECTORY).await?;
    let Some(row) = client.query_opt(&query, &[&import_id]).await? else {
        return Ok(None);
    };
    let firsts: Vec<i64> = row.try_get("firsts")?;
    let lasts: Vec<i64> = row.try_get("lasts")?;
    let levels: Vec<i16> = row.try_get("levels")?;
    let counts: Vec<i32> = row.try_get("counts")?;
    let bytes: Vec<i32> = row.try_get("bytes")?;
    let n = [
        firsts.len(),
        lasts.len(),
        levels.len(),
        counts.len(),
        bytes.len(),
    ]
    .into_iter()
    .min()
    .unwrap_or(0);
    let segments = (0..n)
        .map(|i| Listed {
            first_seq: firsts[i],
            last_seq: lasts[i],
            level: levels[i],
            statements: counts[i],
            bytes: i64::from(bytes[i]),
        })
        .collect();
    Ok(Some(Directory {
        version: row.try_get("version")?,
        rebuild: row.try_get("rebuild")?,
        segments,
        offered: row.try_get("offered")?,
    }))
}

/// The bytes `from..from + len` (0-based) of a listed segment; `None`
/// when it is gone (merged meanwhile: a merge keeps the first number of
/// its inputs, so the last one tells them apart). The data is stored
/// uncompressed, so PostgreSQL reads only the slice's TOAST chunks.
pub async fn read(
    client: &Client,
    import_id: i64,
    listed: &Listed,
    from: i64,
    len: i64,
) -> Result<Option<Vec<u8>>, DbError> {
    let query = client.prepare_cached(READ).await?;
    Ok(client
        .query_opt(
            &query,
            &[&import_id, &listed.first_seq, &listed.last_seq, &from, &len],
        )
        .await?
        .map(|row| row.try_get::<_, Vec<u8>>(0))
        .transpose()?)
}

/// Makes the import's segments again from its counted statements when a
/// rebuild is pending: those of the job's partitions below the counts' stop
/// and those replayed. Holds the state row meanwhile, so appends wait (and
/// the folds that committed before are read here). Returns whether it rebuilt.
pub async fn rebuild(client: &mut Client, import_id: i64) -> Result<bool, DbError> {
    let tx = client.transaction().await?;
    let pending: Option<bool> = tx
        .query_opt(
            "SELECT rebuild FROM insight_state WHERE import_id = $1 FOR UPDATE",
            &[&import_id],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    if pending != Some(true) {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM insight_segments WHERE import_id = $1",
        &[&import_id],
    )
    .await?;
    let rows = tx
        .query_raw(
            "SELECT s.citizen_id, s.course, s.ts, s.score \
               FROM statements s \
               LEFT JOIN statement_counts_offsets o \
                 ON o.import_id = s.import_id AND o.partition = s.kafka_partition \
              WHERE s.import_id = $1 \
                AND (s.kafka_partition < 0 OR s.kafka_offset < COALESCE(o.next_offset, 0))",
            &[&import_id],
        )
        .await?;
    pin_mut!(rows);
    let mut builder = Builder::default();
    while let Some(row) = rows.try_next().await? {
        let ts: chrono::DateTime<chrono::Utc> = row.try_get(2)?;
        builder.push(
            row.try_get(0)?,
            row.try_get(1)?,
            segment::micros(ts),
            row.try_get(3)?,
        );
    }
    let statements = builder.len() as i32;
    let data = tokio::task::spawn_blocking(move || builder.encode())
        .await
        .map_err(|e| DbError::Corrupt(format!("encoding a rebuilt segment: {e}")))?;
    tx.execute(
        "WITH seq AS ( \
             UPDATE insight_state SET next_seq = next_seq + 1, rebuild = false \
              WHERE import_id = $1 RETURNING next_seq - 1 AS seq \
         ) \
         INSERT INTO insight_segments (import_id, first_seq, last_seq, level, statements, data) \
         SELECT $1, seq, seq, $2, $3, $4 FROM seq",
        &[&import_id, &REBUILT_LEVEL, &statements, &data],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        import = import_id,
        statements,
        "insights segments rebuilt from statements"
    );
    Ok(true)
}

/// The newest [`FANOUT`] segments when they share a level below a rebuilt
/// one: what [`compact`] merges next.
fn to_merge(segments: &[Listed]) -> Option<&[Listed]> {
    let tail = segments.get(segments.len().checked_sub(FANOUT)?..)?;
    let level = tail[0].level;
    (level < REBUILT_LEVEL && tail.iter().all(|s| s.level == level)).then_some(tail)
}

/// Merges the import's newest segments while [`FANOUT`] of them share a
/// level. Optimistic: it reads and merges without a lock, then replaces
/// them only if they are all still there (another merge or a rebuild
/// otherwise took them, and this one gives up). Returns how many merges.
pub async fn compact(client: &mut Client, import_id: i64) -> Result<usize, DbError> {
    let mut merges = 0;
    loop {
        let Some(directory) = directory(client, import_id).await? else {
            return Ok(merges);
        };
        let Some(tail) = to_merge(&directory.segments) else {
            return Ok(merges);
        };
        let mut parts = Vec::with_capacity(tail.len());
        for listed in tail {
            match read(client, import_id, listed, 0, listed.bytes).await? {
                Some(bytes) => parts.push(bytes),
                None => return Ok(merges),
            }
        }
        let merged =
            tokio::task::spawn_blocking(move || -> Result<Vec<u8>, segment::SegmentError> {
                let mut builder = Builder::default();
                for bytes in &parts {
                    let decoded: Decoded = segment::decode(bytes)?;
                    builder.extend_decoded(&decoded);
                }
                Ok(builder.encode())
            })
            .await
            .map_err(|e| DbError::Corrupt(format!("merging segments: {e}")))?
            .map_err(|e| DbError::Corrupt(e.to_string()))?;
        let firsts: Vec<i64> = tail.iter().map(|s| s.first_seq).collect();
        let first = tail[0].first_seq;
        let last = tail[tail.len() - 1].last_seq;
        let level = tail[0].level + 1;
        let statements: i32 = tail.iter().map(|s| s.statements).sum();
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT 1 FROM insight_state WHERE import_id = $1 FOR UPDATE",
            &[&import_id],
        )
        .await?;
        let gone = tx
            .execute(
                "DELETE FROM insight_segments WHERE import_id = $1 AND first_seq = ANY($2)",
                &[&import_id, &firsts],
            )
            .await?;
        if gone != firsts.len() as u64 {
            return Ok(merges); // rolled back: someone else changed them
        }
        tx.execute(
            "INSERT INTO insight_segments (import_id, first_seq, last_seq, level, statements, data) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&import_id, &first, &last, &level, &statements, &merged],
        )
        .await?;
        tx.commit().await?;
        merges += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(first: i64, last: i64, level: i16) -> Listed {
        Listed {
            first_seq: first,
            last_seq: last,
            level,
            statements: 1,
            bytes: 1,
        }
    }

    #[test]
    fn four_of_a_level_at_the_end_merge() {
        let l = listed;
        assert_eq!(to_merge(&[l(1, 1, 0), l(2, 2, 0), l(3, 3, 0)]), None);
        let four = [l(1, 4, 1), l(5, 5, 0), l(6, 6, 0), l(7, 7, 0), l(8, 8, 0)];
        assert_eq!(to_merge(&four).map(|t| t[0].first_seq), Some(5));
        let mixed = [
            l(1, 4, 1),
            l(5, 8, 1),
            l(9, 9, 0),
            l(10, 10, 0),
            l(11, 11, 0),
        ];
        assert_eq!(to_merge(&mixed), None);
        let rebuilt = [l(1, 1, REBUILT_LEVEL); 4];
        assert_eq!(to_merge(&rebuilt), None);
    }
}

//! Expiry: the unconsumed rest of a stream (from the stored offsets to the
//! high watermark) goes to NDJSON files under the archive directory, one per
//! job partition, named with the offsets they cover; then the job is
//! `expired` and its offsets point at the end, in one transaction.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::repo::JobRow;
use super::{Context, JobsError};
use crate::kafka::{self, Consumer, Message, Offset, TopicPartitionList};

/// How long the archive waits for the next message below the high watermark.
const IDLE: Duration = Duration::from_secs(5);

/// One archive file.
#[derive(Debug, Clone)]
pub struct ArchiveFile {
    pub partition: i32,
    pub from_offset: i64,
    pub to_offset: i64,
    pub messages: i64,
    pub path: PathBuf,
}

/// Archives what the job had not consumed and marks it `expired`.
pub async fn expire(
    context: &Context,
    row: &JobRow,
    offsets: &HashMap<i32, i64>,
) -> Result<Vec<ArchiveFile>, JobsError> {
    let settings = &context.settings;
    let mut files = Vec::new();
    let mut ends = Vec::new();
    for partition in context.cluster.partitions(&row.topic).await? {
        let (low, high) = context
            .cluster
            .watermarks(&row.topic, partition, Duration::from_secs(10))
            .await?;
        let from = offsets.get(&partition).copied().unwrap_or(low).max(low);
        ends.push((partition, high.max(from)));
        if from >= high {
            continue;
        }
        let lines = read_range(context, row, partition, from, high).await?;
        let dir = settings.archive_dir.join(&row.name);
        let path = dir.join(format!("{}-p{partition}-{from}-{high}.ndjson", row.topic));
        let messages = lines.len() as i64;
        let target = path.clone();
        tokio::task::spawn_blocking(move || write_file(&dir, &target, &lines))
            .await
            .map_err(|e| JobsError::Archive(e.to_string()))?
            .map_err(|e| JobsError::Archive(format!("{}: {e}", path.display())))?;
        files.push(ArchiveFile {
            partition,
            from_offset: from,
            to_offset: high,
            messages,
            path,
        });
    }
    let mut client = context.pool.get().await?;
    let tx = client.transaction().await?;
    for file in &files {
        tx.execute(
            "INSERT INTO job_archives (job, partition, from_offset, to_offset, messages, path) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job, partition, from_offset) \
             DO UPDATE SET to_offset = EXCLUDED.to_offset, messages = EXCLUDED.messages, path = EXCLUDED.path",
            &[
                &row.name,
                &file.partition,
                &file.from_offset,
                &file.to_offset,
                &file.messages,
                &file.path.to_string_lossy().into_owned(),
            ],
        )
        .await?;
    }
    for (partition, end) in &ends {
        tx.execute(
            "INSERT INTO job_offsets (job, partition, next_offset) VALUES ($1, $2, $3) \
             ON CONFLICT (job, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            &[&row.name, partition, end],
        )
        .await?;
    }
    tx.execute(
        "UPDATE jobs SET state = 'expired', owner = NULL, updated_at = now() WHERE name = $1",
        &[&row.name],
    )
    .await?;
    tx.commit().await?;
    crate::telemetry::metrics::set_job_state(&row.name, "expired");
    tracing::info!(job = %row.name, files = files.len(), "job expired and archived");
    Ok(files)
}

/// Every message of `[from, high)` as an NDJSON line with its coordinates.
async fn read_range(
    context: &Context,
    row: &JobRow,
    partition: i32,
    from: i64,
    high: i64,
) -> Result<Vec<Vec<u8>>, JobsError> {
    let settings = &context.settings;
    let consumer = kafka::consumer(
        &settings.brokers,
        &format!("insikt-{}-{}-archive", settings.instance, row.name),
        &context.naming().await?.consumer_group(),
    )?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&row.topic, partition, Offset::Offset(from))?;
    consumer.assign(&assignment)?;
    let mut lines = Vec::new();
    loop {
        let message = match tokio::time::timeout(IDLE, consumer.recv()).await {
            // Nothing more below the watermark (e.g. transaction markers at the end).
            Err(_) => break,
            Ok(Err(error)) => return Err(error.into()),
            Ok(Ok(message)) => message,
        };
        if message.offset() >= high {
            break;
        }
        let line = json!({
            "partition": partition,
            "offset": message.offset(),
            "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "payload": String::from_utf8_lossy(message.payload().unwrap_or_default()),
        });
        lines.push(serde_json::to_vec(&line).expect("JSON values serialise"));
        if message.offset() + 1 >= high {
            break;
        }
    }
    Ok(lines)
}

/// Writes the file whole or not at all (a temporary name, then a rename).
fn write_file(
    dir: &std::path::Path,
    path: &std::path::Path,
    lines: &[Vec<u8>],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let partial = path.with_extension("partial");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    for line in lines {
        file.write_all(line)?;
        file.write_all(b"\n")?;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial, path)
}

//! A job's readers: one task per partition of the job's topic. A reader
//! waits on its partition's queue (an idle stream costs nothing: no timer,
//! no request), reads a batch of at most `batch_size` records within
//! `batch_wait` of the first, checks each against the import and hands the
//! batch to the job actor, which writes it.
//!
//! Back-pressure: a reader hands over at most one batch ahead of the
//! actor's writes, and a batch in memory (read, waiting or being written)
//! holds a permit of the instance's budget. A reader that waits longer than
//! [`BEHIND`] for either pauses its partition, which drops the partition's
//! prefetch and stops fetching it, and resumes it once it may go on: a slow
//! job holds no more than its batch and never holds back the other streams,
//! which have queues, prefetches and readers of their own.
//!
//! Sleep: a reader whose stream stays idle for `Settings::sleep_after`
//! (`INSIKT_STREAM_SLEEP_AFTER`) lets its import's citizens go (read again
//! when the stream wakes up) and pauses its partition until something is
//! written to the topic. The consumer sends one Fetch at a time to a
//! broker, naming every partition it may fetch, so thousands of idle
//! partitions would cost a request and a reply naming them all every
//! `fetch.wait.max.ms`, and hold a busy stream's next fetch back behind
//! that wait. The instance that produced the records wakes the reader at
//! once (another instance through a PostgreSQL notification), the engine's
//! lag sweep within seconds otherwise.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use ractor::ActorRef;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Instant};

use super::engine::Engine;
use super::job::JobMsg;
use super::{JobsError, Settings};
use crate::db::Pool;
use crate::kafka::{self, Message, PartitionStream, Streams};
use crate::statements::{self, Batch, Received, Rejected, Statement};
use crate::telemetry::{metrics, RemoteContexts};

/// How long a reader waits to hand a batch over (or for a permit to read
/// one) before it pauses its partition.
const BEHIND: Duration = Duration::from_millis(500);
/// How many messages a reader reads between two yields to the runtime.
const YIELD_EVERY: usize = 256;

/// What one reader hands to the job actor.
pub struct ReadBatch {
    pub batch: Batch,
    pub read: Read,
    /// False when the stream was drained: nothing more was queued.
    pub more: bool,
    /// The batch's share of the instance's budget (none for a batch that
    /// only steps over skipped offsets).
    pub permit: Option<OwnedSemaphorePermit>,
}

/// What the trace and metrics need to know about a batch, besides the batch.
#[derive(Debug, Default)]
pub struct Read {
    /// The trace contexts its messages carried (from the producing requests).
    pub remotes: RemoteContexts,
    /// The offsets read, as `partition:first-last`.
    pub ranges: String,
}

/// Everything a reader needs.
pub struct Reader {
    pub job: ActorRef<JobMsg>,
    pub name: String,
    pub import_id: i64,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub topic: String,
    pub partition: i32,
    /// The stored next offset it starts from (none: the beginning).
    pub from: Option<i64>,
    pub stream: PartitionStream,
    pub streams: Streams,
    pub engine: Engine,
    pub pool: Pool,
    pub settings: Arc<Settings>,
    /// One permit per partition: a batch handed over, not yet being written.
    pub credit: Arc<Semaphore>,
}

/// Reads until the job stops it (or the actor is gone); a failure (no
/// PostgreSQL for the citizens) is the job's.
pub async fn run(reader: Reader) {
    if let Err(error) = read(&reader).await {
        let _ = reader.job.cast(JobMsg::ReaderFailed(error));
    }
}

async fn read(r: &Reader) -> Result<(), JobsError> {
    let budget = r.engine.budget();
    let mut citizens: Option<HashSet<i32>> = None;
    let mut through = r.from;
    // Whether the queue was served since the last position lookup (a
    // transaction marker is served without being delivered).
    let mut served = false;
    // Whether the actor knows the stream is drained (so it settles its
    // writes and folds its counts).
    let mut told = true;
    loop {
        let Some(permit) = behind(r, Arc::clone(&budget).acquire_owned()).await.ok() else {
            return Ok(()); // the budget is closed: shutting down
        };
        let Some(first) = r.stream.try_recv() else {
            drop(permit);
            if served {
                step_over(r, &mut through).await?;
                if !told {
                    told = true;
                    if r.job.cast(JobMsg::Drained).is_err() {
                        return Ok(());
                    }
                }
            }
            idle(r, &mut citizens).await;
            served = true;
            continue;
        };
        let first = first.map_err(JobsError::from);
        if citizens.is_none() {
            let client = r.pool.get().await?;
            citizens = Some(statements::citizen_ids(&client, r.import_id).await?);
        }
        let known = citizens.as_ref().expect("just read");
        let (mut batch, read, more) = fill(r, first, known).await;
        served = true;
        let Some(mut next) = batch.next_offsets.first().map(|(_, next)| *next) else {
            continue; // only consumer errors, already logged
        };
        if !more {
            // Drained: the commit marker that came with these records was
            // served with them. The batch stores the position past it, so
            // the stream's lag is 0 the moment its last statements are.
            let partition = (r.topic.clone(), r.partition);
            if let Some(position) = r.engine.position(partition).await.filter(|p| *p > next) {
                next = position;
                batch.next_offsets = vec![(r.partition, next)];
            }
            // A marker that comes later wakes the idle reader (`step_over`).
            served = false;
        }
        through = Some(next);
        if !hand_over(r, batch, read, more, Some(permit)).await {
            return Ok(());
        }
        told = !more;
    }
}

/// Waits for the queue; after `sleep_after` of it, drops the citizens and
/// sleeps.
async fn idle(r: &Reader, citizens: &mut Option<HashSet<i32>>) {
    if tokio::time::timeout(r.settings.sleep_after, r.stream.ready())
        .await
        .is_ok()
    {
        return;
    }
    *citizens = None;
    sleep(r).await;
}

/// Pauses the partition until [`Engine::wake`] is called for the topic,
/// then resumes it. The waker is listened to before the pause: a wake that
/// comes while pausing is not lost. Only the wake counts, not the queue:
/// pausing and resuming put librdkafka's own markers in it, which would
/// wake the reader at once, and whatever was fetched but not read when the
/// partition paused is dropped (fetched again after the resume, from the
/// position of the last record read; the lag sweep sees it as behind).
async fn sleep(r: &Reader) {
    let sleeper = r.engine.sleeper(&r.topic);
    let woken = sleeper.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    if let Err(error) = r.streams.pause(&r.topic, r.partition) {
        tracing::debug!(job = %r.name, %error, "partition not paused; waiting awake");
        r.stream.ready().await;
        return;
    }
    let asleep = (metrics::Asleep::begin(&r.name), r.engine.nap(&r.topic));
    woken.await;
    drop(asleep);
    if let Err(error) = r.streams.resume(&r.topic, r.partition) {
        tracing::warn!(job = %r.name, %error, "partition not resumed");
    }
}

/// Reads a batch from `first` on: until `batch_size` messages, or
/// `batch_wait` after the first, or a consumer error. Also says whether the
/// queue was drained.
async fn fill(
    r: &Reader,
    first: Result<kafka::BorrowedMessage<'_>, JobsError>,
    citizens: &HashSet<i32>,
) -> (Batch, Read, bool) {
    let settings = &r.settings;
    let deadline = Instant::now() + settings.batch_wait;
    let mut batch = Batch::default();
    let mut read = Read::default();
    let (mut first_offset, mut next) = (None, None);
    let mut oldest: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut count = 0;
    let mut message = Some(first);
    let mut more = true;
    while count < settings.batch_size {
        let current = match message.take() {
            Some(current) => current,
            None => match r.stream.try_recv() {
                Some(current) => current.map_err(JobsError::from),
                None => {
                    // Queued nothing more: wait for more until the deadline.
                    if tokio::time::timeout_at(deadline, r.stream.ready())
                        .await
                        .is_err()
                    {
                        more = false;
                        break;
                    }
                    continue;
                }
            },
        };
        let message = match current {
            Ok(message) => message,
            Err(error) => {
                // Broker trouble is transient for a consumer: note it, keep what we have.
                tracing::warn!(job = %r.name, %error, "consumer error");
                break;
            }
        };
        count += 1;
        if count % YIELD_EVERY == 0 {
            // Queued messages come without a pause; let the writes progress.
            tokio::task::yield_now().await;
        }
        let (partition, offset) = (message.partition(), message.offset());
        first_offset.get_or_insert(offset);
        next = Some(offset + 1);
        read.remotes.add(kafka::headers(&message));
        let written_at = kafka::record_time(&message);
        oldest = Some(oldest.map_or(written_at, |o| o.min(written_at)));
        let payload = message.payload().unwrap_or_default();
        match accept(payload, r.import_id, citizens) {
            Ok(statement) => batch.accepted.push(Received {
                ts: statement.ts.unwrap_or(written_at),
                statement,
                partition,
                offset,
            }),
            Err(reason) => batch.rejected.push(Rejected {
                partition,
                offset,
                payload: payload.to_vec(),
                reason,
            }),
        }
    }
    if let (Some(from), Some(next)) = (first_offset, next) {
        batch.next_offsets = vec![(r.partition, next)];
        read.ranges = format!("{}:{from}-{}", r.partition, next - 1);
    }
    batch.durable = near_the_end(
        chrono::Utc::now(),
        r.expires_at,
        oldest,
        settings.topic_retention(),
    );
    (batch, read, more)
}

/// Hands a batch to the actor, at most one ahead of its writes; false when
/// the actor is gone.
async fn hand_over(
    r: &Reader,
    batch: Batch,
    read: Read,
    more: bool,
    permit: Option<OwnedSemaphorePermit>,
) -> bool {
    let Ok(credit) = behind(r, r.credit.acquire()).await else {
        return false;
    };
    // Given back by the actor once the batch is being written.
    credit.forget();
    let read = ReadBatch {
        batch,
        read,
        more,
        permit,
    };
    r.job.cast(JobMsg::Read(Box::new(read))).is_ok()
}

/// Stores the partition's position where it passed `through` without
/// delivering a record: transaction markers (one per committed or aborted
/// producer transaction) and the records of aborted transactions, which
/// `read_committed` never delivers. Without this an idle job's stored
/// offsets would stop before the markers, and its lag never reach 0. Only
/// once the queue was drained: everything delivered has been handed over.
async fn step_over(r: &Reader, through: &mut Option<i64>) -> Result<(), JobsError> {
    let partition = (r.topic.clone(), r.partition);
    let Some(position) = r.engine.position(partition).await else {
        return Ok(());
    };
    if through.is_some_and(|t| position <= t) {
        return Ok(());
    }
    *through = Some(position);
    let batch = Batch {
        next_offsets: vec![(r.partition, position)],
        ..Batch::default()
    };
    hand_over(r, batch, Read::default(), false, None).await;
    Ok(())
}

/// Awaits `wait`; while it takes longer than [`BEHIND`], the partition is
/// paused (its prefetch dropped, nothing fetched), and resumed after.
async fn behind<T>(r: &Reader, wait: impl Future<Output = T>) -> T {
    tokio::pin!(wait);
    if let Ok(done) = tokio::time::timeout(BEHIND, &mut wait).await {
        return done;
    }
    let paused = r.streams.pause(&r.topic, r.partition);
    if let Err(error) = &paused {
        tracing::debug!(job = %r.name, %error, "partition not paused");
    }
    metrics::job_paused(&r.name);
    tracing::debug!(job = %r.name, "behind its stream: partition paused");
    let done = wait.await;
    if paused.is_ok() {
        if let Err(error) = r.streams.resume(&r.topic, r.partition) {
            tracing::warn!(job = %r.name, %error, "partition not resumed");
        }
    }
    done
}

/// How close to the end of a stream a batch must commit durably.
const DURABLE_MARGIN: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Whether a batch read at `now`, whose oldest record was written at
/// `oldest`, must commit durably (`synchronous_commit = on`). A batch commits
/// without waiting for the disk otherwise: a PostgreSQL crash then loses its
/// commit, offsets included, and the job reads those records again from
/// Kafka. That holds only while Kafka keeps them: not within an hour of the
/// job's expiry (after which nothing reads them again; the archive starts
/// from the stored offsets) nor for records within an hour of the topic's
/// retention (the broker may delete them; a producer may also stamp a record
/// as old). Dead letters commit with the batch, so they follow the same rule.
fn near_the_end(
    now: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    oldest: Option<chrono::DateTime<chrono::Utc>>,
    retention: std::time::Duration,
) -> bool {
    let retention = chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
    let horizon = now + DURABLE_MARGIN;
    horizon >= expires_at
        || oldest.is_some_and(|o| {
            o.checked_add_signed(retention)
                .is_none_or(|edge| edge <= horizon)
        })
}

/// A message becomes a statement of this import about one of its citizens,
/// or the reason it cannot.
pub(super) fn accept(
    payload: &[u8],
    import_id: i64,
    citizens: &HashSet<i32>,
) -> Result<Statement, String> {
    let statement = Statement::from_payload(payload).map_err(|e| e.to_string())?;
    if statement.import_id != import_id {
        // A misrouted producer: never let it pollute this import.
        return Err(format!(
            "foreign import: the statement is for import {}, this stream is import {import_id}'s",
            statement.import_id
        ));
    }
    if !citizens.contains(&statement.citizen_id) {
        return Err(format!(
            "citizen_id: no citizen {} in import {import_id}",
            statement.citizen_id
        ));
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_commit_durably_within_an_hour_of_the_end_of_their_stream() {
        let now = chrono::Utc::now();
        let hours = chrono::TimeDelta::hours;
        let day = std::time::Duration::from_secs(86_400);
        // Far from expiry, records fresh: not durable.
        assert!(!near_the_end(now, now + hours(48), Some(now), day));
        assert!(!near_the_end(now, now + hours(48), None, day));
        // Within an hour of expiry.
        assert!(near_the_end(now, now + hours(1), None, day));
        assert!(near_the_end(now, now - hours(1), Some(now), day));
        // A record within an hour of the topic's retention (here, 23 h old).
        assert!(near_the_end(
            now,
            now + hours(48),
            Some(now - hours(23)),
            day
        ));
        assert!(!near_the_end(
            now,
            now + hours(48),
            Some(now - hours(22)),
            day
        ));
        // A record stamped far in the past (a producer's create time).
        assert!(near_the_end(
            now,
            now + hours(48),
            Some(chrono::DateTime::UNIX_EPOCH),
            day
        ));
    }

    #[test]
    fn messages_are_checked_against_the_import_and_its_citizens() {
        let citizens: HashSet<i32> = [1, 2].into();
        let good = br#"{"statement_id":"a","import_id":5,"citizen_id":1,"course":"c","score":1,"text":"t","ts":"2026-01-01T00:00:00Z"}"#;
        assert!(accept(good, 5, &citizens).is_ok());
        assert!(accept(good, 6, &citizens)
            .unwrap_err()
            .starts_with("foreign import"));
        assert!(accept(good, 5, &[3].into())
            .unwrap_err()
            .starts_with("citizen_id"));
        assert!(accept(b"garbage", 5, &citizens)
            .unwrap_err()
            .starts_with("payload"));
        assert!(accept(br#"{"statement_id":"a"}"#, 5, &citizens)
            .unwrap_err()
            .starts_with("import_id"));
    }
}

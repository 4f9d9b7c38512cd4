//! The job actor: consumes one import's topic in bounded batches and writes
//! each batch (statements, dead letters, next offsets) in one transaction.
//! It seeks to the offsets stored in PostgreSQL when it starts, so a crash at
//! any moment replays exactly what was not committed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::{Duration, Instant};
use tracing::Instrument;

use super::repo::{self, JobRow};
use super::{archive, Context};
use crate::db::{DbError, Pool};
use crate::kafka::{self, Message, Offset};
use crate::statements::{self, Batch, Counts, Received, Rejected, Statement, Written};
use crate::telemetry::{metrics, RemoteContexts};

/// How often a job refreshes its lag gauge (a metadata request to the broker).
const LAG_EVERY: Duration = Duration::from_secs(5);

/// How often a job folds the counts of its committed batches into the
/// statement counts demand reads (at once when its stream is idle).
const FOLD_EVERY: Duration = Duration::from_secs(1);

pub struct Job;

pub struct JobArgs {
    pub context: Context,
    pub row: JobRow,
}

pub enum JobMsg {
    /// Read and write one batch, then ask for the next.
    Poll,
}

pub struct JobState {
    context: Context,
    row: JobRow,
    consumer: Option<kafka::StreamConsumer>,
    /// Whether [`start`] has set the job up.
    started: bool,
    citizens: HashSet<i32>,
    offsets: HashMap<i32, i64>,
    /// The batch read while the previous ones were being written; dropped
    /// unwritten on stop (its offsets were never stored, so it is re-read).
    ahead: Option<(Batch, Read)>,
    /// Batches being written, oldest first; each commits after the one before.
    writing: VecDeque<Writing>,
    /// When the lag gauge was last refreshed.
    lag_at: Option<Instant>,
    /// Counts of the statements committed since the last fold.
    counts: Counts,
    /// When the counts were last folded.
    folded_at: Instant,
}

/// What the trace and metrics need to know about a batch, besides the batch.
#[derive(Debug, Default)]
struct Read {
    /// The trace contexts its messages carried (from the producing requests).
    remotes: RemoteContexts,
    /// The offsets read, as `partition:first-last` per partition.
    ranges: String,
}

impl Actor for Job {
    type Msg = JobMsg;
    type State = JobState;
    type Arguments = JobArgs;

    /// Nothing that waits for PostgreSQL or Kafka: the supervisor awaits
    /// this, and must stay free for stops, starts and rebalances while a
    /// service is down. The job sets itself up in its first poll.
    async fn pre_start(
        &self,
        myself: ActorRef<JobMsg>,
        JobArgs { context, row }: JobArgs,
    ) -> Result<JobState, ActorProcessingErr> {
        myself.send_message(JobMsg::Poll)?;
        Ok(JobState {
            citizens: HashSet::new(),
            consumer: None,
            started: false,
            offsets: HashMap::new(),
            ahead: None,
            writing: VecDeque::new(),
            lag_at: None,
            counts: Counts::default(),
            folded_at: Instant::now(),
            context,
            row,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<JobMsg>,
        JobMsg::Poll: JobMsg,
        state: &mut JobState,
    ) -> Result<(), ActorProcessingErr> {
        let polled = if state.started {
            poll(state).await?
        } else {
            start(state).await?
        };
        match polled {
            Polled::Continue => {
                refresh_lag(state);
                myself.send_message(JobMsg::Poll)?;
            }
            // Another instance owns the job now: let go quietly (no failure).
            Polled::Fenced => {
                metrics::job_fenced(&state.row.name);
                myself.stop(Some("fenced".into()));
            }
            Polled::Expired => myself.stop(Some("expired".into())),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<JobMsg>,
        state: &mut JobState,
    ) -> Result<(), ActorProcessingErr> {
        // A stop takes effect after the batches already being written.
        if let Err(error) = finish_writing(state, 0).await {
            tracing::warn!(job = %state.row.name, %error, "last batch not written");
        }
        // Not folded here, the counts are caught up by the job's next start.
        if let Err(error) = fold(state, true).await {
            tracing::warn!(job = %state.row.name, %error, "last counts not folded");
        }
        if let Some(consumer) = state.consumer.take() {
            kafka::close(consumer);
        }
        Ok(())
    }
}

/// Sets the job up: its stored offsets, and unless it has expired (then it
/// only archives, in its next poll) its import's citizens and a consumer
/// assigned at those offsets; counts what a crash kept from being folded.
async fn start(state: &mut JobState) -> Result<Polled, ActorProcessingErr> {
    let context = state.context.clone();
    let mut client = context.pool.get().await?;
    state.offsets = repo::offsets(&client, &state.row.name).await?;
    if chrono::Utc::now() < state.row.expires_at {
        state.citizens = statements::citizen_ids(&client, state.row.import_id).await?;
        let settings = &context.settings;
        let consumer = kafka::consumer(
            &settings.brokers,
            &format!("insikt-{}-{}", settings.instance, state.row.name),
            &context.naming().await?.consumer_group(),
        )?;
        let partitions = context.cluster.partitions(&state.row.topic).await?;
        let offsets = partitions
            .into_iter()
            .map(|partition| {
                let offset = state
                    .offsets
                    .get(&partition)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                (partition, offset)
            })
            .collect();
        state.consumer = Some(kafka::assign(consumer, &state.row.topic, offsets).await?);
        // Batches committed before a crash may not have been folded yet.
        let (job, owner) = (&state.row.name, &settings.instance);
        let caught_up = statements::catch_up_counts(
            &mut client,
            job,
            owner,
            state.row.import_id,
            &state.offsets,
        )
        .await;
        match caught_up {
            Ok(()) => {}
            // Claimed elsewhere since this instance's claim: not ours to run.
            Err(DbError::Stale(reason)) => {
                tracing::info!(job = %state.row.name, %reason, "job fenced off");
                return Ok(Polled::Fenced);
            }
            Err(error) => return Err(error.into()),
        }
        // Only the consumer group's assignment (the supervisor's claim) sets the owner.
        repo::set_state(&client, &state.row.name, "running", None, None).await?;
    }
    state.started = true;
    Ok(Polled::Continue)
}

/// What one poll leaves the job to do.
enum Polled {
    Continue,
    Fenced,
    Expired,
}

/// Writes the batch read ahead (or reads one) and reads the next while it is
/// written; settles the writes that are done and folds their counts when due.
async fn poll(state: &mut JobState) -> Result<Polled, ActorProcessingErr> {
    if chrono::Utc::now() >= state.row.expires_at {
        // Stop reading first, so the archive covers everything not stored.
        if let Some(consumer) = state.consumer.take() {
            kafka::close(consumer);
        }
        state.ahead = None;
        if !finish_writing(state, 0).await? || !fold(state, true).await? {
            return Ok(Polled::Fenced);
        }
        archive::expire(&state.context, &state.row, &state.offsets).await?;
        return Ok(Polled::Expired);
    }
    let (batch, read) = match state.ahead.take() {
        Some(ahead) => ahead,
        None => read_batch(state).await,
    };
    if batch.next_offsets.is_empty() {
        // An idle stream: settle everything written, then step over what
        // the consumer skipped without delivering it.
        let settled = finish_writing(state, 0).await?
            && fold(state, true).await?
            && skip_undelivered(state).await?;
        return Ok(if settled {
            Polled::Continue
        } else {
            Polled::Fenced
        });
    }
    // At most `writes_in_flight` transactions (two by default: PostgreSQL
    // inserts the statements of both on two cores while the commits stay
    // in stream order; a third only waits for a core): the oldest first.
    let in_flight = state.context.settings.writes_in_flight;
    if !finish_writing(state, in_flight - 1).await? {
        return Ok(Polled::Fenced);
    }
    start_writing(state, batch, read);
    // Tokio runs a task spawned from a worker on that same worker, next,
    // and nobody can steal it: let it start before reading on.
    tokio::task::yield_now().await;
    let next = read_batch(state).await;
    // Nothing more to read: nothing to overlap, settle what is written.
    let idle = next.0.next_offsets.is_empty();
    let keep = if idle { 0 } else { in_flight - 1 };
    state.ahead = Some(next);
    let settled = finish_done_or_over(state, keep).await? && fold(state, idle).await?;
    Ok(if settled {
        Polled::Continue
    } else {
        Polled::Fenced
    })
}

/// Stores the consumer's position where it passed the stored offsets
/// without delivering a message: transaction markers (one per committed or
/// aborted producer transaction) and the records of aborted transactions,
/// which `read_committed` never delivers. Without this an idle job's stored
/// offsets would stop before the markers, and its lag never reach 0. Only
/// when idle: everything delivered has been written by then. False when
/// the job was fenced off.
async fn skip_undelivered(state: &mut JobState) -> Result<bool, ActorProcessingErr> {
    let Some(consumer) = state.consumer.as_ref() else {
        return Ok(true);
    };
    let next_offsets: Vec<(i32, i64)> = kafka::positions(consumer)?
        .into_iter()
        .filter(|(partition, position)| state.offsets.get(partition).is_none_or(|o| position > o))
        .collect();
    if next_offsets.is_empty() {
        return Ok(true);
    }
    let batch = Batch {
        next_offsets,
        ..Batch::default()
    };
    start_writing(state, batch, Read::default());
    finish_writing(state, 0).await
}

/// What a batch write did (and the counts of what it stored), and how long it took.
type WriteOutcome = (Result<(Written, Counts), DbError>, Duration);

/// A batch on its way into PostgreSQL.
struct Writing {
    task: AbortOnDrop<WriteOutcome>,
    span: tracing::Span,
    batch: Arc<Batch>,
    /// Fires once this batch committed; taken by the next batch's write.
    committed: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Starts writing `batch` on its own task, after the batch before it.
fn start_writing(state: &mut JobState, batch: Batch, read: Read) {
    // One span per batch, continuing the trace of the request that
    // produced its first message and linking the others.
    // A root of its own (not a child of the long-lived actor span)
    // unless the messages carry a context to continue.
    let span = tracing::info_span!(
        parent: None,
        "job.batch",
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        job = %state.row.name,
        import = state.row.import_id,
        // Counts as i64: tracing-opentelemetry exports u64 as strings.
        messages = (batch.accepted.len() + batch.rejected.len()) as i64,
        offsets = %read.ranges,
        traces = read.remotes.len() as i64,
        stored = tracing::field::Empty,
        duplicates = tracing::field::Empty,
        dead_letters = tracing::field::Empty,
    );
    read.remotes.continue_in(&span);
    // It continues from the stored offsets once the writes before it commit.
    let mut batch = batch;
    batch.expected_offsets = state.offsets.clone();
    for writing in &state.writing {
        batch
            .expected_offsets
            .extend(writing.batch.next_offsets.iter().copied());
    }
    let batch = Arc::new(batch);
    let earlier = state
        .writing
        .back_mut()
        .map(|w| (w.batch.clone(), w.committed.take()));
    let (committed, committed_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(
        write(
            state.context.pool.clone(),
            state.row.name.clone(),
            state.row.import_id,
            batch.clone(),
            state.context.settings.instance.clone(),
            earlier,
            committed,
        )
        .instrument(span.clone()),
    );
    state.writing.push_back(Writing {
        task: AbortOnDrop(task),
        span,
        batch,
        committed: Some(committed_rx),
    });
}

/// Folds the counts of the committed batches into the statement counts, if
/// there are any and `now` or [`FOLD_EVERY`] has passed. False when the job
/// was fenced off.
async fn fold(state: &mut JobState, now: bool) -> Result<bool, ActorProcessingErr> {
    if state.counts.is_empty() || !(now || state.folded_at.elapsed() >= FOLD_EVERY) {
        return Ok(true);
    }
    let mut client = state.context.pool.get().await?;
    let folded = statements::fold_counts(
        &mut client,
        &state.row.name,
        &state.context.settings.instance,
        state.row.import_id,
        &state.counts,
        &state.offsets,
    )
    .await;
    match folded {
        Ok(()) => {
            state.counts = Counts::default();
            state.folded_at = Instant::now();
            Ok(true)
        }
        Err(DbError::Stale(reason)) => {
            tracing::info!(job = %state.row.name, %reason, "job fenced off");
            Ok(false)
        }
        Err(error) => Err(error.into()),
    }
}

/// Settles the oldest writes until at most `keep` are left. False when the
/// job was fenced off (another instance owns it now).
async fn finish_writing(state: &mut JobState, keep: usize) -> Result<bool, ActorProcessingErr> {
    while state.writing.len() > keep {
        if !finish_oldest(state).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Settles the writes that are done (oldest first), then any over `keep`.
async fn finish_done_or_over(
    state: &mut JobState,
    keep: usize,
) -> Result<bool, ActorProcessingErr> {
    while state
        .writing
        .front()
        .is_some_and(|w| w.task.0.is_finished())
    {
        if !finish_oldest(state).await? {
            return Ok(false);
        }
    }
    finish_writing(state, keep).await
}

/// Waits for the oldest write and books it: offsets, metrics, span fields.
async fn finish_oldest(state: &mut JobState) -> Result<bool, ActorProcessingErr> {
    let Some(mut writing) = state.writing.pop_front() else {
        return Ok(true);
    };
    let (written, write_time) = (&mut writing.task.0).await?;
    let span = writing.span;
    let written = match written {
        Ok((written, counts)) => {
            state.counts.merge(counts);
            written
        }
        // Another instance owns the job now: let go quietly (no failure).
        Err(DbError::Stale(reason)) => {
            tracing::info!(parent: &span, job = %state.row.name, %reason, "job fenced off");
            // The later writes cannot commit either; drop them now.
            state.writing.clear();
            return Ok(false);
        }
        Err(error) => {
            span.record("otel.status_code", "error");
            return Err(error.into());
        }
    };
    span.record("stored", written.stored as i64);
    span.record("duplicates", written.duplicates as i64);
    span.record("dead_letters", written.dead_letters as i64);
    let job = state.row.name.as_str();
    metrics::job_statements_stored(job, written.stored);
    metrics::job_dead_letters(job, written.dead_letters);
    metrics::observe_job_batch(job, write_time.as_secs_f64());
    state
        .offsets
        .extend(writing.batch.next_offsets.iter().copied());
    tracing::debug!(
        parent: &span,
        ?written,
        write_ms = write_time.as_millis() as u64,
        writing = state.writing.len(),
        "batch written"
    );
    Ok(true)
}

/// Writes one batch (one transaction, committed after `earlier`'s) and says
/// how long it took; tells the next batch once it committed.
async fn write(
    pool: Pool,
    job: String,
    import_id: i64,
    batch: Arc<Batch>,
    owner: String,
    earlier: Option<(Arc<Batch>, Option<tokio::sync::oneshot::Receiver<()>>)>,
    committed: tokio::sync::oneshot::Sender<()>,
) -> WriteOutcome {
    let started = Instant::now();
    let (earlier_batch, earlier_committed) = earlier.unzip();
    // No receiver: the earlier batch was already settled (committed).
    let earlier_committed = async move {
        match earlier_committed.flatten() {
            Some(receiver) => receiver.await.is_ok(),
            None => true,
        }
    };
    let written = match pool.get().await {
        Ok(mut client) => {
            statements::write_batch_after(
                &mut client,
                &job,
                import_id,
                &batch,
                &owner,
                earlier_batch.as_deref(),
                earlier_committed,
            )
            .await
        }
        Err(e) => Err(e.into()),
    };
    if written.is_ok() {
        let _ = committed.send(());
    }
    (written, started.elapsed())
}

/// Aborts the write task if the handler is dropped mid-batch (the actor is
/// killed), so no transaction outlives its job; a no-op once it finished.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How many messages `read_batch` reads between two yields to the runtime.
const YIELD_EVERY: usize = 256;

/// Sets the lag gauge (the topic's high watermark minus the stored next
/// offsets, as `GET /jobs` shows it) every [`LAG_EVERY`], from a task of its
/// own so the batches never wait for the broker.
fn refresh_lag(state: &mut JobState) {
    if state.lag_at.is_some_and(|at| at.elapsed() < LAG_EVERY) {
        return;
    }
    state.lag_at = Some(Instant::now());
    let cluster = state.context.cluster.clone();
    let (job, topic) = (state.row.name.clone(), state.row.topic.clone());
    let next: i64 = state.offsets.values().sum();
    tokio::spawn(async move {
        match super::high_watermark(&cluster, &topic).await {
            Ok(high) => metrics::set_job_lag(&job, (high - next).max(0)),
            Err(error) => tracing::debug!(%job, %error, "lag not refreshed"),
        }
    });
}

/// Up to `batch_size` messages, waiting at most `batch_wait` for them, with
/// the trace contexts they carry.
async fn read_batch(state: &JobState) -> (Batch, Read) {
    let mut batch = Batch::default();
    let mut read = Read::default();
    let Some(consumer) = state.consumer.as_ref() else {
        return (batch, read);
    };
    let settings = &state.context.settings;
    let deadline = Instant::now() + settings.batch_wait;
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut first: HashMap<i32, i64> = HashMap::new();
    let mut count = 0;
    let mut oldest = None;
    while count < settings.batch_size {
        if count > 0 && count % YIELD_EVERY == 0 {
            // Buffered messages come without a pause; let the write progress.
            tokio::task::yield_now().await;
        }
        let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => break,
            Ok(Err(error)) => {
                // Broker trouble is transient for a consumer: note it, keep what we have.
                tracing::warn!(job = %state.row.name, %error, "consumer error");
                break;
            }
            Ok(Ok(message)) => message,
        };
        count += 1;
        let written_at = kafka::record_time(&message);
        oldest = Some(
            oldest.map_or(written_at, |o: chrono::DateTime<chrono::Utc>| {
                o.min(written_at)
            }),
        );
        let (partition, offset) = (message.partition(), message.offset());
        next.insert(partition, offset + 1);
        first.entry(partition).or_insert(offset);
        read.remotes.add(kafka::headers(&message));
        let payload = message.payload().unwrap_or_default();
        match accept(payload, state.row.import_id, &state.citizens) {
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
    batch.next_offsets = next.into_iter().collect();
    batch.durable = near_the_end(
        chrono::Utc::now(),
        state.row.expires_at,
        oldest,
        settings.topic_retention(),
    );
    read.ranges = batch
        .next_offsets
        .iter()
        .map(|(partition, next)| {
            let from = first.get(partition).copied().unwrap_or(*next - 1);
            format!("{partition}:{from}-{}", next - 1)
        })
        .collect::<Vec<_>>()
        .join(",");
    (batch, read)
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

//! A job's pipelined batch writes: each batch in ONE transaction
//! (statements, dead letters, next offsets), up to `writes_in_flight` of
//! them open at once on as many connections, committing in stream order;
//! and the folds of the committed batches' counts into the statement
//! counts demand reads.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Duration, Instant};
use tracing::Instrument;

use super::engine::Engine;
use super::reader::Read;
use crate::db::{DbError, Pool};
use crate::statements::{self, Batch, Counts, Written};
use crate::telemetry::metrics;

/// How often a job folds the counts of its committed batches into the
/// statement counts demand reads (at once when its stream is idle).
const FOLD_EVERY: Duration = Duration::from_secs(1);

/// One job's writes in flight, its stored offsets and its unfolded counts.
pub struct Pipeline {
    pool: Pool,
    engine: Engine,
    job: String,
    topic: String,
    import_id: i64,
    owner: String,
    /// The stored next offset per partition.
    offsets: HashMap<i32, i64>,
    /// Batches being written, oldest first; each commits after the one before.
    writing: VecDeque<Writing>,
    /// Counts of the statements committed since the last fold.
    counts: Counts,
    /// When the counts were last folded.
    folded_at: Instant,
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
    /// Its share of the instance's budget of batches in memory.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Pipeline {
    pub fn new(
        pool: Pool,
        engine: Engine,
        row: &super::repo::JobRow,
        owner: &str,
        offsets: HashMap<i32, i64>,
    ) -> Self {
        Self {
            pool,
            engine,
            job: row.name.clone(),
            topic: row.topic.clone(),
            import_id: row.import_id,
            owner: owner.to_owned(),
            offsets,
            writing: VecDeque::new(),
            counts: Counts::default(),
            folded_at: Instant::now(),
        }
    }

    /// The stored next offset per partition (as far as this job committed).
    pub fn offsets(&self) -> &HashMap<i32, i64> {
        &self.offsets
    }

    /// Starts writing `batch` on its own task, after the batches before it.
    pub fn start(&mut self, batch: Batch, read: Read, permit: Option<OwnedSemaphorePermit>) {
        // One span per batch, continuing the trace of the request that
        // produced its first message and linking the others. A root of its
        // own (not a child of the long-lived actor span) unless the messages
        // carry a context to continue.
        let span = tracing::info_span!(
            parent: None,
            "job.batch",
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            job = %self.job,
            import = self.import_id,
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
        batch.expected_offsets = self.offsets.clone();
        for writing in &self.writing {
            batch
                .expected_offsets
                .extend(writing.batch.next_offsets.iter().copied());
        }
        let batch = Arc::new(batch);
        let earlier = self
            .writing
            .back_mut()
            .map(|w| (w.batch.clone(), w.committed.take()));
        let (committed, committed_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(
            write(
                self.pool.clone(),
                self.job.clone(),
                self.import_id,
                batch.clone(),
                self.owner.clone(),
                earlier,
                committed,
            )
            .instrument(span.clone()),
        );
        self.writing.push_back(Writing {
            task: AbortOnDrop(task),
            span,
            batch,
            committed: Some(committed_rx),
            _permit: permit,
        });
    }

    /// Settles the oldest writes until at most `keep` are left. False when
    /// the job was fenced off (another instance owns it now).
    pub async fn finish(&mut self, keep: usize) -> Result<bool, DbError> {
        while self.writing.len() > keep {
            if !self.finish_oldest().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Settles the writes that are done (oldest first), then any over `keep`.
    pub async fn finish_done_or_over(&mut self, keep: usize) -> Result<bool, DbError> {
        while self.writing.front().is_some_and(|w| w.task.0.is_finished()) {
            if !self.finish_oldest().await? {
                return Ok(false);
            }
        }
        self.finish(keep).await
    }

    /// Waits for the oldest write and books it: offsets, metrics, span fields.
    async fn finish_oldest(&mut self) -> Result<bool, DbError> {
        let Some(mut writing) = self.writing.pop_front() else {
            return Ok(true);
        };
        let (written, write_time) = match (&mut writing.task.0).await {
            Ok(outcome) => outcome,
            // The task panicked or was aborted: nothing committed for sure.
            Err(error) => {
                return Err(DbError::NotCommitted(format!(
                    "job {}: the batch write ended without an answer: {error}",
                    self.job
                )))
            }
        };
        let span = writing.span;
        let written = match written {
            Ok((written, counts)) => {
                self.counts.merge(counts);
                written
            }
            // Another instance owns the job now: let go quietly (no failure).
            Err(DbError::Stale(reason)) => {
                tracing::info!(parent: &span, job = %self.job, %reason, "job fenced off");
                // The later writes cannot commit either; drop them now.
                self.writing.clear();
                return Ok(false);
            }
            Err(error) => {
                span.record("otel.status_code", "error");
                return Err(error);
            }
        };
        span.record("stored", written.stored as i64);
        span.record("duplicates", written.duplicates as i64);
        span.record("dead_letters", written.dead_letters as i64);
        let job = self.job.as_str();
        metrics::job_statements_stored(job, written.stored);
        metrics::job_dead_letters(job, written.dead_letters);
        metrics::observe_job_batch(job, write_time.as_secs_f64());
        for (partition, next) in &writing.batch.next_offsets {
            self.offsets.insert(*partition, *next);
            self.engine
                .stored(job, &(self.topic.clone(), *partition), *next);
        }
        tracing::debug!(
            parent: &span,
            ?written,
            write_ms = write_time.as_millis() as u64,
            writing = self.writing.len(),
            "batch written"
        );
        Ok(true)
    }

    /// Folds the counts of the committed batches into the statement counts,
    /// if there are any and `now` or [`FOLD_EVERY`] has passed. False when
    /// the job was fenced off.
    pub async fn fold(&mut self, now: bool) -> Result<bool, DbError> {
        if self.counts.is_empty() || !(now || self.folded_at.elapsed() >= FOLD_EVERY) {
            return Ok(true);
        }
        let mut client = self.pool.get().await?;
        let folded = statements::fold_counts(
            &mut client,
            &self.job,
            &self.owner,
            self.import_id,
            &self.counts,
            &self.offsets,
        )
        .await;
        match folded {
            Ok(()) => {
                self.counts = Counts::default();
                self.folded_at = Instant::now();
                self.engine.folded(self.import_id);
                Ok(true)
            }
            Err(DbError::Stale(reason)) => {
                tracing::info!(job = %self.job, %reason, "job fenced off");
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
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

/// Aborts the write task if the pipeline is dropped mid-batch (the actor is
/// killed or failed), so no transaction outlives its job; a no-op once it
/// finished.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

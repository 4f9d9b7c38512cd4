//! The job actor: one import's stream. Its state machine: it starts (the
//! offsets stored in PostgreSQL, its partitions of the instance's consumer
//! sought to them and resumed, a reader per partition), runs (writes the
//! batches its readers hand it, see `writes`), and stops after its current
//! batch, or expires (archives the unconsumed rest and ends). A crash at
//! any moment replays exactly what was not committed.
//!
//! Nothing here wakes up while the stream is idle: the readers await their
//! queues, and the expiry is one timer at `expires_at`.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Semaphore;

use super::reader::{self, ReadBatch, Reader};
use super::repo::{self, JobRow};
use super::writes::Pipeline;
use super::{archive, Context, JobsError};
use crate::db::DbError;
use crate::kafka::{Offset, Streams};
use crate::statements;
use crate::telemetry::metrics;

pub struct Job;

pub struct JobArgs {
    pub context: Context,
    pub row: JobRow,
}

pub enum JobMsg {
    /// Set the job up (first message, so that `pre_start` waits for nothing).
    Start,
    /// A batch a reader read, to write.
    Read(Box<ReadBatch>),
    /// A reader found its queue drained after a batch that did not: settle.
    Drained,
    /// A reader could not go on.
    ReaderFailed(JobsError),
    /// The job's window is over.
    Expire,
}

pub struct JobState {
    context: Context,
    row: JobRow,
    pipeline: Pipeline,
    reading: Option<Reading>,
}

/// The partitions a running job reads and their readers. Dropped (a failed
/// actor is dropped without `post_stop`), it stops the readers and pauses
/// the partitions: nothing is fetched for a job that does not run.
struct Reading {
    streams: Streams,
    topic: String,
    partitions: Vec<i32>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// One permit per partition: a batch handed over and not yet being written.
    credit: Arc<Semaphore>,
}

impl Reading {
    /// Stops the readers and waits until they are gone (their partition
    /// queues with them), then pauses the partitions.
    async fn stop(mut self) {
        for reader in self.readers.drain(..) {
            reader.abort();
            let _ = reader.await;
        }
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
        for partition in &self.partitions {
            if let Err(error) = self.streams.pause(&self.topic, *partition) {
                tracing::debug!(topic = %self.topic, partition, %error, "partition not paused");
            }
        }
    }
}

/// What a step of the job leaves it to do.
enum Next {
    Continue,
    Fenced,
    Expired,
}

impl Actor for Job {
    type Msg = JobMsg;
    type State = JobState;
    type Arguments = JobArgs;

    /// Nothing that waits for PostgreSQL or Kafka: the supervisor awaits
    /// this, and must stay free for stops, starts and rebalances while a
    /// service is down. The job sets itself up in its first message.
    async fn pre_start(
        &self,
        myself: ActorRef<JobMsg>,
        JobArgs { context, row }: JobArgs,
    ) -> Result<JobState, ActorProcessingErr> {
        myself.send_message(JobMsg::Start)?;
        let owner = context.settings.instance.clone();
        Ok(JobState {
            pipeline: Pipeline::new(
                context.pool.clone(),
                context.engine.clone(),
                &row,
                &owner,
                HashMap::new(),
            ),
            reading: None,
            context,
            row,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<JobMsg>,
        message: JobMsg,
        state: &mut JobState,
    ) -> Result<(), ActorProcessingErr> {
        let next = match message {
            JobMsg::Start => start(&myself, state).await?,
            JobMsg::Read(read) => write(state, *read).await?,
            JobMsg::Drained => settle(state).await?,
            JobMsg::ReaderFailed(error) => return Err(error.into()),
            JobMsg::Expire => expire(state).await?,
        };
        match next {
            Next::Continue => {}
            // Another instance owns the job now: let go quietly (no failure).
            Next::Fenced => {
                metrics::job_fenced(&state.row.name);
                myself.stop(Some("fenced".into()));
            }
            Next::Expired => myself.stop(Some("expired".into())),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<JobMsg>,
        state: &mut JobState,
    ) -> Result<(), ActorProcessingErr> {
        // Reading stops first; a batch handed over but not yet being written
        // is dropped (its offsets were never stored: it is read again).
        if let Some(reading) = state.reading.take() {
            reading.stop().await;
        }
        state.context.engine.untrack(&state.row.name);
        // A stop takes effect after the batches already being written.
        if let Err(error) = state.pipeline.finish(0).await {
            tracing::warn!(job = %state.row.name, %error, "last batch not written");
        }
        // Not folded here, the counts are caught up by the job's next start.
        if let Err(error) = state.pipeline.fold(true).await {
            tracing::warn!(job = %state.row.name, %error, "last counts not folded");
        }
        Ok(())
    }
}

/// Sets the job up: its stored offsets, and unless it has expired (then it
/// archives and ends) what a crash kept from being folded, its partitions
/// positioned at the stored offsets and a reader for each; then it runs
/// until its expiry.
async fn start(myself: &ActorRef<JobMsg>, state: &mut JobState) -> Result<Next, JobsError> {
    let context = state.context.clone();
    let settings = &context.settings;
    let (name, instance) = (&state.row.name, &settings.instance);
    let mut client = context.pool.get().await?;
    let offsets = repo::offsets(&client, name).await?;
    state.pipeline = Pipeline::new(
        context.pool.clone(),
        context.engine.clone(),
        &state.row,
        instance,
        offsets.clone(),
    );
    if chrono::Utc::now() >= state.row.expires_at {
        drop(client);
        return expire(state).await;
    }
    // Batches committed before a crash may not have been folded yet.
    let import = state.row.import_id;
    match statements::catch_up_counts(&mut client, name, instance, import, &offsets).await {
        Ok(()) => {}
        // Claimed elsewhere since this instance's claim: not ours to run.
        Err(DbError::Stale(reason)) => {
            tracing::info!(job = %name, %reason, "job fenced off");
            return Ok(Next::Fenced);
        }
        Err(error) => return Err(error.into()),
    }
    let streams = context.engine.streams().await;
    let topic = state.row.topic.clone();
    let partitions = streams.partitions(&topic);
    if partitions.is_empty() {
        return Err(JobsError::NotAssigned(name.clone()));
    }
    let credit = Arc::new(Semaphore::new(partitions.len()));
    let mut reading = Reading {
        streams: streams.clone(),
        topic: topic.clone(),
        partitions: partitions.clone(),
        readers: Vec::new(),
        credit: Arc::clone(&credit),
    };
    let mut tracked = HashMap::new();
    for &partition in &partitions {
        let from = offsets.get(&partition).copied();
        let offset = from.map_or(Offset::Beginning, Offset::Offset);
        streams.seek(&topic, partition, offset).await?;
        let stream = streams.open(&topic, partition)?;
        let reader = Reader {
            job: myself.clone(),
            name: name.clone(),
            import_id: import,
            expires_at: state.row.expires_at,
            topic: topic.clone(),
            partition,
            from,
            stream,
            streams: streams.clone(),
            engine: context.engine.clone(),
            pool: context.pool.clone(),
            settings: Arc::clone(settings),
            credit: Arc::clone(&credit),
        };
        reading.readers.push(tokio::spawn(reader::run(reader)));
        streams.resume(&topic, partition)?;
        tracked.insert((topic.clone(), partition), from);
    }
    state.reading = Some(reading);
    context.engine.track(name, tracked);
    // Only the consumer group's assignment (the supervisor's claim) sets the owner.
    repo::set_state(&client, name, "running", None, None).await?;
    let left = (state.row.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    myself.send_after(left, || JobMsg::Expire);
    Ok(Next::Continue)
}

/// Writes a batch a reader read: at most `writes_in_flight` transactions
/// open (two by default: PostgreSQL inserts the statements of both on two
/// cores while the commits stay in stream order; a third only waits for a
/// core), the oldest settled first; everything settled and folded once the
/// stream is drained.
async fn write(state: &mut JobState, read: ReadBatch) -> Result<Next, JobsError> {
    let in_flight = state.context.settings.writes_in_flight;
    let pipeline = &mut state.pipeline;
    if !pipeline.finish(in_flight - 1).await? {
        return Ok(Next::Fenced);
    }
    pipeline.start(read.batch, read.read, read.permit);
    if let Some(reading) = &state.reading {
        reading.credit.add_permits(1);
    }
    // Nothing more to read: nothing to overlap, settle what is written.
    let keep = if read.more { in_flight - 1 } else { 0 };
    let settled = pipeline.finish_done_or_over(keep).await? && pipeline.fold(!read.more).await?;
    Ok(if settled {
        Next::Continue
    } else {
        Next::Fenced
    })
}

/// Settles every write and folds: the stream is idle.
async fn settle(state: &mut JobState) -> Result<Next, JobsError> {
    let settled = state.pipeline.finish(0).await? && state.pipeline.fold(true).await?;
    Ok(if settled {
        Next::Continue
    } else {
        Next::Fenced
    })
}

/// The window is over: stop reading (so that the archive covers everything
/// not stored), settle the writes, archive the rest from the stored offsets
/// and end `expired`.
async fn expire(state: &mut JobState) -> Result<Next, JobsError> {
    if let Some(reading) = state.reading.take() {
        reading.stop().await;
    }
    state.context.engine.untrack(&state.row.name);
    if !state.pipeline.finish(0).await? || !state.pipeline.fold(true).await? {
        return Ok(Next::Fenced);
    }
    let streams = state.context.engine.streams().await;
    archive::expire(
        &state.context,
        &streams,
        &state.row,
        state.pipeline.offsets(),
    )
    .await?;
    Ok(Next::Expired)
}

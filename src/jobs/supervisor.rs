//! The supervisor actor: reconciles this instance's jobs with PostgreSQL (on
//! start, periodically and when asked), spawns one job actor per import
//! partition hash for the jobs this instance owns (the consumer group assigns
//! their topics to it), deletes the topics of the streams that expired here,
//! and handles child failures itself instead of ractor's default of stopping
//! with the child. Its work per job stays small: thousands of jobs are
//! reconciled with one query, their topics created with one request.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::job::JobMsg;
use super::reconcile::{reconcile, stop_local};
use super::repo::{self, JobRow, Scope};
use super::{Context, JobsError};
use crate::telemetry::metrics;

/// How long a stop waits for the job's current batch.
pub(super) const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Supervisor;

pub enum SupervisorMsg {
    Reconcile,
    Ensure(i64, RpcReplyPort<Result<(), JobsError>>),
    /// Like `Ensure`, without anyone waiting for the outcome: gathered, and
    /// reconciled together at the next `Flush`.
    EnsureLater(i64),
    Flush,
    /// Answers whether the job is known to be stopped (else its owner stops it).
    Stop(String, RpcReplyPort<Result<bool, JobsError>>),
    Start(String, RpcReplyPort<Result<(), JobsError>>),
    /// A failed job's backoff is over.
    Restart(String),
    Shutdown(RpcReplyPort<()>),
    /// The group assigned these jobs' topics to this instance.
    Assigned(Vec<String>),
    /// The group took these jobs' topics away; answered once they stopped.
    Revoked(Vec<String>, std::sync::mpsc::Sender<()>),
    /// Another instance (or this one) changed the job: reconcile it now.
    Changed(String),
    /// An expired job's topic could not be deleted (job, topic): retried.
    TopicKept(String, String),
}

/// A job actor running here.
pub(super) struct Running {
    pub(super) actor: ActorRef<JobMsg>,
    pub(super) topic: String,
    pub(super) legacy_topic: bool,
}

pub struct SupervisorState {
    pub(super) context: Context,
    pub(super) running: HashMap<String, Running>,
    /// Jobs whose topics the consumer group assigned to this instance.
    pub(super) owned: HashSet<String>,
    pub(super) failures: HashMap<String, VecDeque<Instant>>,
    /// Failures in a row for lack of PostgreSQL or Kafka, since the job last started.
    pub(super) outages: HashMap<String, usize>,
    /// Failed jobs waiting out their backoff; reconciliation leaves them be.
    pub(super) retry_at: HashMap<String, Instant>,
    /// Imports asked for without a wait since the last flush.
    pub(super) asked: Vec<i64>,
    pub(super) flushing: bool,
    /// Expired jobs whose topics are still to be deleted (job → topic).
    pub(super) undeleted: HashMap<String, String>,
    pub(super) shutting_down: bool,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Context;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        context: Context,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        // This instance holds nothing yet (a previous run under the same id
        // may have). Best effort: the service starts while PostgreSQL is down,
        // and the group's next owner claims the jobs anyway.
        match context.pool.get().await {
            Ok(client) => {
                if let Err(error) = repo::release(&client, None, &context.settings.instance).await {
                    tracing::warn!(%error, "could not release a previous run's jobs");
                }
            }
            Err(error) => tracing::warn!(%error, "could not release a previous run's jobs"),
        }
        myself.send_message(SupervisorMsg::Reconcile)?;
        myself.send_interval(context.settings.reconcile_every, || {
            SupervisorMsg::Reconcile
        });
        Ok(SupervisorState {
            context,
            running: HashMap::new(),
            owned: HashSet::new(),
            failures: HashMap::new(),
            outages: HashMap::new(),
            retry_at: HashMap::new(),
            asked: Vec::new(),
            flushing: false,
            undeleted: HashMap::new(),
            shutting_down: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Reconcile => {
                if let Err(error) = reconcile(&myself, state, Scope::All).await {
                    tracing::warn!(%error, "job reconciliation failed; retrying later");
                }
                for (job, topic) in std::mem::take(&mut state.undeleted) {
                    delete_topic(&myself, state, job, topic);
                }
            }
            SupervisorMsg::Ensure(import_id, reply) => {
                let scope = Scope::Imports(vec![import_id]);
                let _ = reply.send(reconcile(&myself, state, scope).await);
            }
            SupervisorMsg::EnsureLater(import_id) => {
                state.asked.push(import_id);
                if !state.flushing {
                    state.flushing = true;
                    myself.send_message(SupervisorMsg::Flush)?;
                }
            }
            SupervisorMsg::Flush => {
                state.flushing = false;
                let imports = std::mem::take(&mut state.asked);
                let count = imports.len();
                if let Err(error) = reconcile(&myself, state, Scope::Imports(imports)).await {
                    tracing::warn!(imports = count, %error, "jobs not ready yet; retrying later");
                }
            }
            SupervisorMsg::Stop(name, reply) => {
                let _ = reply.send(stop(state, &name).await);
            }
            SupervisorMsg::Start(name, reply) => {
                let _ = reply.send(start(&myself, state, &name).await);
            }
            SupervisorMsg::Restart(name) => {
                if let Err(error) = restart(&myself, state, &name).await {
                    tracing::warn!(job = %name, %error, "restart failed; retrying later");
                }
            }
            SupervisorMsg::Shutdown(reply) => {
                state.shutting_down = true;
                let jobs: Vec<_> = state.running.drain().collect();
                // All at once: each finishes its current batch.
                futures_util::future::join_all(jobs.iter().map(|(_, job)| {
                    job.actor
                        .stop_and_wait(Some("shutdown".into()), Some(STOP_TIMEOUT))
                }))
                .await;
                // Another instance takes them over once this one left the group.
                if let Ok(client) = state.context.pool.get().await {
                    let me = &state.context.settings.instance;
                    if let Err(error) = repo::release(&client, None, me).await {
                        tracing::warn!(%error, "could not release this instance's jobs");
                    }
                }
                tracing::info!("every job stopped");
                let _ = reply.send(());
            }
            SupervisorMsg::Assigned(names) => {
                if let Err(error) = assigned(&myself, state, names).await {
                    tracing::warn!(%error, "could not take over assigned jobs; retrying later");
                }
            }
            SupervisorMsg::Revoked(names, done) => {
                revoked(state, &names).await;
                let _ = done.send(());
            }
            SupervisorMsg::Changed(name) => {
                if let Err(error) = changed(&myself, state, &name).await {
                    tracing::warn!(job = %name, %error, "could not apply a job change; retrying later");
                }
            }
            SupervisorMsg::TopicKept(job, topic) => {
                state.undeleted.insert(job, topic);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Never stop with a child: a stopped job is forgotten, a failed one restarted.
        match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some((name, job)) = forget(state, &cell) {
                    tracing::info!(job = %name, ?reason, "job actor stopped");
                    match reason.as_deref() {
                        // Another instance claimed it: not ours until the group says so again.
                        Some("fenced") => {
                            state.owned.remove(&name);
                        }
                        // Archived and recorded: its topic may go.
                        Some("expired") if !job.legacy_topic => {
                            delete_topic(&myself, state, name, job.topic);
                        }
                        _ => {}
                    }
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some((name, _)) = forget(state, &cell) {
                    failed(&myself, state, name, error.as_ref()).await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn forget(state: &mut SupervisorState, cell: &ActorCell) -> Option<(String, Running)> {
    let name = state
        .running
        .iter()
        .find(|(_, job)| job.actor.get_id() == cell.get_id())
        .map(|(name, _)| name.clone())?;
    let job = state.running.remove(&name)?;
    Some((name, job))
}

/// Deletes an expired stream's topic (when `INSIKT_DELETE_EXPIRED_TOPICS`),
/// off the supervisor's loop; a failure is retried at the next periodic
/// reconciliation. Legacy topics are never given here: another deployment
/// may still read them.
fn delete_topic(
    myself: &ActorRef<SupervisorMsg>,
    state: &SupervisorState,
    job: String,
    topic: String,
) {
    if !state.context.settings.delete_expired_topics || state.shutting_down {
        return;
    }
    let (cluster, myself) = (state.context.cluster.clone(), myself.clone());
    tokio::spawn(async move {
        match cluster.delete_topic(&topic).await {
            Ok(()) => {
                metrics::expired_topic_deleted();
                tracing::info!(%job, %topic, "expired stream's topic deleted");
            }
            Err(error) => {
                tracing::warn!(%job, %topic, %error, "expired stream's topic not deleted yet; retrying");
                let _ = myself.send_message(SupervisorMsg::TopicKept(job, topic));
            }
        }
    });
}

/// A job actor failed (or could not start): it is restarted after a
/// backoff, or marked `failed` once it failed too often. A failure because
/// PostgreSQL, Kafka or the archive store could not be reached is an outage, not the job's
/// fault: it is retried with the same backoff for as long as the outage
/// lasts, and never counts towards giving up.
pub(super) async fn failed(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    name: String,
    error: &(dyn std::error::Error + Send + Sync + 'static),
) {
    let policy = state.context.settings.failures;
    let outage = crate::db::is_outage(error)
        || crate::kafka::is_outage(error)
        || super::archive::is_store_outage(error);
    let error = error.to_string();
    let (give_up, delay) = if outage {
        let streak = state.outages.entry(name.clone()).or_default();
        *streak += 1;
        (false, policy.backoff(*streak))
    } else {
        let history = state.failures.entry(name.clone()).or_default();
        let give_up = policy.record_failure(history, Instant::now());
        (give_up, policy.backoff(history.len()))
    };
    tracing::warn!(job = %name, %error, outage, give_up, ?delay, "job actor failed");
    let new_state = if give_up { "failed" } else { "pending" };
    if let Ok(client) = state.context.pool.get().await {
        if let Err(e) = repo::set_state(&client, &name, new_state, None, Some(&error)).await {
            tracing::warn!(job = %name, error = %e, "could not record the failure");
        }
    }
    if !give_up && !state.shutting_down {
        state.retry_at.insert(name.clone(), Instant::now() + delay);
        myself.send_after(delay, move || SupervisorMsg::Restart(name));
    }
}

/// The job `name` when it can still be stopped or started (it exists and has not expired).
async fn live_job(client: &crate::db::Client, name: &str) -> Result<JobRow, JobsError> {
    let row = repo::by_name(client, name)
        .await?
        .ok_or_else(|| JobsError::NotFound(name.to_owned()))?;
    if row.state == "expired" {
        return Err(JobsError::Expired(name.to_owned()));
    }
    Ok(row)
}

/// Stops the job here when this instance runs it; otherwise its owner
/// stops it when notified. True when the job is known to be stopped.
async fn stop(state: &mut SupervisorState, name: &str) -> Result<bool, JobsError> {
    let client = state.context.pool.get().await?;
    let row = live_job(&client, name).await?;
    repo::set_desired(&client, name, "stopped").await?;
    let here = state.running.contains_key(name);
    stop_local(state, name).await;
    // Nobody else runs it when this instance ran it or nobody owns it.
    let stopped = here || state.owned.contains(name) || row.owner.is_none();
    if row.topic_ready && stopped {
        repo::set_state(&client, name, "stopped", None, None).await?;
    }
    repo::notify(&client, name).await?;
    Ok(stopped || !row.topic_ready)
}

async fn start(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    name: &str,
) -> Result<(), JobsError> {
    let client = state.context.pool.get().await?;
    let row = live_job(&client, name).await?;
    repo::set_desired(&client, name, "running").await?;
    if row.state == "failed" || row.state == "stopped" {
        // An operator's start gives a failed job a fresh failure budget.
        state.failures.remove(name);
        state.retry_at.remove(name);
        repo::set_state(&client, name, "pending", None, None).await?;
    }
    repo::notify(&client, name).await?;
    drop(client);
    reconcile(myself, state, Scope::Imports(vec![row.import_id])).await
}

/// The group gave this instance these jobs: record it, then run them; the
/// topics of those that expired (elsewhere, or before a deletion failed)
/// are deleted.
async fn assigned(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    names: Vec<String>,
) -> Result<(), JobsError> {
    if state.shutting_down {
        return Ok(());
    }
    state.owned.extend(names.iter().cloned());
    let client = state.context.pool.get().await?;
    repo::claim(&client, &names, &state.context.settings.instance).await?;
    let expired = repo::expired_topics(&client, &names).await?;
    drop(client);
    for row in expired {
        delete_topic(myself, state, row.name, row.topic);
    }
    reconcile(myself, state, Scope::Names(names)).await
}

/// The group took these jobs away: stop them (each after its current
/// batch, all at once) and give up their ownership.
async fn revoked(state: &mut SupervisorState, names: &[String]) {
    let mut jobs = Vec::new();
    for name in names {
        state.owned.remove(name);
        if let Some(job) = state.running.remove(name) {
            jobs.push(job);
        }
    }
    futures_util::future::join_all(jobs.iter().map(|job| {
        job.actor
            .stop_and_wait(Some("revoked".into()), Some(STOP_TIMEOUT))
    }))
    .await;
    match state.context.pool.get().await {
        Ok(client) => {
            let me = &state.context.settings.instance;
            if let Err(error) = repo::release(&client, Some(names), me).await {
                tracing::warn!(%error, "could not release revoked jobs");
            }
        }
        Err(error) => tracing::warn!(%error, "could not release revoked jobs"),
    }
}

async fn changed(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    name: &str,
) -> Result<(), JobsError> {
    let client = state.context.pool.get().await?;
    let Some(row) = repo::by_name(&client, name).await? else {
        return Ok(());
    };
    drop(client);
    if row.desired == "running" && state.owned.contains(name) {
        // An operator's start elsewhere gives a failed job a fresh budget here too.
        state.failures.remove(name);
        state.retry_at.remove(name);
    }
    reconcile(myself, state, Scope::Imports(vec![row.import_id])).await
}

async fn restart(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    name: &str,
) -> Result<(), JobsError> {
    state.retry_at.remove(name);
    if state.shutting_down || state.running.contains_key(name) {
        return Ok(());
    }
    let client = state.context.pool.get().await?;
    let Some(row) = repo::by_name(&client, name).await? else {
        return Ok(());
    };
    if row.desired != "running" || row.state == "failed" || row.state == "expired" {
        return Ok(());
    }
    drop(client);
    reconcile(myself, state, Scope::Imports(vec![row.import_id])).await
}

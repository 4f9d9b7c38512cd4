//! The supervisor actor: reconciles this instance's jobs with PostgreSQL (on
//! start, periodically and when asked), spawns one job actor per import
//! partition hash for the jobs this instance owns (the consumer group assigns
//! their topics to it), and handles child failures itself instead of ractor's
//! default of stopping with the child.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::Instrument;

use super::job::{Job, JobArgs, JobMsg};
use super::repo::{self, JobRow};
use super::{Context, JobsError};

/// How long a stop waits for the job's current batch.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Supervisor;

pub enum SupervisorMsg {
    Reconcile,
    Ensure(i64, RpcReplyPort<Result<(), JobsError>>),
    /// Like `Ensure`, without anyone waiting for the outcome.
    EnsureLater(i64),
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
}

pub struct SupervisorState {
    context: Context,
    running: HashMap<String, ActorRef<JobMsg>>,
    /// Jobs whose topics the consumer group assigned to this instance.
    owned: HashSet<String>,
    failures: HashMap<String, VecDeque<Instant>>,
    /// Failures in a row for lack of PostgreSQL or Kafka, since the job last started.
    outages: HashMap<String, usize>,
    /// Failed jobs waiting out their backoff; reconciliation leaves them be.
    retry_at: HashMap<String, Instant>,
    shutting_down: bool,
}

/// When a failed job restarts, and when it is given up (`failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// This many failures within `window` mark the job `failed`.
    pub max_failures: usize,
    pub window: Duration,
    /// The first restart delay, doubled with each further failure up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
}

impl FailurePolicy {
    /// The restart delay after `failures` recent failures.
    pub fn backoff(&self, failures: usize) -> Duration {
        let exponent = failures.saturating_sub(1).min(16) as u32;
        (self.backoff * 2u32.pow(exponent)).min(self.backoff_max)
    }

    /// Records a failure at `now`, forgetting those older than the window;
    /// true when the job has failed too often and must be marked `failed`.
    pub fn record_failure(&self, history: &mut VecDeque<Instant>, now: Instant) -> bool {
        history.push_back(now);
        while history
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            history.pop_front();
        }
        history.len() >= self.max_failures
    }
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
                if let Err(error) = reconcile(&myself, state, None).await {
                    tracing::warn!(%error, "job reconciliation failed; retrying later");
                }
            }
            SupervisorMsg::Ensure(import_id, reply) => {
                let _ = reply.send(reconcile(&myself, state, Some(import_id)).await);
            }
            SupervisorMsg::EnsureLater(import_id) => {
                if let Err(error) = reconcile(&myself, state, Some(import_id)).await {
                    tracing::warn!(import_id, %error, "job not ready yet; retrying later");
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
                futures_util::future::join_all(jobs.iter().map(|(_, actor)| {
                    actor.stop_and_wait(Some("shutdown".into()), Some(STOP_TIMEOUT))
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
                if let Some(name) = forget(state, &cell) {
                    tracing::info!(job = %name, ?reason, "job actor stopped");
                    if reason.as_deref() == Some("fenced") {
                        // Another instance claimed it: not ours until the group says so again.
                        state.owned.remove(&name);
                    }
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(name) = forget(state, &cell) {
                    failed(&myself, state, name, error.as_ref()).await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn forget(state: &mut SupervisorState, cell: &ActorCell) -> Option<String> {
    let name = state
        .running
        .iter()
        .find(|(_, actor)| actor.get_id() == cell.get_id())
        .map(|(name, _)| name.clone())?;
    state.running.remove(&name);
    Some(name)
}

/// A job actor failed (or could not start): it is restarted after a
/// backoff, or marked `failed` once it failed too often. A failure because
/// PostgreSQL, Kafka or the archive store could not be reached is an outage, not the job's
/// fault: it is retried with the same backoff for as long as the outage
/// lasts, and never counts towards giving up.
async fn failed(
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

/// Creates missing job rows and topics, then runs every job that should run
/// here (or just `only`'s) and stops those asked to stop elsewhere.
async fn reconcile(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    only: Option<i64>,
) -> Result<(), JobsError> {
    if state.shutting_down {
        return Ok(());
    }
    let settings = state.context.settings.clone();
    let client = state.context.pool.get().await?;
    let naming = state.context.naming().await?.clone();
    repo::create_missing(&client, &naming, settings.retention, only).await?;
    if only.is_some() && repo::live(&client, only).await?.is_empty() {
        // Expired or failed: nothing to start; an unknown import has no row.
        let exists = crate::citizens::import_exists(&client, only.unwrap_or_default()).await?;
        return if exists {
            Ok(())
        } else {
            Err(JobsError::NoImport(only.unwrap_or_default()))
        };
    }
    for mut row in repo::live(&client, only).await? {
        if !row.topic_ready {
            match state
                .context
                .cluster
                .create_topic(&row.topic, settings.topic_retention())
                .await
            {
                Ok(()) => {
                    repo::topic_created(&client, &row.name).await?;
                    row.topic_ready = true;
                }
                Err(error) => {
                    tracing::warn!(job = %row.name, %error, "topic not created yet; job stays pending");
                    continue;
                }
            }
        }
        if state
            .retry_at
            .get(&row.name)
            .is_some_and(|at| Instant::now() < *at)
        {
            continue;
        }
        if !state.owned.contains(&row.name) {
            // Another instance's (or nobody's, until the group assigns it).
            stop_local(state, &row.name).await;
            continue;
        }
        let expired = chrono::Utc::now() >= row.expires_at;
        let wanted = row.desired == "running" || expired;
        match (wanted, state.running.get(&row.name)) {
            (true, None) => {
                if row.owner.as_deref() != Some(settings.instance.as_str()) {
                    // The group gave it to us before its row existed (a topic
                    // left on the broker), so that assignment claimed nothing.
                    repo::claim(&client, std::slice::from_ref(&row.name), &settings.instance)
                        .await?;
                }
                spawn(myself, state, row).await?
            }
            (false, Some(_)) => {
                // Stopped through another instance (or by hand in the table).
                stop_local(state, &row.name).await;
                repo::set_state(&client, &row.name, "stopped", None, None).await?;
            }
            (false, None) if row.state == "running" || row.state == "pending" => {
                // A previous owner left it marked as running.
                repo::set_state(&client, &row.name, "stopped", None, None).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

async fn spawn(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    row: JobRow,
) -> Result<(), JobsError> {
    let name = row.name.clone();
    // Registered under its topic, which carries the instance's prefix, and
    // the instance, so apps sharing a process (tests) never collide in
    // ractor's registry, not even while a job moves between them.
    let registered = format!("{}@{}", row.topic, state.context.settings.instance);
    let args = JobArgs {
        context: state.context.clone(),
        row,
    };
    // ractor nests an actor's spans (and those of the messages it sends
    // itself) under the span current at spawn: give the job a root span of
    // its own, or the request that started it would stay open for as long as
    // the job runs, and never be exported.
    let span = tracing::info_span!(parent: None, "job actor", job = %name);
    match Actor::spawn_linked(Some(registered), Job, args, myself.get_cell())
        .instrument(span)
        .await
    {
        Ok((actor, _)) => {
            tracing::info!(job = %name, "job actor started");
            state.outages.remove(&name);
            state.running.insert(name, actor);
        }
        // pre_start failed (e.g. Kafka or PostgreSQL unreachable): treat as a failure.
        Err(error) => failed(myself, state, name, &error).await,
    }
    Ok(())
}

async fn stop_local(state: &mut SupervisorState, name: &str) {
    if let Some(actor) = state.running.remove(name) {
        // A stop is handled between messages, i.e. after the current batch.
        if let Err(error) = actor
            .stop_and_wait(Some("stopped".into()), Some(STOP_TIMEOUT))
            .await
        {
            tracing::warn!(job = %name, %error, "job did not stop in time");
        }
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
    reconcile(myself, state, Some(row.import_id)).await
}

/// The group gave this instance these jobs: record it, then run them.
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
    drop(client);
    reconcile(myself, state, None).await
}

/// The group took these jobs away: stop them (each after its current
/// batch, all at once) and give up their ownership.
async fn revoked(state: &mut SupervisorState, names: &[String]) {
    let mut actors = Vec::new();
    for name in names {
        state.owned.remove(name);
        if let Some(actor) = state.running.remove(name) {
            actors.push(actor);
        }
    }
    futures_util::future::join_all(
        actors
            .iter()
            .map(|actor| actor.stop_and_wait(Some("revoked".into()), Some(STOP_TIMEOUT))),
    )
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
    reconcile(myself, state, Some(row.import_id)).await
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
    reconcile(myself, state, Some(row.import_id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Today's defaults (see `Config`).
    const POLICY: FailurePolicy = FailurePolicy {
        max_failures: 5,
        window: Duration::from_secs(600),
        backoff: Duration::from_millis(500),
        backoff_max: Duration::from_secs(60),
    };

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(POLICY.backoff(1), Duration::from_millis(500));
        assert_eq!(POLICY.backoff(2), Duration::from_secs(1));
        assert_eq!(POLICY.backoff(4), Duration::from_secs(4));
        assert_eq!(POLICY.backoff(100), Duration::from_secs(60));
    }

    #[test]
    fn five_failures_within_ten_minutes_give_up() {
        let start = Instant::now();
        let mut history = VecDeque::new();
        for i in 0..4 {
            assert!(!POLICY.record_failure(&mut history, start + Duration::from_secs(i * 60)));
        }
        assert!(POLICY.record_failure(&mut history, start + Duration::from_secs(300)));

        // Spread over more than the window, they never add up to five.
        let mut history = VecDeque::new();
        for i in 0..20 {
            assert!(!POLICY.record_failure(&mut history, start + Duration::from_secs(i * 200)));
        }
    }

    #[test]
    fn the_defaults_are_the_policy_above() {
        let settings = super::super::Settings::from_config(&crate::config::Config::from_env());
        assert_eq!(settings.failures, POLICY);
    }
}

//! The supervisor's reconciliation: the jobs of a scope (all, some imports,
//! some names) as PostgreSQL has them, against the actors running here.
//! One query and at most one topic request per pass, however many jobs;
//! per job only lookups in memory, unless it must start or stop.

use std::collections::HashSet;
use std::time::Instant;

use ractor::{Actor, ActorRef};
use tracing::Instrument;

use super::job::{Job, JobArgs};
use super::repo::{self, JobRow, Scope};
use super::supervisor::{failed, Running, SupervisorMsg, SupervisorState, STOP_TIMEOUT};
use super::JobsError;

/// Creates missing job rows and topics in `scope`, then runs every job of
/// it that should run here and stops those asked to stop elsewhere.
pub(super) async fn reconcile(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    scope: Scope,
) -> Result<(), JobsError> {
    if state.shutting_down {
        return Ok(());
    }
    let settings = state.context.settings.clone();
    let client = state.context.pool.get().await?;
    let naming = state.context.naming().await?.clone();
    match &scope {
        Scope::All => repo::create_missing(&client, &naming, settings.retention, None).await?,
        Scope::Imports(ids) => {
            repo::create_missing(&client, &naming, settings.retention, Some(ids)).await?
        }
        Scope::Names(_) => {}
    }
    let mut rows = repo::live(&client, &scope).await?;
    create_topics(state, &client, &mut rows).await?;
    for row in rows {
        if !row.topic_ready
            || state
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
        match (wanted, state.running.contains_key(&row.name)) {
            (true, false) => {
                if row.owner.as_deref() != Some(settings.instance.as_str()) {
                    // The group gave it to us before its row existed (a topic
                    // left on the broker), so that assignment claimed nothing.
                    repo::claim(&client, std::slice::from_ref(&row.name), &settings.instance)
                        .await?;
                }
                spawn(myself, state, row).await?
            }
            (false, true) => {
                // Stopped through another instance (or by hand in the table).
                stop_local(state, &row.name).await;
                repo::set_state(&client, &row.name, "stopped", None, None).await?;
            }
            (false, false) if row.state == "running" || row.state == "pending" => {
                // A previous owner left it marked as running.
                repo::set_state(&client, &row.name, "stopped", None, None).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Creates the topics `rows` lack, in one request, and records them; the
/// consumer then looks for them at once, so the group assigns them without
/// waiting for its periodic refresh. A Kafka outage leaves those jobs
/// `pending` until the next try.
async fn create_topics(
    state: &SupervisorState,
    client: &crate::db::Client,
    rows: &mut [JobRow],
) -> Result<(), JobsError> {
    let missing: Vec<String> = rows
        .iter()
        .filter(|r| !r.topic_ready)
        .map(|r| r.topic.clone())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let retention = state.context.settings.topic_retention();
    let outcome = match state
        .context
        .cluster
        .create_topics(&missing, retention)
        .await
    {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(topics = missing.len(), %error, "topics not created yet; jobs stay pending");
            return Ok(());
        }
    };
    let mut created = HashSet::new();
    for (topic, result) in outcome {
        match result {
            Ok(()) => {
                created.insert(topic);
            }
            Err(error) => {
                tracing::warn!(%topic, %error, "topic not created yet; job stays pending")
            }
        }
    }
    let names: Vec<String> = rows
        .iter()
        .filter(|r| created.contains(&r.topic))
        .map(|r| r.name.clone())
        .collect();
    repo::topics_created(client, &names).await?;
    for row in rows.iter_mut() {
        row.topic_ready |= created.contains(&row.topic);
    }
    let created: Vec<String> = created.into_iter().collect();
    if let Err(error) = repo::notify_created(client, &created).await {
        // The others' periodic refresh finds them.
        tracing::debug!(%error, "topics made not announced");
    }
    if let Some(streams) = state.context.engine.try_streams() {
        streams.refresh(created);
    }
    Ok(())
}

async fn spawn(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    row: JobRow,
) -> Result<(), JobsError> {
    let name = row.name.clone();
    let (topic, legacy_topic) = (row.topic.clone(), row.legacy_topic);
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
            tracing::debug!(job = %name, "job actor started");
            state.outages.remove(&name);
            let job = Running {
                actor,
                topic,
                legacy_topic,
            };
            state.running.insert(name, job);
        }
        // pre_start failed (e.g. Kafka or PostgreSQL unreachable): treat as a failure.
        Err(error) => failed(myself, state, name, &error).await,
    }
    Ok(())
}

pub(super) async fn stop_local(state: &mut SupervisorState, name: &str) {
    if let Some(job) = state.running.remove(name) {
        // A stop is handled between messages, i.e. after the current batch.
        if let Err(error) = job
            .actor
            .stop_and_wait(Some("stopped".into()), Some(STOP_TIMEOUT))
            .await
        {
            tracing::warn!(job = %name, %error, "job did not stop in time");
        }
    }
}

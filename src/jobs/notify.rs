//! Job changes from other instances: a dedicated PostgreSQL connection that
//! LISTENs on [`repo::CHANNEL`] (payload: a job name) and hands each name to
//! the supervisor, which reconciles that job at once, and on
//! [`repo::STREAMS_CHANNEL`] (payload: a topic written to), which wakes the
//! topic's reader if it sleeps here, and on [`repo::TOPICS_CHANNEL`]
//! (payload: a topic created), which has the consumer that would read it
//! look for it at once. It reconnects when PostgreSQL
//! restarts, then has everything reconciled (notifications sent while it
//! was away are lost; the lag sweep wakes what they would have).

use std::time::Duration;

use futures_util::StreamExt;
use ractor::ActorRef;
use tokio_postgres::{AsyncMessage, NoTls};

use super::engine::Engine;
use super::repo;
use super::supervisor::SupervisorMsg;

const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// Listens until the supervisor is gone; spawn it as a task.
pub async fn listen(database_url: String, supervisor: ActorRef<SupervisorMsg>, engine: Engine) {
    let mut delay = RECONNECT_MIN;
    let mut first = true;
    loop {
        match listen_once(&database_url, &supervisor, &engine, first).await {
            Ok(Gone::Supervisor) => return,
            Ok(Gone::Connection) => {
                tracing::warn!("job notifications: connection closed; reconnecting");
                delay = RECONNECT_MIN;
            }
            Err(error) => {
                tracing::warn!(%error, ?delay, "job notifications: cannot listen; retrying");
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        }
        first = false;
        tokio::time::sleep(delay).await;
    }
}

enum Gone {
    Supervisor,
    Connection,
}

async fn listen_once(
    database_url: &str,
    supervisor: &ActorRef<SupervisorMsg>,
    engine: &Engine,
    first: bool,
) -> Result<Gone, tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(database_url, NoTls).await?;
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    // The connection delivers notifications only while it is polled.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = sender.send((n.channel().to_owned(), n.payload().to_owned()));
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "job notifications: connection error");
                    break;
                }
            }
        }
    });
    let listening = client
        .batch_execute(&format!(
            "LISTEN {}; LISTEN {}; LISTEN {}",
            repo::CHANNEL,
            repo::STREAMS_CHANNEL,
            repo::TOPICS_CHANNEL
        ))
        .await;
    if let Err(error) = listening {
        driver.abort();
        return Err(error);
    }
    tracing::debug!(channel = repo::CHANNEL, "listening for job changes");
    // After a reconnect, catch up with whatever was missed meanwhile.
    if !first && supervisor.send_message(SupervisorMsg::Reconcile).is_err() {
        driver.abort();
        return Ok(Gone::Supervisor);
    }
    while let Some((channel, payload)) = received.recv().await {
        if channel == repo::STREAMS_CHANNEL {
            engine.wake(&payload);
            continue;
        }
        if channel == repo::TOPICS_CHANNEL {
            if let Some(streams) = engine.try_streams() {
                streams.look_for(&[payload]);
            }
            continue;
        }
        let name = payload;
        if supervisor
            .send_message(SupervisorMsg::Changed(name))
            .is_err()
        {
            driver.abort();
            return Ok(Gone::Supervisor);
        }
    }
    // The driver ended: the connection is gone.
    drop(client);
    Ok(Gone::Connection)
}

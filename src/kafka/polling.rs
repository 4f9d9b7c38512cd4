//! A consumer's own thread: it polls the consumer's main queue (rebalance
//! callbacks, errors), and asks for the cluster's topics while new ones are
//! awaited, so that they join the subscription without waiting for the
//! periodic refresh. Until stopped; then it leaves the group.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

use super::group::{is_quiet, Assigned, Member};

/// A consumer whose context takes the rebalance callbacks.
pub(super) type Client = BaseConsumer<Member>;

/// How long seeks and the topic refresh wait.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the main queue is polled at a time (the stop flag and the
/// metadata refresh are looked at in between).
const POLL: Duration = Duration::from_millis(100);
/// How long a refresh asks again for topics not assigned here yet. Asked
/// again until the group assigned them (a topic just created reaches the
/// broker's metadata a moment later, and librdkafka may let a refresh that
/// comes during a rebalance go by), or they went to another instance.
pub(super) const REFRESH_FOR: Duration = Duration::from_secs(30);
/// How often the refresh asks again meanwhile: each answer lists every
/// topic of the cluster.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// How soon after a refresh a new topic is asked for: a burst of new
/// imports (a hundred a second) shares refreshes instead of asking for
/// thousands of topics ten times a second.
const ASK_SPACING: Duration = Duration::from_millis(250);
/// How long a leaving consumer waits for the last partition queue to go, so
/// that the client is destroyed on its own thread, not a runtime worker.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Topics awaited in the consumer's assignment, until when, and whether
/// one was asked for since the last refresh.
#[derive(Default)]
pub(super) struct Refresh {
    pub(super) awaited: HashSet<String>,
    pub(super) until: Option<Instant>,
    pub(super) asked: bool,
}

impl Refresh {
    /// Whether to ask for the metadata now, the last time being `last`;
    /// forgets the topics assigned here since, and all of them after
    /// [`REFRESH_FOR`].
    fn due(&mut self, assigned: &Assigned, last: Option<Instant>, now: Instant) -> bool {
        if self.until.is_some_and(|until| now >= until) {
            self.awaited.clear();
        }
        if !self.awaited.is_empty() {
            if let Ok(assigned) = assigned.lock() {
                self.awaited.retain(|topic| !assigned.contains_key(topic));
            }
        }
        if self.awaited.is_empty() {
            self.until = None;
        }
        let after = |spacing| last.is_none_or(|last| now.duration_since(last) >= spacing);
        (self.asked && after(ASK_SPACING)) || (!self.awaited.is_empty() && after(REFRESH_EVERY))
    }
}

/// The consumer's thread: polls the main queue (rebalance callbacks,
/// errors) until stopped, then leaves the group and destroys the client.
pub(super) fn serve(
    consumer: Arc<Client>,
    stop: &AtomicBool,
    refresh: &Mutex<Refresh>,
    assigned: &Assigned,
) {
    let mut last = None;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let due = refresh.lock().is_ok_and(|mut r| {
            let due = r.due(assigned, last, now);
            // An ask not due yet waits for the spacing, not lost.
            r.asked &= !due;
            due
        });
        if due {
            last = Some(now);
            // All topics: only that lets librdkafka update the subscription.
            if let Err(error) = consumer.fetch_metadata(None, REQUEST_TIMEOUT) {
                tracing::debug!(%error, "topic refresh failed; retrying");
            }
        }
        match consumer.poll(POLL) {
            // Fetched for a partition before its queue was split: its job
            // seeks to its stored offsets, so it is read again there.
            Some(Ok(message)) => tracing::debug!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                "record outside a partition queue ignored"
            ),
            Some(Err(error)) if is_quiet(&error) => tracing::debug!(%error, "kafka consumer"),
            Some(Err(error)) => tracing::warn!(%error, "kafka consumer"),
            None => {}
        }
    }
    // Closing revokes every partition through the callback (the jobs stop
    // first) and leaves the group.
    if let Err(error) = consumer.close_queue() {
        tracing::warn!(%error, "could not leave the consumer group cleanly");
    } else {
        while !consumer.closed() {
            consumer.poll(POLL);
        }
    }
    let deadline = Instant::now() + CLOSE_WAIT;
    while Arc::strong_count(&consumer) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(consumer);
}

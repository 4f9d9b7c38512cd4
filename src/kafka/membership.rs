//! Group membership without consumption: one consumer per instance that
//! subscribes to a topic pattern in a consumer group, only so that the
//! group's (cooperative-sticky) assignment decides which instance owns which
//! topic. Its partitions are paused at once: the owner reads them with
//! consumers of its own, seeking to offsets stored elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::TopicPartitionList;

use super::{client_config, KafkaClientError};

/// How often a pattern subscription looks for new topics.
const METADATA_REFRESH: Duration = Duration::from_secs(2);
/// How long the group waits for a silent member before moving its topics,
/// and how often a member says it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupTiming {
    pub session_timeout: Duration,
    pub heartbeat: Duration,
}
const POLL: Duration = Duration::from_millis(100);

/// Told about this member's assignment changes, on the membership's thread.
pub trait Ownership: Send + Sync + 'static {
    /// Topics newly assigned to this member.
    fn assigned(&self, topics: Vec<String>);
    /// Topics taken from this member. The rebalance waits for this to
    /// return, so the next owner starts only after this one let go.
    fn revoked(&self, topics: Vec<String>);
}

/// The regular expression subscribing to `{stem}.{name}` topics (names are
/// lowercase hex, without dots); librdkafka takes a subscription starting
/// with `^` as a pattern.
pub fn topic_pattern(prefix: &str) -> String {
    let mut pattern = String::from("^");
    for c in prefix.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("\\.[0-9a-f]+$");
    pattern
}

fn topics(list: &TopicPartitionList) -> Vec<String> {
    let mut topics: Vec<String> = list
        .elements()
        .iter()
        .map(|e| e.topic().to_owned())
        .collect();
    topics.sort();
    topics.dedup();
    topics
}

struct MemberContext<O> {
    ownership: O,
}

impl<O: Ownership> ClientContext for MemberContext<O> {
    fn error(&self, error: KafkaError, reason: &str) {
        // Until the first import creates a topic the pattern matches nothing;
        // librdkafka reports that as an error, but it is the normal state of
        // a fresh installation.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
            tracing::debug!(%error, reason, "no stream topic exists yet");
        } else {
            tracing::error!(%error, reason, "kafka group member error");
        }
    }
}

impl<O: Ownership> ConsumerContext for MemberContext<O> {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = topics(list);
            if !revoked.is_empty() {
                tracing::info!(topics = ?revoked, "topics revoked from this instance");
                self.ownership.revoked(revoked);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = topics(list);
                if assigned.is_empty() {
                    return;
                }
                // Ownership only: never fetch (the owner's own consumers read).
                if let Err(error) = consumer.pause(list) {
                    tracing::warn!(%error, "could not pause the membership's partitions");
                }
                tracing::info!(topics = ?assigned, "topics assigned to this instance");
                self.ownership.assigned(assigned);
            }
            Rebalance::Error(error) => tracing::warn!(%error, "consumer group rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// This instance's member of the group; leaves the group when stopped.
pub struct Membership {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Membership {
    /// Joins `group` subscribed to `subscription` (topic names, and
    /// patterns starting with `^`); `ownership` hears about every assignment
    /// change until the member leaves. Works while Kafka is down (the member
    /// joins once it answers).
    pub fn join<O: Ownership>(
        brokers: &str,
        client_id: &str,
        group: &str,
        subscription: &[String],
        timing: GroupTiming,
        ownership: O,
    ) -> Result<Self, KafkaClientError> {
        let consumer: BaseConsumer<MemberContext<O>> = client_config(brokers, client_id)
            .set("group.id", group)
            // Spreads single-partition topics across members; moves only what must move.
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "topic.metadata.refresh.interval.ms",
                METADATA_REFRESH.as_millis().to_string(),
            )
            .set(
                "session.timeout.ms",
                timing.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                timing.heartbeat.as_millis().to_string(),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(MemberContext { ownership })?;
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("kafka-membership".into())
            .spawn(move || {
                // Polling serves the rebalance callbacks; paused partitions
                // deliver no messages, and any stray one is ignored.
                while !stopping.load(Ordering::Relaxed) {
                    if let Some(Err(error)) = consumer.poll(POLL) {
                        tracing::debug!(%error, "membership consumer");
                    }
                }
                // Dropping closes the consumer: it revokes this member's
                // topics (through the callback) and leaves the group.
                drop(consumer);
            })
            .map_err(|_| KafkaClientError::Interrupted)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Leaves the group, after the owner let go of every topic.
    pub async fn leave(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Without `leave` (e.g. a dropped test app): the thread leaves on its own.
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_matches_only_the_prefix_and_hex_names() {
        assert_eq!(
            topic_pattern("insikt.statements"),
            "^insikt\\.statements\\.[0-9a-f]+$"
        );
        assert_eq!(topic_pattern("a+b"), "^a\\+b\\.[0-9a-f]+$");
    }
}

//! The consumer group side of the instance's consumer: the group's
//! cooperative-sticky assignment decides which instance owns which stream.
//! New partitions start paused at the beginning (their jobs position them);
//! a revoke waits until the jobs let go, so the next owner starts only after
//! the last commit of this one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

/// How long the group waits for a silent member before moving its topics,
/// and how often a member says it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupTiming {
    pub session_timeout: Duration,
    pub heartbeat: Duration,
}

/// Told about this member's assignment changes, on the consumer's thread.
pub trait Ownership: Send + Sync + 'static {
    /// Partitions newly assigned to this member (paused at the beginning).
    fn assigned(&self, partitions: Vec<(String, i32)>);
    /// Partitions taken from this member. The rebalance waits for this to
    /// return, so the next owner starts only after this one let go.
    fn revoked(&self, partitions: Vec<(String, i32)>);
}

/// The consumers an instance may split its streams over: divisors of 16,
/// so that each consumer takes whole first hex digits of the job names.
pub const CONSUMER_COUNTS: [usize; 5] = [1, 2, 4, 8, 16];

/// Which of `consumers` consumers reads `topic`: the one whose share of
/// first hex digits holds the first digit of the topic's job name (its last
/// dot-separated part; FNV hashes, so the shares are even).
pub fn shard_of(topic: &str, consumers: usize) -> usize {
    let digit = topic
        .rsplit('.')
        .next()
        .and_then(|name| name.chars().next())
        .and_then(|c| c.to_digit(16))
        .unwrap_or(0);
    digit as usize % consumers.max(1)
}

/// The regular expression subscribing consumer `shard` of `consumers` to
/// the `{stem}.{name}` topics it reads (names are lowercase hex, without
/// dots): those whose name starts with one of its digits. librdkafka takes
/// a subscription starting with `^` as a pattern.
pub fn topic_pattern(stem: &str, shard: usize, consumers: usize) -> String {
    let mut pattern = String::from("^");
    for c in stem.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("\\.[");
    pattern.extend(
        "0123456789abcdef"
            .chars()
            .enumerate()
            .filter(|(digit, _)| digit % consumers.max(1) == shard)
            .map(|(_, c)| c),
    );
    pattern.push_str("][0-9a-f]*$");
    pattern
}

/// The consumer group of consumer `shard` of `consumers`: `group` itself
/// when there is one consumer (the name deployments have always used),
/// `{group}.{shard}of{consumers}` otherwise. Each group's stored metadata
/// lists only its own topics, which keeps it under the broker's 1 MiB
/// record limit (one group reaches it at about 2,800 topics).
pub fn shard_group(group: &str, shard: usize, consumers: usize) -> String {
    if consumers <= 1 {
        group.to_owned()
    } else {
        format!("{group}.{shard}of{consumers}")
    }
}

fn entries(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

pub(super) fn list_of(partitions: &[(String, i32)], offset: Offset) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        // Only fails for an offset librdkafka cannot represent (not these).
        let _ = list.add_partition_offset(topic, *partition, offset);
    }
    list
}

/// The partitions assigned to this member, by topic.
pub(super) type Assigned = Arc<Mutex<HashMap<String, BTreeSet<i32>>>>;

/// The consumer's context: the rebalance callbacks.
pub struct Member {
    pub(super) ownership: Arc<dyn Ownership>,
    pub(super) assigned: Assigned,
}

impl ClientContext for Member {
    fn error(&self, error: KafkaError, reason: &str) {
        // Until the first import creates a topic the pattern matches nothing;
        // librdkafka reports that as an error, but it is the normal state of
        // a fresh installation.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
            tracing::debug!(%error, reason, "no stream topic exists yet");
        } else {
            tracing::error!(%error, reason, "kafka consumer error");
        }
    }
}

/// Errors polled from the main queue that are the normal state of things
/// (no stream topic yet) or that librdkafka retries by itself.
pub(super) fn is_quiet(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
        )
    )
}

impl ConsumerContext for Member {
    /// Replaces rdkafka's default (assign as given): new partitions start
    /// paused at the beginning, and a revoke waits for the jobs to let go.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        let partitions = entries(list);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            let start = list_of(&partitions, Offset::Beginning);
            let applied = if cooperative {
                consumer.incremental_assign(&start)
            } else {
                consumer.assign(&start)
            };
            if let Err(error) = applied {
                tracing::error!(%error, "could not take the assigned partitions");
                return;
            }
            if partitions.is_empty() {
                return;
            }
            // Nothing is read until the partition's job has positioned it.
            if let Err(error) = consumer.pause(&start) {
                tracing::warn!(%error, "could not pause the assigned partitions");
            }
            if let Ok(mut assigned) = self.assigned.lock() {
                for (topic, partition) in &partitions {
                    assigned
                        .entry(topic.clone())
                        .or_default()
                        .insert(*partition);
                }
            }
            tracing::info!(
                partitions = partitions.len(),
                "streams assigned to this instance"
            );
            tracing::debug!(?partitions, "assigned");
            self.ownership.assigned(partitions);
        } else {
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                tracing::warn!(error = ?err, "consumer group rebalance failed: letting go");
            }
            if !partitions.is_empty() {
                tracing::info!(
                    partitions = partitions.len(),
                    "streams revoked from this instance"
                );
                tracing::debug!(?partitions, "revoked");
                self.ownership.revoked(partitions.clone());
                if let Ok(mut assigned) = self.assigned.lock() {
                    for (topic, partition) in &partitions {
                        if let Some(set) = assigned.get_mut(topic) {
                            set.remove(partition);
                            if set.is_empty() {
                                assigned.remove(topic);
                            }
                        }
                    }
                }
            }
            let applied = if cooperative {
                consumer.incremental_unassign(list)
            } else {
                consumer.unassign()
            };
            if let Err(error) = applied {
                tracing::error!(%error, "could not let go of the revoked partitions");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_matches_only_the_prefix_and_hex_names() {
        assert_eq!(
            topic_pattern("insikt.statements", 0, 1),
            "^insikt\\.statements\\.[0123456789abcdef][0-9a-f]*$"
        );
        assert_eq!(topic_pattern("a+b", 1, 4), "^a\\+b\\.[159d][0-9a-f]*$");
    }

    #[test]
    fn every_topic_is_read_by_the_one_consumer_whose_pattern_matches_it() {
        let stem = "insikt.statements.6f1c0d2a4b9e4c0f8a2b1c3d4e5f6a7b";
        // The digits of a pattern's first character class after the stem.
        let digits = |pattern: String| {
            let from = pattern.rfind("\\.[").unwrap() + 3;
            let to = from + pattern[from..].find(']').unwrap();
            pattern[from..to].to_owned()
        };
        for consumers in CONSUMER_COUNTS {
            for digit in "0123456789abcdef".chars() {
                let topic = format!("{stem}.{digit}e4e755301197336");
                let shard = shard_of(&topic, consumers);
                assert!(shard < consumers);
                for other in 0..consumers {
                    let own = digits(topic_pattern(stem, other, consumers)).contains(digit);
                    assert_eq!(
                        own,
                        other == shard,
                        "{topic}, consumer {other} of {consumers}"
                    );
                }
            }
        }
        // Legacy topics (`{prefix}.{name}`) go by their name too.
        assert_eq!(shard_of("insikt.statements.af63ac4c86019afc", 8), 10 % 8);
    }

    #[test]
    fn one_consumer_keeps_the_group_name_several_get_one_group_each() {
        assert_eq!(shard_group("insikt-jobs.d", 0, 1), "insikt-jobs.d");
        assert_eq!(shard_group("insikt-jobs.d", 3, 4), "insikt-jobs.d.3of4");
    }
}

//! How replicated the service's topics are, as readiness reports it: a
//! partition with fewer in-sync replicas than replicas is under-replicated
//! (writes still succeed, one more failure may stop them); one with fewer
//! than its `min.insync.replicas` (or no leader) refuses `acks=all` writes.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::metadata::Metadata;
use serde::Serialize;

use super::{Cluster, KafkaClientError};

/// The topic every transaction's state is written to: below its minimum,
/// the transactional producer cannot commit whatever its own topics say.
const TRANSACTION_STATE: &str = "__transaction_state";
/// At most this many topics are asked for their `min.insync.replicas` per
/// check (only under-replicated ones are asked at all).
const DESCRIBED_TOPICS: usize = 50;

/// Replication of the partitions a check looked at.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Replication {
    /// Partitions (`topic/partition`) with fewer in-sync replicas than
    /// replicas: writes still succeed.
    pub under_replicated: Vec<String>,
    /// Partitions with fewer in-sync replicas than their
    /// `min.insync.replicas`, or without a leader: writes are refused.
    pub not_writable: Vec<String>,
}

impl Replication {
    pub fn writable(&self) -> bool {
        self.not_writable.is_empty()
    }
}

/// One partition as the metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionState {
    topic: String,
    partition: i32,
    replicas: usize,
    in_sync: usize,
    has_leader: bool,
}

impl Cluster {
    /// One metadata request (which also tells that Kafka answers), then, if
    /// some partition of a topic starting with `prefix` (or of the
    /// transaction log) is under-replicated, the `min.insync.replicas` of
    /// those topics.
    pub async fn replication(
        &self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Replication, KafkaClientError> {
        let admin = std::sync::Arc::clone(&self.admin);
        let wanted = format!("{prefix}.");
        let partitions = tokio::task::spawn_blocking(move || {
            let metadata = admin.inner().fetch_metadata(None, timeout)?;
            Ok::<_, KafkaClientError>(partition_states(&metadata, |t| {
                t.starts_with(&wanted) || t == TRANSACTION_STATE
            }))
        })
        .await
        .map_err(|_| KafkaClientError::Interrupted)??;
        let mut short: Vec<&str> = partitions
            .iter()
            .filter(|p| p.in_sync < p.replicas || !p.has_leader)
            .map(|p| p.topic.as_str())
            .collect();
        short.dedup();
        short.truncate(DESCRIBED_TOPICS);
        let minimums = if short.is_empty() {
            BTreeMap::new()
        } else {
            self.min_insync(&short, timeout).await
        };
        Ok(judge(&partitions, &minimums))
    }

    /// `min.insync.replicas` of each of `topics` that answered.
    async fn min_insync(&self, topics: &[&str], timeout: Duration) -> BTreeMap<String, usize> {
        let resources: Vec<ResourceSpecifier<'_>> =
            topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        let options = AdminOptions::new().request_timeout(Some(timeout));
        let Ok(results) = self.admin.describe_configs(&resources, &options).await else {
            return BTreeMap::new();
        };
        results
            .into_iter()
            .flatten()
            .filter_map(|resource| {
                let topic = match &resource.specifier {
                    rdkafka::admin::OwnedResourceSpecifier::Topic(t) => t.clone(),
                    _ => return None,
                };
                let value = resource.get("min.insync.replicas")?.value.as_deref()?;
                Some((topic, value.parse().ok()?))
            })
            .collect()
    }
}

fn partition_states(metadata: &Metadata, wanted: impl Fn(&str) -> bool) -> Vec<PartitionState> {
    metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && wanted(t.name()))
        .flat_map(|t| {
            t.partitions().iter().map(|p| PartitionState {
                topic: t.name().to_owned(),
                partition: p.id(),
                replicas: p.replicas().len(),
                in_sync: p.isr().len(),
                has_leader: p.leader() >= 0,
            })
        })
        .collect()
}

/// Sorts the partitions into under-replicated and not writable. A topic
/// whose minimum is unknown (its config did not answer) counts as needing
/// a majority of its replicas, as a production topic of 3 replicas with
/// `min.insync.replicas=2` does.
fn judge(partitions: &[PartitionState], minimums: &BTreeMap<String, usize>) -> Replication {
    let mut replication = Replication::default();
    for p in partitions {
        let name = format!("{}/{}", p.topic, p.partition);
        let minimum = minimums
            .get(&p.topic)
            .copied()
            .unwrap_or(p.replicas / 2 + 1)
            .min(p.replicas);
        if !p.has_leader || p.in_sync < minimum {
            replication.not_writable.push(name);
        } else if p.in_sync < p.replicas {
            replication.under_replicated.push(name);
        }
    }
    replication
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(topic: &str, replicas: usize, in_sync: usize, has_leader: bool) -> PartitionState {
        PartitionState {
            topic: topic.to_owned(),
            partition: 0,
            replicas,
            in_sync,
            has_leader,
        }
    }

    #[test]
    fn a_partition_below_its_minimum_is_not_writable_one_short_of_its_replicas_is_under_replicated()
    {
        let partitions = [
            partition("full", 3, 3, true),
            partition("one-short", 3, 2, true),
            partition("two-short", 3, 1, true),
            partition("leaderless", 3, 3, false),
            partition("single", 1, 1, true),
        ];
        let minimums: BTreeMap<String, usize> = [
            ("one-short".to_owned(), 2),
            ("two-short".to_owned(), 2),
            ("leaderless".to_owned(), 2),
        ]
        .into();
        let judged = judge(&partitions, &minimums);
        assert_eq!(judged.under_replicated, ["one-short/0"]);
        assert_eq!(judged.not_writable, ["two-short/0", "leaderless/0"]);
        assert!(!judged.writable());
    }

    #[test]
    fn an_unknown_minimum_is_a_majority_and_never_more_than_the_replicas() {
        let partitions = [
            partition("three", 3, 1, true),
            partition("two", 2, 1, true),
            partition("min-above-replicas", 1, 1, true),
        ];
        let minimums: BTreeMap<String, usize> = [("min-above-replicas".to_owned(), 2)].into();
        let judged = judge(&partitions, &minimums);
        // A majority of 3 is 2, of 2 is 2; a minimum above the replicas
        // (Kafka refuses every acks=all write then) is left to Kafka's own error.
        assert_eq!(judged.not_writable, ["three/0", "two/0"]);
        assert!(judged.under_replicated.is_empty());
    }
}

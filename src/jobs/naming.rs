//! How one deployment names its jobs, topics and consumer group.
//!
//! A deployment is a database: its identity (a random UUID made by
//! migration V9) goes into every name, so two deployments on one Kafka
//! cluster, whose import ids both start at 1, never share a topic or a
//! group. Jobs made before V9 keep their names and topics (see
//! `jobs.legacy_topic`).

use uuid::Uuid;

/// The partition hash of an import in a deployment, which names its job:
/// FNV-1a 64 over `"{import_id}:{deployment}"` (the import id in decimal,
/// the UUID in its hyphenated lowercase form), as 16 lowercase hex digits.
/// The import id comes first: FNV-1a mixes a byte only into the bytes after
/// it, so names of consecutive imports then differ throughout.
/// FNV-1a is fully specified (offset basis 0xcbf29ce484222325, prime
/// 0x100000001b3): the name is the same on every platform and version.
pub fn job_name(deployment: &Uuid, import_id: i64) -> String {
    let key = format!("{import_id}:{}", deployment.hyphenated());
    format!("{:016x}", fnv1a(key.as_bytes()))
}

/// The name jobs had before deployments had identities (the decimal import
/// id alone): only jobs recorded by migration V9 as legacy still use it.
pub fn legacy_job_name(import_id: i64) -> String {
    format!("{:016x}", fnv1a(import_id.to_string().as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The job name in a topic name: its last dot-separated part, in every
/// naming (`{prefix}.{deployment}.{name}`, and legacy `{prefix}.{name}`).
pub fn job_of_topic(topic: &str) -> &str {
    topic.rsplit('.').next().unwrap_or(topic)
}

/// One deployment's names, from its identity and the configured prefix and group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    deployment: Uuid,
    topic_prefix: String,
    consumer_group: String,
}

impl Naming {
    pub fn new(deployment: Uuid, topic_prefix: &str, consumer_group: &str) -> Self {
        Self {
            deployment,
            topic_prefix: topic_prefix.to_owned(),
            consumer_group: consumer_group.to_owned(),
        }
    }

    pub fn deployment(&self) -> &Uuid {
        &self.deployment
    }

    pub fn job_name(&self, import_id: i64) -> String {
        job_name(&self.deployment, import_id)
    }

    /// What every topic of this deployment starts with: `{prefix}.{deployment}`
    /// (the UUID as 32 hex digits).
    pub fn topic_stem(&self) -> String {
        format!("{}.{}", self.topic_prefix, self.deployment.simple())
    }

    /// The topic of job `name`: `{prefix}.{deployment}.{name}`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.topic_stem())
    }

    /// The `transactional.id` of an instance's producer:
    /// `insikt-{deployment}-{instance}`, stable across the instance's
    /// restarts (so a restarted instance fences its zombie) and unique in
    /// the cluster as long as instance ids are unique in the deployment.
    pub fn transactional_id(&self, instance: &str) -> String {
        format!("insikt-{}-{instance}", self.deployment.simple())
    }

    /// The consumer group of this deployment's instances:
    /// `{consumer group}.{deployment}`. Its own, so that deployments sharing
    /// a cluster and the default group name never rebalance one another.
    pub fn consumer_group(&self) -> String {
        format!("{}.{}", self.consumer_group, self.deployment.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Uuid {
        Uuid::parse_str("6f1c0d2a-4b9e-4c0f-8a2b-1c3d4e5f6a7b").unwrap()
    }

    #[test]
    fn job_names_are_stable_fnv1a_hex_of_the_deployment_and_the_import() {
        // FNV-1a 64, computed independently, of the bytes
        // "1:6f1c0d2a-4b9e-4c0f-8a2b-1c3d4e5f6a7b" and of "1".
        assert_eq!(job_name(&deployment(), 1), "ee4e755301197336");
        assert_eq!(legacy_job_name(1), "af63ac4c86019afc");
        assert_ne!(job_name(&deployment(), 1), job_name(&deployment(), 2));
        assert_ne!(job_name(&deployment(), 1), job_name(&Uuid::nil(), 1));
    }

    #[test]
    fn topics_and_groups_carry_the_deployment() {
        let naming = Naming::new(deployment(), "insikt.statements", "insikt-jobs");
        let name = naming.job_name(1);
        let topic = naming.topic(&name);
        assert_eq!(
            topic,
            format!("insikt.statements.6f1c0d2a4b9e4c0f8a2b1c3d4e5f6a7b.{name}")
        );
        assert_eq!(job_of_topic(&topic), name);
        assert_eq!(
            job_of_topic("insikt.statements.af63ac4c86019afc"),
            "af63ac4c86019afc"
        );
        assert_eq!(
            naming.consumer_group(),
            "insikt-jobs.6f1c0d2a4b9e4c0f8a2b1c3d4e5f6a7b"
        );
        assert_eq!(
            naming.transactional_id("api-1"),
            "insikt-6f1c0d2a4b9e4c0f8a2b1c3d4e5f6a7b-api-1"
        );
    }
}

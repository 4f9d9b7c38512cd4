//! Kafka through rdkafka: client configuration and cluster checks. Only the
//! Kafka protocol is used, so any compatible broker works.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum KafkaClientError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("kafka check was interrupted")]
    Interrupted,
}

/// The base configuration every client of this service starts from.
pub fn client_config(brokers: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        // Fail metadata requests quickly instead of retrying for minutes.
        .set("socket.timeout.ms", "10000");
    config
}

/// A handle on the cluster for administrative requests; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl Cluster {
    /// Creates the client; it connects lazily, so this works while Kafka is down.
    pub fn connect(brokers: &str, client_id: &str) -> Result<Self, KafkaClientError> {
        let admin = client_config(brokers, client_id).create()?;
        Ok(Self {
            admin: Arc::new(admin),
        })
    }

    /// Asks the cluster for its metadata; Ok when at least one broker answers.
    pub async fn ping(&self, timeout: Duration) -> Result<(), KafkaClientError> {
        let admin = Arc::clone(&self.admin);
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(KafkaClientError::from)
        })
        .await
        .map_err(|_| KafkaClientError::Interrupted)?
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

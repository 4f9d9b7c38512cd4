//! One partition's records, split off the instance's consumer
//! (`rd_kafka_queue_get_partition`): read by that partition's job alone.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use tokio::sync::Notify;

use super::group::Member;

/// One partition's records, split off the instance's consumer.
pub struct PartitionStream {
    pub(super) queue: PartitionQueue<Member>,
    pub(super) ready: Arc<Notify>,
}

impl PartitionStream {
    /// The next record if one is queued. `None` also means that whatever
    /// else was queued (transaction markers, librdkafka's own barriers) has
    /// been served.
    pub fn try_recv(&self) -> Option<KafkaResult<BorrowedMessage<'_>>> {
        self.queue.poll(Duration::ZERO)
    }

    /// After [`PartitionStream::try_recv`] found nothing: waits until
    /// something is queued.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// The next record, waiting as long as it takes.
    pub async fn recv(&self) -> KafkaResult<BorrowedMessage<'_>> {
        loop {
            if let Some(message) = self.try_recv() {
                return message;
            }
            self.ready().await;
        }
    }
}

//! What the stream benchmarks share: the statements they put in a topic.

use insikt::kafka::Producer;

/// Produces statements `bench-{i}` for `ids` to `topic`, for citizens
/// `i % citizens` of `import` (keyed by citizen, as the API does), in chunks
/// of 10,000 acknowledged records.
pub async fn produce_statements(
    producer: &Producer,
    topic: &str,
    import: i64,
    ids: std::ops::Range<i64>,
    citizens: i64,
) {
    for chunk in ids.collect::<Vec<_>>().chunks(10_000) {
        let records = chunk
            .iter()
            .map(|i| {
                let citizen = i % citizens;
                let payload = serde_json::json!({
                    "statement_id": format!("bench-{i}"), "import_id": import,
                    "citizen_id": citizen, "course": "rust", "channel": "radio",
                    "score": 0.7, "text": "I would like a course about this, in the evenings.",
                    "ts": "2026-11-28T12:00:00Z"
                });
                (citizen.to_string(), payload.to_string().into_bytes())
            })
            .collect();
        producer.send_all(topic, records).await.unwrap();
    }
}

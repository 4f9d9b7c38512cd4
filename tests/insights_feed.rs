//! The insights' working set is fed by the jobs: an import whose statements
//! were stored is loaded before anyone asks, so its first ask reads only the
//! last moment's segments. Alone in its binary: the gauges it reads are the
//! process's, and here no other app sets them.
// A test may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::streams::{self, eventually};
use common::{json, TestApp};
use serde_json::{json, Value};

#[tokio::test]
async fn stored_statements_are_in_the_working_set_before_anyone_asks() {
    let app = TestApp::spawn_with(streams::configure).await;
    let citizens: Vec<Value> = (1..=20)
        .map(|id| {
            json!({"citizen_id": id, "town": "Alba", "street": "Main", "building": "1",
                   "apartment": 1, "name": "Resident", "birth_date": "01.02.1990",
                   "gender": "female", "relatives": []})
        })
        .collect();
    let import = app.post_import(&json!({ "citizens": citizens })).await;
    let statements: Vec<Value> = (0..200)
        .map(|i| json!({"statement_id": format!("f{i}"), "citizen_id": i % 20 + 1, "course": "rust"}))
        .collect();
    app.post_accepted(import, &json!(statements)).await;
    let db = app.db().await;
    eventually(
        "the statements to be stored",
        Duration::from_secs(60),
        || async { (streams::stored(&db, import).await == 200).then_some(()) },
    )
    .await;

    // Nobody asked for any insight: only the jobs' feed loads the import.
    let loaded = eventually(
        "the import in the working set",
        Duration::from_secs(30),
        || async {
            let imports = app.metric("insikt_insights_imports_loaded").await?;
            let bytes = app.metric("insikt_insights_memory_bytes").await?;
            (imports >= 1.0).then_some(bytes)
        },
    )
    .await;
    assert!(loaded > 0.0, "{loaded}");

    // And it answers what was stored.
    let (status, body) = json(
        app.get(&format!(
            "/imports/{import}/insights/rates?by=town&course=rust"
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["rows"][0]["askers"], 20, "{body}");
}

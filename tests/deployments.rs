//! Deployments side by side, as users run them: two databases (staging and
//! production, say), each with its own `insikt serve`, on one broker, with
//! the default topic prefix and consumer group, and the same import ids.
//! Nothing of one ever reaches the other: statements, dead letters,
//! archives. Plus the upgrade path: jobs made before deployments had
//! identities keep their topics.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::streams::{self, eventually};
use common::{json, TestApp, TestDatabase, ADMIN_TOKEN};
use insikt::config::Config;
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
const RETENTION: Duration = Duration::from_secs(30);

async fn spawn() -> TestApp {
    TestApp::spawn_with(|config| {
        streams::configure(config);
        config.retention = RETENTION;
    })
    .await
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = json(app.get(path).await).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["data"].clone()
}

/// Statements `{tag}-{i}` for `ids`, with only the required fields.
fn bare_statements(tag: &str, ids: std::ops::Range<i32>) -> Value {
    ids.map(
        |i| json!({"statement_id": format!("{tag}-{i}"), "citizen_id": i % 3 + 1, "course": tag}),
    )
    .collect()
}

async fn ids(db: &tokio_postgres::Client, sql: &str, import: i64) -> BTreeSet<String> {
    db.query(sql, &[&import])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn expected(tag: &str, ids: std::ops::Range<i32>) -> BTreeSet<String> {
    ids.map(|i| format!("{tag}-{i}")).collect()
}

#[tokio::test]
async fn two_deployments_on_one_broker_with_default_names_never_mix() {
    let (staging, production) = tokio::join!(spawn(), spawn());
    let defaults = Config::from_env();
    let apps = [("staging", &staging), ("production", &production)];
    let mut imports = Vec::new();
    for (tag, app) in apps {
        let db = app.db().await;
        let import = streams::create_import(&db, &[1, 2, 3]).await;
        assert_eq!(
            import, 1,
            "{tag}: every database numbers its imports from 1"
        );
        imports.push((tag, app, db, import));
    }

    // Each job has a topic of its own deployment, under the default prefix.
    let mut topics = Vec::new();
    for (tag, app, db, import) in &imports {
        let name = common::job_name(db, *import).await;
        let shown = eventually(&format!("{tag}'s job running"), WAIT, || async {
            // 404 until the supervisor made the job of the import.
            let (_, body) = json(app.get(&format!("/jobs/{name}")).await).await;
            (body["data"]["state"] == "running").then(|| body["data"].clone())
        })
        .await;
        let topic = shown["topic"].as_str().unwrap().to_owned();
        let deployment = common::deployment(db).await.simple().to_string();
        assert_eq!(
            topic,
            format!("{}.{deployment}.{name}", defaults.topic_prefix),
            "{tag}"
        );
        topics.push(topic);
    }
    assert_ne!(topics[0], topics[1]);

    // The same import id, the same statement ids' shape, both at once; only
    // the required fields (no channel, score, text or ts).
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    for (tag, app, _, import) in &imports {
        app.post_accepted(*import, &bare_statements(tag, 0..100))
            .await;
    }
    // A misrouted producer, and a poison message, straight to each topic.
    let producer = streams::producer(&defaults);
    for ((tag, _, _, import), topic) in imports.iter().zip(&topics) {
        let records = vec![
            ("1".to_owned(), format!("poison of {tag}").into_bytes()),
            (
                "1".to_owned(),
                streams::statement(&format!("{tag}-foreign"), import + 1, 1)
                    .to_string()
                    .into_bytes(),
            ),
        ];
        producer.send_all(topic, records).await.unwrap();
    }
    for (tag, app, db, import) in &imports {
        eventually(&format!("{tag}'s 100 statements"), WAIT, || async {
            (streams::stored(db, *import).await == 100).then_some(())
        })
        .await;
        assert_eq!(
            ids(
                db,
                "SELECT statement_id FROM statements WHERE import_id = $1",
                *import
            )
            .await,
            expected(tag, 0..100),
            "{tag} stores its own statements, exactly"
        );
        // The record's timestamp stands in for the absent ts.
        let row = db
            .query_one(
                "SELECT min(ts), max(ts), count(*) FILTER (WHERE score IS NULL AND text IS NULL \
                 AND channel IS NULL) FROM statements WHERE import_id = $1",
                &[import],
            )
            .await
            .unwrap();
        let (first, last): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
            (row.get(0), row.get(1));
        assert!(
            before <= first && last <= chrono::Utc::now(),
            "{first}..{last}"
        );
        assert_eq!(row.get::<_, i64>(2), 100);

        let letters = eventually(&format!("{tag}'s dead letters"), WAIT, || async {
            let letters = get(app, &format!("/imports/{import}/dead-letters")).await;
            (letters.as_array().unwrap().len() >= 2).then_some(letters)
        })
        .await;
        let letters = letters.as_array().unwrap();
        assert_eq!(letters.len(), 2, "{tag}: {letters:?}");
        assert_eq!(letters[0]["payload"], format!("poison of {tag}"));
        assert!(letters[1]["payload"]
            .as_str()
            .unwrap()
            .contains(&format!("{tag}-foreign")));
        assert!(
            letters[1]["reason"]
                .as_str()
                .unwrap()
                .starts_with("foreign import"),
            "{letters:?}"
        );
    }

    // Stopped, each job leaves a rest in its topic; expiry archives only that.
    for (tag, app, db, import) in &imports {
        let name = common::job_name(db, *import).await;
        let (status, body) = json(
            app.request(Method::POST, &format!("/jobs/{name}/stop"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{tag}: {body}");
        app.post_accepted(*import, &bare_statements(&format!("{tag}-rest"), 0..5))
            .await;
    }
    for (tag, app, db, import) in &imports {
        let name = common::job_name(db, *import).await;
        eventually(&format!("{tag}'s job expired"), WAIT, || async {
            (get(app, &format!("/jobs/{name}")).await["state"] == "expired").then_some(())
        })
        .await;
        let url: String = db
            .query_one("SELECT url FROM job_archives WHERE job = $1", &[&name])
            .await
            .unwrap()
            .get(0);
        let dir = std::path::Path::new(url.strip_prefix("file://").unwrap())
            .parent()
            .unwrap()
            .parent()
            .unwrap();
        let archived: BTreeSet<String> = streams::statement_ids(&streams::archived(dir, &name))
            .into_iter()
            .collect();
        assert_eq!(archived, expected(&format!("{tag}-rest"), 0..5), "{tag}");
        assert_eq!(streams::stored(db, *import).await, 100, "{tag}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A job made before deployments had identities (recorded by migration V9
/// as legacy) keeps its name and topic: the instance subscribes to that
/// topic by name and stores what is in it, while new imports get new names.
#[tokio::test]
async fn a_job_named_before_deployment_identities_keeps_its_topic() {
    let database = TestDatabase::create().await;
    let db = common::connect(&database.url).await;
    let legacy = streams::create_import(&db, &[1]).await;
    let name = insikt::jobs::legacy_job_name(legacy);
    // A prefix of this test's own: legacy names repeat across databases.
    let topic = format!("insikt.legacy.{}.{name}", &database.name[12..]);
    db.execute(
        "INSERT INTO jobs (name, import_id, topic, expires_at, legacy_topic) \
         VALUES ($1, $2, $3, now() + interval '1 day', true)",
        &[&name, &legacy, &topic],
    )
    .await
    .unwrap();
    let mut config = common::test_config(&database);
    streams::configure(&mut config);
    let served = common::Served::start(config.clone()).await;

    let producer = streams::producer(&config);
    streams::running_topic(&db, &name, WAIT).await;
    let records = (0..10)
        .map(|i| {
            let payload = streams::statement(&format!("old-{i}"), legacy, 1);
            ("1".to_owned(), payload.to_string().into_bytes())
        })
        .collect();
    producer.send_all(&topic, records).await.unwrap();
    eventually("the legacy topic's statements", WAIT, || async {
        (streams::stored(&db, legacy).await == 10).then_some(())
    })
    .await;

    // A new import of the same database is named the new way.
    let new = streams::create_import(&db, &[1]).await;
    let new_topic = eventually("the new import's job", WAIT, || async {
        db.query_opt("SELECT topic FROM jobs WHERE import_id = $1", &[&new])
            .await
            .unwrap()
            .map(|r| r.get::<_, String>(0))
    })
    .await;
    assert_eq!(
        new_topic,
        common::topic(&db, &config.topic_prefix, new).await
    );
    served.stop().await;
    drop(database);
}

/// Migration V9 gives an existing database its identity and records the
/// jobs it already had as legacy, without renaming them.
#[tokio::test]
async fn the_identity_migration_records_existing_jobs_as_legacy() {
    let admin = common::admin_client().await;
    let name = format!(
        "insikt_upgrade_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let url = common::database_url(&name);
    insikt::db::migrate_to(&url, Some(8)).await.unwrap();
    let db = common::connect(&url).await;
    let import = common::insert_import(&db).await;
    let old_name = insikt::jobs::legacy_job_name(import);
    let old_topic = format!("insikt.statements.{old_name}");
    db.execute(
        "INSERT INTO jobs (name, import_id, topic, expires_at) VALUES ($1, $2, $3, now())",
        &[&old_name, &import, &old_topic],
    )
    .await
    .unwrap();

    let report = insikt::db::migrate(&url).await.unwrap();
    assert!(
        report
            .applied
            .iter()
            .any(|m| m.contains("deployment_identity")),
        "{:?}",
        report.applied
    );
    let row = db
        .query_one("SELECT name, topic, legacy_topic FROM jobs", &[])
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, bool>(2)
        ),
        (old_name, old_topic, true)
    );
    let deployments: i64 = db
        .query_one("SELECT count(*) FROM deployment", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(deployments, 1);
    // One row only, ever.
    assert!(db
        .execute("INSERT INTO deployment DEFAULT VALUES", &[])
        .await
        .is_err());
    drop(db);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

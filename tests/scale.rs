//! Scale-out against the real broker and PostgreSQL: two instances (different
//! ids and ports, one database, one consumer group) share six imports'
//! streams, hand them over when one leaves, and obey stop/start sent to the
//! instance that does not own the job.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::streams::{self, eventually};
use common::{json, Served, TestDatabase, ADMIN_TOKEN};
use insikt::config::Config;
use insikt::jobs::Naming;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
const IMPORTS: usize = 6;
const CITIZENS: i32 = 10;

fn instance(database: &TestDatabase, template: &Config, id: &str) -> Config {
    let mut config = streams::served_config(database, template);
    config.instance_id = Some(id.to_owned());
    config
}

/// The backend pids of the instances' connections listening for job changes.
async fn listeners(db: &tokio_postgres::Client) -> BTreeSet<i32> {
    db.query(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn get(served: &Served, path: &str) -> Value {
    let (status, body) = json(reqwest::get(served.url(path)).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn control(served: &Served, name: &str, action: &str) -> Value {
    let response = reqwest::Client::new()
        .post(served.url(&format!("/jobs/{name}/{action}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Job name → owner, once all six jobs run; `None` while any does not.
async fn owners(served: &Served) -> Option<HashMap<String, String>> {
    owners_of(served, IMPORTS).await
}

async fn owners_of(served: &Served, count: usize) -> Option<HashMap<String, String>> {
    let jobs = get(served, "/jobs").await;
    let jobs = jobs.as_array().unwrap();
    if jobs.len() != count {
        return None;
    }
    jobs.iter()
        .map(|job| {
            let running = job["state"] == "running";
            let owner = job["owner"].as_str().filter(|_| running)?;
            Some((job["name"].as_str()?.to_owned(), owner.to_owned()))
        })
        .collect()
}

/// Produces statements `from..to` of `import` straight to its topic.
async fn produce(
    producer: &insikt::kafka::Producer,
    topic: &str,
    import: i64,
    range: std::ops::Range<usize>,
) {
    let records = range
        .map(|i| {
            let citizen = (i as i32) % CITIZENS;
            let payload = streams::statement(&format!("s{i}"), import, citizen);
            (citizen.to_string(), payload.to_string().into_bytes())
        })
        .collect();
    producer.send_all(topic, records).await.unwrap();
}

/// Per import: stored statements, distinct source offsets, dead letters.
async fn tally(db: &tokio_postgres::Client, import: i64) -> (i64, i64, i64) {
    let stored = streams::stored(db, import).await;
    let offsets = streams::count(
        db,
        "SELECT count(DISTINCT kafka_offset) FROM statements WHERE import_id = $1",
        import,
    )
    .await;
    let dead = streams::count(
        db,
        "SELECT count(*) FROM dead_letters WHERE import_id = $1",
        import,
    )
    .await;
    (stored, offsets, dead)
}

async fn all_stored(db: &tokio_postgres::Client, imports: &[i64], each: i64) {
    for &import in imports {
        eventually(
            &format!("{each} statements of import {import}"),
            WAIT,
            || async { (streams::stored(db, import).await >= each).then_some(()) },
        )
        .await;
    }
    for &import in imports {
        assert_eq!(tally(db, import).await, (each, each, 0), "import {import}");
        streams::counts_match_statements(db, import).await;
    }
}

#[tokio::test]
async fn two_instances_share_streams_hand_them_over_and_obey_either_for_stop_and_start() {
    let database = TestDatabase::create().await;
    let mut template = common::test_config(&database);
    streams::configure(&mut template);
    // No periodic reconciliation to fall back on: only the group's
    // assignments and the NOTIFYs move jobs.
    template.reconcile_secs = 3600;
    // One consumer group: its assignment balances all of the imports across
    // the two instances, which the counts below rely on. With several
    // groups each balances only its own share (a group of one topic gives
    // it to one instance), so how many jobs alpha takes back would depend
    // on the job names' first digits.
    template.kafka_consumers = 1;
    // Idle streams sleep between the steps (paused partitions handed over,
    // stopped and started), and wake when written to.
    template.stream_sleep_after = Duration::from_secs(1);
    let db = common::connect(&database.url).await;
    let citizens: Vec<i32> = (0..CITIZENS).collect();
    let mut imports = Vec::new();
    for _ in 0..IMPORTS {
        imports.push(streams::create_import(&db, &citizens).await);
    }
    let naming = naming(&db, &template).await;
    let job_name = |import: i64| naming.job_name(import);
    let topic = |import: i64| naming.topic(&job_name(import));

    let alpha = Served::start(instance(&database, &template, "alpha")).await;
    let beta = Served::start(instance(&database, &template, "beta")).await;

    // Both own some jobs; either instance shows every job and its owner.
    let shared = eventually("both instances owning running jobs", WAIT, || async {
        let seen = owners(&alpha).await?;
        let who: BTreeSet<&str> = seen.values().map(String::as_str).collect();
        (who == BTreeSet::from(["alpha", "beta"])).then_some(seen)
    })
    .await;
    eprintln!("shared: {shared:?}");
    eventually("beta showing the same owners", WAIT, || async {
        (owners(&beta).await.as_ref() == Some(&shared)).then_some(())
    })
    .await;

    let producer = streams::producer(&template);
    for &import in &imports {
        produce(&producer, &topic(import), import, 0..300).await;
    }
    all_stored(&db, &imports, 300).await;

    // alpha leaves: beta takes every job over and resumes at the stored offsets.
    alpha.stop().await;
    for &import in &imports {
        produce(&producer, &topic(import), import, 300..600).await;
    }
    eventually("beta owning every job", WAIT, || async {
        let seen = owners(&beta).await?;
        seen.values().all(|o| o == "beta").then_some(())
    })
    .await;
    all_stored(&db, &imports, 600).await;

    // alpha again: it takes some jobs back, and beta stops and starts one of them.
    let alpha = Served::start(instance(&database, &template, "alpha")).await;
    // Two of alpha's jobs: one to stop, one to carry a marker.
    let (name, import, marked) =
        eventually("alpha owning two running jobs again", WAIT, || async {
            let seen = owners(&beta).await?;
            let mut alphas = imports
                .iter()
                .filter(|&&i| seen.get(&job_name(i)).is_some_and(|o| o == "alpha"));
            let (&first, &second) = (alphas.next()?, alphas.next()?);
            Some((job_name(first), first, second))
        })
        .await;
    // The listeners reconnect when PostgreSQL drops their connections.
    let before = eventually("two listeners", WAIT, || async {
        let pids = listeners(&db).await;
        (pids.len() == 2).then_some(pids)
    })
    .await;
    for pid in &before {
        db.execute("SELECT pg_terminate_backend($1)", &[pid])
            .await
            .unwrap();
    }
    eventually("two new listeners", WAIT, || async {
        let pids = listeners(&db).await;
        (pids.len() == 2 && pids.is_disjoint(&before)).then_some(())
    })
    .await;

    let stopped = control(&beta, &name, "stop").await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["desired"], "stopped");
    assert_eq!(stopped["owner"], "alpha");
    produce(&producer, &topic(import), import, 600..650).await;
    // A marker after them, to another of alpha's jobs: once alpha stored it,
    // alpha has been reading and reconciling well after those 50 arrived.
    produce(&producer, &topic(marked), marked, 600..601).await;
    all_stored(&db, &[marked], 601).await;
    let shown = get(&alpha, &format!("/jobs/{name}")).await;
    assert_eq!(
        (&shown["state"], &shown["lag"], &shown["owner"]),
        (&"stopped".into(), &50.into(), &"alpha".into()),
        "{shown}"
    );
    assert_eq!(streams::stored(&db, import).await, 600);

    let started = control(&beta, &name, "start").await;
    assert_eq!(started["desired"], "running", "{started}");
    all_stored(&db, &[import], 650).await;
    let shown = get(&beta, &format!("/jobs/{name}")).await;
    assert_eq!(
        (&shown["state"], &shown["owner"]),
        (&"running".into(), &"alpha".into())
    );
    for &other in imports.iter().filter(|&&i| i != import) {
        let each = if other == marked { 601 } else { 600 };
        assert_eq!(tally(&db, other).await, (each, each, 0), "import {other}");
    }

    // A post through beta to a stream alpha reads, asleep by now: beta's
    // notification wakes it on alpha.
    let slept = format!("insikt_job_slept_total{{job=\"{}\"}}", job_name(marked));
    eventually("alpha's marked stream asleep", WAIT, || async {
        alpha.metric(&slept).await.filter(|n| *n >= 1.0)
    })
    .await;
    let items: Vec<Value> = (0..10)
        .map(|i| streams::statement(&format!("via-beta-{i}"), marked, i % CITIZENS))
        .collect();
    let response = reqwest::Client::new()
        .post(beta.url(&format!("/imports/{marked}/statements")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&items)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    all_stored(&db, &[marked], 611).await;

    alpha.stop().await;
    beta.stop().await;
    // Nobody owns anything once both left.
    let left: i64 = db
        .query_one("SELECT count(*) FROM jobs WHERE owner IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    drop(database);
}

#[tokio::test]
async fn an_instance_whose_job_was_claimed_elsewhere_cannot_advance_it() {
    let database = TestDatabase::create().await;
    let mut template = common::test_config(&database);
    streams::configure(&mut template);
    let db = common::connect(&database.url).await;
    let citizens: Vec<i32> = (0..CITIZENS).collect();
    let import = streams::create_import(&db, &citizens).await;
    let naming = naming(&db, &template).await;
    let name = naming.job_name(import);
    let topic = naming.topic(&name);
    let producer = streams::producer(&template);

    let alpha = Served::start(instance(&database, &template, "alpha")).await;
    eventually("alpha running the job", WAIT, || async {
        let seen = owners_of(&alpha, 1).await?;
        (seen.get(&name)? == "alpha").then_some(())
    })
    .await;
    produce(&producer, &topic, import, 0..100).await;
    all_stored(&db, &[import], 100).await;

    // As if a rebalance had given the job to another instance while alpha
    // still believed it owned it: alpha's next batch must not commit.
    db.execute(
        "UPDATE jobs SET owner = 'intruder' WHERE name = $1",
        &[&name],
    )
    .await
    .unwrap();
    produce(&producer, &topic, import, 100..200).await;
    // alpha's job tries its next batch, finds the row no longer its own and lets go.
    let fenced = format!("insikt_job_fenced_total{{job=\"{name}\"}} 1");
    eventually("alpha's job fenced off", WAIT, || async {
        let metrics = reqwest::get(alpha.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metrics.lines().any(|line| line == fenced).then_some(())
    })
    .await;
    assert_eq!(tally(&db, import).await, (100, 100, 0));
    let committed: i64 = db
        .query_one(
            "SELECT next_offset FROM job_offsets WHERE job = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(committed, 100);

    // The next owner the group picks resumes exactly at the stored offset.
    alpha.stop().await;
    let gamma = Served::start(instance(&database, &template, "gamma")).await;
    all_stored(&db, &[import], 200).await;
    let shown = get(&gamma, &format!("/jobs/{name}")).await;
    assert_eq!(
        (&shown["owner"], &shown["committed_offset"]),
        (&"gamma".into(), &200.into())
    );
    gamma.stop().await;
    drop(database);
}

/// This deployment's names, as the service makes them.
async fn naming(db: &tokio_postgres::Client, config: &Config) -> Naming {
    Naming::new(
        common::deployment(db).await,
        &config.topic_prefix,
        &config.consumer_group,
    )
}

/// A topic already on the broker when the service starts (created by hand,
/// or by another instance of the deployment) is assigned to an instance before
/// its job's row exists, so that assignment claimed nothing; the instance
/// claims the job when it starts it, and the job runs and stores.
#[tokio::test]
async fn a_job_whose_topic_was_assigned_before_its_row_existed_is_claimed_and_runs() {
    let database = TestDatabase::create().await;
    let mut template = common::test_config(&database);
    streams::configure(&mut template);
    let db = common::connect(&database.url).await;
    let citizens: Vec<i32> = (0..CITIZENS).collect();
    // Import 2's topic, there before anything else.
    let naming = naming(&db, &template).await;
    let job_name = |import: i64| naming.job_name(import);
    let early = naming.topic(&job_name(2));
    insikt::kafka::Cluster::connect(&template.kafka_brokers, "insikt-test")
        .unwrap()
        .create_topic(&early, template.retention)
        .await
        .unwrap();

    let alpha = Served::start(instance(&database, &template, "alpha")).await;
    // Once a job created after the start runs, the group has also assigned
    // alpha the topics that matched its pattern from the start.
    let first = streams::create_import(&db, &citizens).await;
    eventually("alpha running the first job", WAIT, || async {
        let seen = owners_of(&alpha, 1).await?;
        (seen.get(&job_name(first))? == "alpha").then_some(())
    })
    .await;
    let second = streams::create_import(&db, &citizens).await;
    assert_eq!(second, 2);
    eventually("alpha running the job of the early topic", WAIT, || async {
        let seen = owners_of(&alpha, 2).await?;
        (seen.get(&job_name(second))? == "alpha").then_some(())
    })
    .await;
    produce(&streams::producer(&template), &early, second, 0..50).await;
    all_stored(&db, &[second], 50).await;
    alpha.stop().await;
    drop(database);
}

/// One of two instances killed (SIGKILL: no goodbye to the group, no
/// release of its jobs) in the middle of the streams: the survivor takes
/// every job over once the group's session timeout expires, and every
/// stream ends up stored exactly once. Prints the time to recover.
#[tokio::test]
async fn when_one_of_two_instances_is_killed_the_survivor_stores_every_stream_exactly_once() {
    const EACH: usize = 3000;
    let database = TestDatabase::create().await;
    let mut template = common::test_config(&database);
    streams::configure(&mut template);
    // The broker's shortest session (group.min.session.timeout.ms): the
    // hand-over after a crash waits it out.
    template.kafka_session_timeout = Duration::from_secs(6);
    template.kafka_heartbeat = Duration::from_millis(500);
    let db = common::connect(&database.url).await;
    let citizens: Vec<i32> = (0..CITIZENS).collect();
    let mut imports = Vec::new();
    for _ in 0..4 {
        imports.push(streams::create_import(&db, &citizens).await);
    }
    let naming = naming(&db, &template).await;
    let port = streams::free_port();
    let mut victim = streams::binary(&database, &template, "victim", port);
    let survivor = Served::start(instance(&database, &template, "survivor")).await;
    let seen = eventually("both instances running jobs", WAIT, || async {
        let seen = owners_of(&survivor, imports.len()).await?;
        let victims = seen.values().filter(|o| *o == "victim").count();
        (victims > 0 && victims < imports.len()).then_some(seen)
    })
    .await;
    eprintln!("owners before the kill: {seen:?}");

    let producer = streams::producer(&template);
    let feeding = {
        let (imports, naming) = (imports.clone(), naming.clone());
        tokio::spawn(async move {
            for chunk in 0..EACH / 250 {
                for &import in &imports {
                    let topic = naming.topic(&naming.job_name(import));
                    produce(&producer, &topic, import, chunk * 250..(chunk + 1) * 250).await;
                }
            }
        })
    };
    eventually("a quarter stored", WAIT, || async {
        let stored: i64 = db
            .query_one("SELECT count(*) FROM statements", &[])
            .await
            .unwrap()
            .get(0);
        (stored as usize > imports.len() * EACH / 4).then_some(())
    })
    .await;
    victim.start_kill().unwrap();
    victim.wait().await.unwrap();
    let killed = std::time::Instant::now();
    eventually("the survivor running every job", WAIT, || async {
        let seen = owners_of(&survivor, imports.len()).await?;
        seen.values().all(|o| o == "survivor").then_some(())
    })
    .await;
    eprintln!(
        "SIGKILL hand-over: every job running on the survivor {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    feeding.await.unwrap();
    all_stored(&db, &imports, EACH as i64).await;
    survivor.stop().await;
    drop(database);
}

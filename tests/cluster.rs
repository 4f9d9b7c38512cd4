//! Faults of a replicated Kafka cluster, as production runs it: three
//! brokers, replication factor 3, `min.insync.replicas=2`
//! (`scripts/services.sh up --brokers 3`). A client posts statements through
//! the API throughout, retrying what is refused with the documented 503
//! (`kafka_unavailable`); any other 5xx fails the test. Every statement
//! accepted must be stored exactly once, and a refused one never.
//!
//! These kill brokers, so they are `#[ignore]`d and run alone against the
//! cluster named by `INSIKT_KAFKA_BROKERS` (broker `n` of the list is node
//! id `n`, as services.sh numbers them):
//! `INSIKT_KAFKA_BROKERS=127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094
//!  cargo test --test cluster -- --ignored --test-threads=1`.
//! Each prints its figures (statements, 503s, time to catch up) for the
//! README's table.
// A test may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::streams::{self, eventually};
use common::{json, TestApp};
use rdkafka::consumer::{BaseConsumer, Consumer};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(240);
const PER_REQUEST: usize = 1000;
/// The transactional producer's commit deadline (src/kafka/transactions.rs)
/// twice (a request may wait behind a transaction giving up), plus the work.
const LONGEST_ANSWER: Duration = Duration::from_secs(25);

/// `scripts/services.sh <args>`, which must succeed; awaited, so the app
/// under test goes on serving on this runtime meanwhile.
async fn services(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    let status = tokio::process::Command::new("bash")
        .arg(script)
        .args(args)
        .status()
        .await
        .expect("scripts/services.sh runs");
    assert!(status.success(), "scripts/services.sh {args:?}: {status}");
}

async fn crash_broker(node: i32) {
    services(&["crash", "kafka", "--node", &node.to_string()]).await;
}

async fn stop_broker(node: i32) {
    services(&["down", "kafka", "--node", &node.to_string()]).await;
}

/// Starts whichever brokers are down.
async fn cluster_up() {
    services(&["up", "kafka", "--brokers", "3"]).await;
}

fn brokers() -> String {
    insikt::config::Config::from_env().kafka_brokers
}

/// A metadata client of the test's own.
fn metadata_client() -> BaseConsumer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("allow.auto.create.topics", "false")
        .create()
        .unwrap()
}

/// Per partition of `topic` (every topic when `None`): leader, replicas, in sync.
async fn partitions(topic: Option<&str>) -> Vec<(String, i32, i32, usize, usize)> {
    let topic = topic.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let client = metadata_client();
        let metadata = client
            .fetch_metadata(topic.as_deref(), Duration::from_secs(10))
            .unwrap();
        metadata
            .topics()
            .iter()
            .flat_map(|t| {
                t.partitions().iter().map(|p| {
                    (
                        t.name().to_owned(),
                        p.id(),
                        p.leader(),
                        p.replicas().len(),
                        p.isr().len(),
                    )
                })
            })
            .collect()
    })
    .await
    .unwrap()
}

/// The broker leading partition 0 of `topic`.
async fn leader(topic: &str) -> i32 {
    let found = partitions(Some(topic)).await;
    let (_, _, leader, replicas, _) = found
        .iter()
        .find(|p| p.0 == topic && p.1 == 0)
        .unwrap_or_else(|| panic!("no partition 0 of {topic}: {found:?}"));
    assert_eq!(*replicas, 3, "{topic} is not replicated three times");
    assert!(*leader > 0, "{topic} has no leader");
    *leader
}

/// Waits until every partition of the cluster has all its replicas in sync.
async fn all_in_sync() {
    eventually("every partition in sync", WAIT, || async {
        let all = partitions(None).await;
        all.iter().all(|p| p.2 >= 0 && p.4 == p.3).then_some(())
    })
    .await;
}

/// Fails unless the cluster has three brokers: these tests mean nothing on one.
async fn require_cluster() {
    let count = tokio::task::spawn_blocking(|| {
        metadata_client()
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|m| m.brokers().len())
    })
    .await
    .unwrap()
    .unwrap_or(0);
    assert_eq!(
        count,
        3,
        "tests/cluster.rs needs the three-broker cluster (scripts/services.sh up kafka --brokers 3) \
         named by INSIKT_KAFKA_BROKERS, not {}",
        brokers()
    );
    all_in_sync().await;
}

/// Kafka's coordinator of a `transactional.id`: the leader of partition
/// `abs(hash) % partitions` of `__transaction_state`, the hash Java's
/// `String.hashCode` (Kafka's `TransactionStateManager.partitionFor`).
async fn transaction_coordinator(transactional_id: &str) -> i32 {
    let log = partitions(Some("__transaction_state")).await;
    let count = log.len() as i32;
    assert!(count > 0, "no transaction log yet");
    let hash = transactional_id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let partition = (hash & 0x7fff_ffff) % count;
    log.iter().find(|p| p.1 == partition).unwrap().2
}

/// What a posting client saw.
#[derive(Debug, Default)]
struct Posted {
    /// Statements accepted (202).
    accepted: usize,
    /// Requests answered 503 `kafka_unavailable` (each retried until accepted).
    refused: usize,
    slowest: Duration,
    /// The longest time between two accepted requests.
    longest_pause: Duration,
}

/// A client posting requests of [`PER_REQUEST`] statements (ids
/// `{prefix}{n}`) to `import`, each retried after a 503 until accepted,
/// until `requests` are accepted or `stop` is set, `pause` between requests.
fn post(
    app: &TestApp,
    import: i64,
    prefix: &'static str,
    requests: usize,
    stop: Arc<AtomicBool>,
    pause: Duration,
) -> tokio::task::JoinHandle<Posted> {
    let client = app.client.clone();
    let path = app.url(&format!("/imports/{import}/statements"));
    tokio::spawn(async move {
        let mut posted = Posted::default();
        let mut last_accepted = Instant::now();
        for request in 0..requests {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let items: Vec<Value> = (request * PER_REQUEST..(request + 1) * PER_REQUEST)
                .map(|i| {
                    json!({"statement_id": format!("{prefix}{i}"), "citizen_id": i % 100, "course": "rust"})
                })
                .collect();
            loop {
                let started = Instant::now();
                let response = client
                    .request(Method::POST, &path)
                    .json(&items)
                    .send()
                    .await
                    .unwrap();
                posted.slowest = posted.slowest.max(started.elapsed());
                let (status, body) = json(response).await;
                match status {
                    202 => {
                        posted.accepted += PER_REQUEST;
                        posted.longest_pause = posted.longest_pause.max(last_accepted.elapsed());
                        last_accepted = Instant::now();
                        break;
                    }
                    503 => {
                        assert_eq!(common::error_code(&body), "kafka_unavailable", "{body}");
                        posted.refused += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    _ => panic!("request {request}: {status} {body}"),
                }
            }
            tokio::time::sleep(pause).await;
        }
        posted
    })
}

/// A fresh app and import with a running job on the cluster; the job's
/// topic. `instance` names the app's instance (and so its `transactional.id`).
async fn app_with_job(instance: &str) -> (TestApp, i64, String, String) {
    require_cluster().await;
    let instance = instance.to_owned();
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        config.instance_id = Some(instance);
    })
    .await;
    let db = app.db().await;
    let citizens: Vec<i32> = (0..100).collect();
    let import = streams::create_import(&db, &citizens).await;
    let name = common::job_name(&db, import).await;
    let topic = streams::running_topic(&db, &name, WAIT).await;
    (app, import, name, topic)
}

async fn stored(app: &TestApp, import: i64) -> i64 {
    streams::stored(&app.db().await, import).await
}

/// Every statement posted under `prefix`, `0..count`, stored once, none
/// other; the counts demand reads agree; the job runs and has read all.
async fn exactly_once(app: &TestApp, import: i64, name: &str, expected: &[(&str, usize)]) {
    let total: usize = expected.iter().map(|(_, n)| n).sum();
    eventually("every statement stored", WAIT, || async {
        (stored(app, import).await == total as i64).then_some(())
    })
    .await;
    let mut wanted: Vec<String> = expected
        .iter()
        .flat_map(|(prefix, n)| (0..*n).map(move |i| format!("{prefix}{i}")))
        .collect();
    wanted.sort();
    let db = app.db().await;
    assert!(
        streams::stored_ids(&db, import).await == wanted,
        "the stored statements are not those accepted"
    );
    streams::counts_match_statements(&db, import).await;
    let job = eventually("the job caught up", WAIT, || async {
        let job = app.job(name).await;
        (job["lag"] == 0).then_some(job)
    })
    .await;
    assert_eq!(job["state"], "running", "{job}");
}

/// Waits until more than `count` statements are stored.
async fn stored_past(app: &TestApp, import: i64, count: i64) {
    eventually("statements stored", WAIT, || async {
        (stored(app, import).await > count).then_some(())
    })
    .await;
}

/// One test's figures; `caught_up` counts from `since` (the brokers'
/// restart command, or the end of the load).
fn report(test: &str, posted: &Posted, caught_up: Duration, since: &str) {
    eprintln!(
        "[cluster] {test}: {} statements accepted; {} requests answered 503 and retried; \
         slowest answer {:.1} s; longest pause between accepted requests {:.1} s; \
         every statement stored {:.1} s after {since}",
        posted.accepted,
        posted.refused,
        posted.slowest.as_secs_f64(),
        posted.longest_pause.as_secs_f64(),
        caught_up.as_secs_f64(),
    );
}

/// Two of three brokers die: with one replica left of `min.insync.replicas=2`
/// the cluster refuses writes, and the API answers 503 within the commit
/// deadline while `/readyz` says Kafka is not writable (one broker down, it
/// only reports the under-replicated partitions). What was refused is not
/// visible, ever; the brokers back, the client's retries are stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "kills brokers of the three-broker cluster: scripts/test.sh runs it alone"]
async fn two_brokers_down_refuse_writes_and_show_nothing_half_done() {
    const BEFORE: usize = 10;
    let (app, import, name, topic) = app_with_job("cluster-two-down").await;
    let stop = Arc::new(AtomicBool::new(false));
    let before = post(&app, import, "a", BEFORE, stop.clone(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(before.accepted, BEFORE * PER_REQUEST);
    stored_past(&app, import, (BEFORE * PER_REQUEST) as i64 - 1).await;

    let first = leader(&topic).await;
    let second = first % 3 + 1;
    crash_broker(first).await;
    let readiness = eventually(
        "readyz to report the under-replicated topic",
        WAIT,
        || async {
            let (status, body) = json(app.get("/readyz").await).await;
            let short = body["data"]["kafka_replication"]["under_replicated"].to_string();
            (status == 200 && short.contains(&topic)).then_some(body)
        },
    )
    .await;
    assert_eq!(readiness["data"]["checks"]["kafka"], "ok", "{readiness}");
    crash_broker(second).await;
    let down = Instant::now();
    // (A metadata request that met the broker just killed may first say
    // `unavailable`: 503 too.)
    let readiness = eventually("readyz to refuse writes", WAIT, || async {
        let (status, body) = json(app.get("/readyz").await).await;
        (status == 503 && body["error"]["fields"]["kafka"] == "not_writable").then_some(body)
    })
    .await;
    let short = readiness["error"]["fields"]["kafka_replication"]["not_writable"].to_string();
    assert!(short.contains(&topic), "{readiness}");

    // Requests never retried: refused, and never to be seen.
    let mut refused = 0;
    let mut slowest = Duration::ZERO;
    for request in 0..3 {
        let items: Vec<Value> = (request * PER_REQUEST..(request + 1) * PER_REQUEST)
            .map(|i| json!({"statement_id": format!("x{i}"), "citizen_id": i % 100, "course": "rust"}))
            .collect();
        let started = Instant::now();
        let (status, body) = app.post_statements(import, &json!(items)).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, 503, "{body}");
        assert_eq!(common::error_code(&body), "kafka_unavailable", "{body}");
        refused += 1;
    }
    assert!(slowest < LONGEST_ANSWER, "a refusal took {slowest:?}");
    assert_eq!(stored(&app, import).await, (BEFORE * PER_REQUEST) as i64);

    // A client retrying through the outage: refused until the brokers are back.
    let retried = post(&app, import, "b", 5, stop.clone(), Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let back = Instant::now();
    cluster_up().await;
    let mut posted = retried.await.unwrap();
    posted.refused += refused;
    posted.slowest = posted.slowest.max(slowest);
    exactly_once(
        &app,
        import,
        &name,
        &[("a", BEFORE * PER_REQUEST), ("b", 5 * PER_REQUEST)],
    )
    .await;
    let caught_up = back.elapsed();
    all_in_sync().await;
    eprintln!(
        "[cluster] two brokers down for {:.1} s; slowest refusal {:.1} s",
        back.duration_since(down).as_secs_f64(),
        slowest.as_secs_f64()
    );
    report(
        "two brokers down",
        &posted,
        caught_up,
        "the restart command",
    );
    assert!(posted.slowest < LONGEST_ANSWER, "{:?}", posted.slowest);
    let (status, body) = json(app.get("/readyz").await).await;
    assert_eq!(status, 200, "{body}");
}

/// SIGKILL of the leader of the job's partition while 100,000 statements
/// are posted through the API; the broker comes back 10 s later. Another
/// replica takes over, the producer and the job follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "kills brokers of the three-broker cluster: scripts/test.sh runs it alone"]
async fn the_partition_leader_killed_mid_stream_loses_and_doubles_nothing() {
    const REQUESTS: usize = 100;
    let (app, import, name, topic) = app_with_job("cluster-leader").await;
    let posting = post(
        &app,
        import,
        "s",
        REQUESTS,
        Arc::new(AtomicBool::new(false)),
        Duration::ZERO,
    );
    stored_past(&app, import, 10_000).await;
    let killed = leader(&topic).await;
    crash_broker(killed).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let back = Instant::now();
    cluster_up().await;
    let posted = posting.await.unwrap();
    assert_eq!(posted.accepted, REQUESTS * PER_REQUEST);
    exactly_once(&app, import, &name, &[("s", REQUESTS * PER_REQUEST)]).await;
    let caught_up = back.elapsed();
    report(
        &format!("leader (broker {killed}) killed"),
        &posted,
        caught_up,
        "the restart command",
    );
    all_in_sync().await;
    assert!(posted.slowest < LONGEST_ANSWER, "{:?}", posted.slowest);
}

/// SIGKILL of the broker coordinating the transactions of the instance's
/// producer, mid-stream: another broker becomes coordinator and the
/// producer's open transaction is aborted or completed, never half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "kills brokers of the three-broker cluster: scripts/test.sh runs it alone"]
async fn the_transaction_coordinator_killed_mid_stream_loses_and_doubles_nothing() {
    const REQUESTS: usize = 40;
    let instance = "cluster-coordinator";
    let (app, import, name, _) = app_with_job(instance).await;
    let deployment = common::deployment(&app.db().await).await;
    let transactional_id = insikt::jobs::Naming::new(deployment, "", "").transactional_id(instance);
    let posting = post(
        &app,
        import,
        "s",
        REQUESTS,
        Arc::new(AtomicBool::new(false)),
        Duration::ZERO,
    );
    stored_past(&app, import, 5_000).await;
    let coordinator = transaction_coordinator(&transactional_id).await;
    crash_broker(coordinator).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let back = Instant::now();
    cluster_up().await;
    let posted = posting.await.unwrap();
    exactly_once(&app, import, &name, &[("s", REQUESTS * PER_REQUEST)]).await;
    let caught_up = back.elapsed();
    report(
        &format!("transaction coordinator (broker {coordinator}) killed"),
        &posted,
        caught_up,
        "the restart command",
    );
    all_in_sync().await;
    assert!(posted.slowest < LONGEST_ANSWER, "{:?}", posted.slowest);
}

/// Each broker in turn stopped (SIGTERM: a controlled shutdown moves its
/// leaderships first) and started, the next only once every partition is
/// back in sync, under a steady posting load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts every broker of the three-broker cluster: scripts/test.sh runs it alone"]
async fn a_rolling_restart_of_the_brokers_loses_and_doubles_nothing() {
    const MOST: usize = 10_000;
    let (app, import, name, _) = app_with_job("cluster-rolling").await;
    let stop = Arc::new(AtomicBool::new(false));
    let posting = post(
        &app,
        import,
        "s",
        MOST,
        stop.clone(),
        Duration::from_millis(100),
    );
    stored_past(&app, import, 2_000).await;
    let started = Instant::now();
    for node in 1..=3 {
        stop_broker(node).await;
        cluster_up().await;
        all_in_sync().await;
    }
    let rolled = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let back = Instant::now();
    let posted = posting.await.unwrap();
    assert!(
        posted.accepted < MOST * PER_REQUEST,
        "the load ended before the restart did"
    );
    exactly_once(&app, import, &name, &[("s", posted.accepted)]).await;
    let caught_up = back.elapsed();
    eprintln!(
        "[cluster] rolling restart of three brokers took {:.1} s",
        rolled.as_secs_f64()
    );
    report("rolling restart", &posted, caught_up, "the load stopped");
    assert!(posted.slowest < LONGEST_ANSWER, "{:?}", posted.slowest);
}

// ---------------------------------------------------------------------------
// A rolling upgrade of insikt by the playbook
// ---------------------------------------------------------------------------

const ROLLING_DB: &str = "insikt_rolling";
const ROLLING_TOKEN: &str = "rolling-upgrade-test-write-token";
const ROLLING_INSTANCES: [(&str, u16); 2] =
    [("insikt-rolling-a", 18091), ("insikt-rolling-b", 18092)];

/// Stops and removes both instances of ansible/inventories/local-rolling
/// and their database: before the test (a left-over would make the first
/// run a no-op) and after it.
async fn remove_rolling() {
    for (instance, _) in ROLLING_INSTANCES {
        let script = format!(
            "[[ -x /opt/{instance}/bin/insikt-ctl ]] && /opt/{instance}/bin/insikt-ctl stop >/dev/null; \
             rm -rf /opt/{instance} /etc/{instance} /var/lib/{instance} /var/log/{instance} /run/{instance}; \
             id {instance} >/dev/null 2>&1 && userdel {instance}; \
             getent group {instance} >/dev/null && groupdel {instance}; true"
        );
        let status = tokio::process::Command::new("bash")
            .args(["-c", &script])
            .status()
            .await
            .unwrap();
        assert!(status.success(), "removing {instance}");
    }
    common::admin_client()
        .await
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {ROLLING_DB} WITH (FORCE)"
        ))
        .await
        .unwrap();
}

/// `ansible-playbook -i inventories/local-rolling/hosts.yml site.yml` with
/// `binary` as the build; its PLAY RECAP lines.
async fn rolling_playbook(binary: &std::path::Path, database_url: &str) -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let playbook = format!("{root}/.ops/venv/bin/ansible-playbook");
    assert!(
        std::path::Path::new(&playbook).exists(),
        "{playbook} is missing: scripts/ops-check.sh --static installs it"
    );
    let output = tokio::process::Command::new(&playbook)
        .current_dir(format!("{root}/ansible"))
        .args(["-i", "inventories/local-rolling/hosts.yml", "site.yml"])
        .env("INSIKT_BINARY", binary)
        .env("INSIKT_ROLLING_DATABASE_URL", database_url)
        .env("INSIKT_KAFKA_BROKERS", brokers())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ansible-playbook failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter(|l| l.starts_with("rolling-"))
        .map(str::to_owned)
        .collect()
}

/// What the rolling upgrade's client saw.
#[derive(Debug, Default)]
struct Rolled {
    accepted: usize,
    refused: usize,
    /// Requests that met a closed port or a dropped connection (retried on
    /// the other instance, as a load balancer would).
    unreachable: usize,
    longest_pause: Duration,
}

/// Posts requests of 200 statements (`r{n}`) to the instances in turn until
/// `stop`; a request refused (503) or unanswered goes to the other instance.
fn post_rolling(import: i64, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Rolled> {
    const PER: usize = 200;
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut rolled = Rolled::default();
        let mut last_accepted = Instant::now();
        let mut target = 0;
        let mut request = 0;
        while !stop.load(Ordering::Relaxed) {
            let items: Vec<Value> = (request * PER..(request + 1) * PER)
                .map(|i| json!({"statement_id": format!("r{i}"), "citizen_id": i % 100, "course": "rust"}))
                .collect();
            loop {
                let port = ROLLING_INSTANCES[target].1;
                let sent = client
                    .post(format!(
                        "http://127.0.0.1:{port}/imports/{import}/statements"
                    ))
                    .bearer_auth(ROLLING_TOKEN)
                    .json(&items)
                    .send()
                    .await;
                target = (target + 1) % ROLLING_INSTANCES.len();
                let response = match sent {
                    Ok(response) => response,
                    Err(_) => {
                        rolled.unreachable += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (status, body) = json(response).await;
                match status {
                    202 => {
                        rolled.accepted += PER;
                        rolled.longest_pause = rolled.longest_pause.max(last_accepted.elapsed());
                        last_accepted = Instant::now();
                        break;
                    }
                    503 => {
                        rolled.refused += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => panic!("request {request} to port {port}: {status} {body}"),
                }
            }
            request += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rolled
    })
}

/// Two instances deployed by ansible/ (connection local), a client posting
/// throughout, then the playbook again with a new build: `serial: 1`
/// restarts one instance at a time (SIGTERM: it drains and hands its jobs
/// over) and waits for its /readyz before the next. No statement lost or
/// doubled; the longest pause the client saw is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "deploys two instances with Ansible and upgrades them: scripts/test.sh runs it alone"]
async fn a_rolling_upgrade_by_the_playbook_loses_and_doubles_nothing() {
    require_cluster().await;
    remove_rolling().await;
    let url = common::database_url(ROLLING_DB);
    let builds =
        std::env::temp_dir().join(format!("insikt-rolling-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&builds).unwrap();
    let first = builds.join("insikt-1");
    let second = builds.join("insikt-2");
    let binary = std::fs::read(env!("CARGO_BIN_EXE_insikt")).unwrap();
    std::fs::write(&first, &binary).unwrap();
    // Another build as the playbook sees it: other bytes (a trailing one,
    // which the ELF loader ignores), so the copy changes and the handler restarts.
    let mut changed = binary;
    changed.push(0);
    std::fs::write(&second, &changed).unwrap();
    for path in [&first, &second] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let started = Instant::now();
    let recap = rolling_playbook(&first, &url).await;
    eprintln!(
        "[cluster] rolling: deployed in {:.1} s: {recap:?}",
        started.elapsed().as_secs_f64()
    );
    let db = common::connect(&url).await;
    let citizens: Vec<i32> = (0..100).collect();
    let import = streams::create_import(&db, &citizens).await;
    let name = common::job_name(&db, import).await;
    streams::running_topic(&db, &name, WAIT).await;

    let stop = Arc::new(AtomicBool::new(false));
    let posting = post_rolling(import, stop.clone());
    eventually("statements stored", WAIT, || async {
        (streams::stored(&db, import).await > 2_000).then_some(())
    })
    .await;
    let upgrade = Instant::now();
    let recap = rolling_playbook(&second, &url).await;
    let upgraded = upgrade.elapsed();
    for line in &recap {
        assert!(
            line.contains("changed=") && !line.contains("changed=0 "),
            "not upgraded: {line}"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let rolled = posting.await.unwrap();
    let stored = eventually("every statement stored", WAIT, || async {
        let stored = streams::stored(&db, import).await;
        (stored >= rolled.accepted as i64).then_some(stored)
    })
    .await;
    let mut wanted: Vec<String> = (0..rolled.accepted).map(|i| format!("r{i}")).collect();
    wanted.sort();
    let ids = streams::stored_ids(&db, import).await;
    let lost = wanted
        .iter()
        .filter(|id| ids.binary_search(id).is_err())
        .count();
    // Stored but never accepted: a refused request's statements showing up.
    let unexpected = ids
        .iter()
        .filter(|id| wanted.binary_search(id).is_err())
        .count();
    eprintln!(
        "[cluster] rolling upgrade of two instances by the playbook ({:.1} s): {} statements \
         accepted, {stored} stored, {lost} lost, {unexpected} not accepted but stored; {} requests \
         answered 503, {} unanswered (retried on the other instance); longest pause {:.1} s",
        upgraded.as_secs_f64(),
        rolled.accepted,
        rolled.refused,
        rolled.unreachable,
        rolled.longest_pause.as_secs_f64()
    );
    assert_eq!(ids, wanted, "the stored statements are not those accepted");
    // Doubled would show as a count above its rows.
    streams::counts_match_statements(&db, import).await;
    drop(db);
    remove_rolling().await;
    let _ = std::fs::remove_dir_all(&builds);
}

//! The archive at expiry on both backends (a directory and the S3-compatible
//! server `scripts/services.sh` runs on 127.0.0.1:9000), its listing and
//! downloads, replay into another import (exactly once), the S3 server
//! stopped in the middle of an upload, and a SIGKILL in the middle of an archive.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::streams::{self, eventually};
use common::{json, TestApp, TestDatabase, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

/// The shared S3 server of `scripts/services.sh` and its bucket.
const S3_ENDPOINT: &str = "http://127.0.0.1:9000";
const S3_BUCKET: &str = "insikt";

/// The AWS variables the app's S3 client reads (moto takes any keys).
fn aws_env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "insikt-test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "insikt-test".to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ]
}

/// In this process only the shared server is ever used: the same values
/// for every test, so setting them concurrently is harmless.
fn use_shared_s3() {
    for (name, value) in aws_env(S3_ENDPOINT) {
        std::env::set_var(name, value);
    }
}

/// Creates `bucket` (moto answers 200 when it already exists, and checks no signature).
async fn create_bucket(endpoint: &str, bucket: &str) {
    let response = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("no S3 server at {endpoint} (scripts/services.sh up s3): {e}"));
    assert!(response.status().is_success(), "{:?}", response.status());
}

async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.request(method, path).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    json(request.send().await.unwrap()).await
}

enum Backend {
    Directory,
    S3,
}

/// 5 statements stored, then the job stopped and 7 more produced: expiry
/// archives exactly those 7, the listing and the download show them, the
/// manifest counts them, and a replay into a new import stores exactly
/// them, once however often it runs.
async fn archive_and_replay(backend: Backend) {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let archive_url = match backend {
        Backend::Directory => None,
        Backend::S3 => {
            use_shared_s3();
            create_bucket(S3_ENDPOINT, S3_BUCKET).await;
            Some(format!("s3://{S3_BUCKET}/test-{unique}"))
        }
    };
    let archive_dir = std::env::temp_dir().join(format!("insikt-archive-{unique}"));
    let store_url = archive_url
        .clone()
        .unwrap_or_else(|| insikt::archive::ArchiveStore::directory_url(&archive_dir));
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        config.retention = Duration::from_secs(20);
        config.archive_dir = archive_dir.clone();
        config.archive_url = archive_url.clone();
    })
    .await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1, 2]).await;
    let name = common::job_name(&db, import).await;
    let consumed: Vec<Value> = (0..5)
        .map(|i| streams::statement(&format!("c{i}"), import, 1))
        .collect();
    app.post_accepted(import, &Value::Array(consumed)).await;
    eventually("5 stored", WAIT, || async {
        (app.job(&name).await["committed_offset"] == 6).then_some(())
    })
    .await;
    let (status, body) = admin(&app, Method::POST, &format!("/jobs/{name}/stop"), None).await;
    assert_eq!(status, 200, "{body}");
    // Citizen 2 as well: it must arrive in the replay's counts.
    let rest: Vec<Value> = (0..7)
        .map(|i| streams::statement(&format!("r{i}"), import, 1 + i % 2))
        .collect();
    app.post_accepted(import, &Value::Array(rest)).await;
    eventually("expiry", WAIT, || async {
        (app.job(&name).await["state"] == "expired").then_some(())
    })
    .await;
    assert_eq!(streams::stored(&db, import).await, 5);

    // The listing: offsets, count, size and checksum; links for the admin only.
    let (status, body) = json(app.get(&format!("/jobs/{name}/archives")).await).await;
    assert_eq!(status, 200, "{body}");
    let objects = body["data"].as_array().unwrap().clone();
    assert_eq!(objects.len(), 1, "{body}");
    let object = &objects[0];
    assert_eq!(
        (
            &object["partition"],
            &object["from_offset"],
            &object["to_offset"],
            &object["count"]
        ),
        (&json!(0), &json!(6), &json!(14), &json!(7)),
        "{object}"
    );
    assert!(object.get("download").is_none(), "{object}");
    // Named within the archive: neither the store's location nor a local path.
    assert_eq!(
        object["object"],
        format!("{name}/0-6-14.ndjson.gz").as_str()
    );
    assert!(object.get("url").is_none(), "{object}");
    assert!(!object.to_string().contains(&store_url), "{object}");
    let (status, body) = admin(&app, Method::GET, &format!("/jobs/{name}/archives"), None).await;
    assert_eq!(status, 200, "{body}");
    let link = body["data"][0]["download"].as_str().unwrap().to_owned();
    assert_eq!(link, format!("/jobs/{name}/archives/0/6"));
    let response = app.get(&link).await;
    assert_eq!(response.status(), 401);
    let response = app
        .request(Method::GET, &link)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len() as i64, object["bytes"].as_i64().unwrap());
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(object["sha256"], digest.as_str());
    let lines = streams::gunzip_lines(&bytes);
    assert_eq!(
        streams::statement_ids(&lines),
        (0..7).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );

    // The manifest: what was produced and not stored.
    let store = insikt::archive::ArchiveStore::from_url(&store_url).unwrap();
    let manifest = store.manifest(&name).await.unwrap();
    assert_eq!(manifest.count, 12 - 5);
    assert_eq!(manifest.import, import);
    assert_eq!(manifest.objects.len(), 1);
    assert_eq!(manifest.objects[0].sha256, digest);

    // Replay into a new import with both citizens: exactly the 7, once.
    let target = streams::create_import(&db, &[1, 2]).await;
    let path = format!("/imports/{target}/replay");
    let (status, body) = json(
        app.send_json(Method::POST, &path, &json!({"job": name}))
            .await,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = admin(&app, Method::POST, &path, Some(json!({"job": name}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["data"]["read"],
            &body["data"]["stored"],
            &body["data"]["duplicates"]
        ),
        (&json!(7), &json!(7), &json!(0)),
        "{body}"
    );
    let stored = streams::stored_ids(&db, target).await;
    assert_eq!(stored, (0..7).map(|i| format!("r{i}")).collect::<Vec<_>>());
    let (status, body) = admin(&app, Method::POST, &path, Some(json!({"job": name}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["data"]["stored"], &body["data"]["duplicates"]),
        (&json!(0), &json!(7)),
        "{body}"
    );
    assert_eq!(streams::stored(&db, target).await, 7);
    // Counted once, per citizen (r0, r2, r4, r6 for citizen 1; r1, r3, r5 for 2).
    let counts: Vec<(i32, i64)> = db
        .query(
            "SELECT citizen_id, statements FROM statement_counts \
              WHERE import_id = $1 AND course IS NOT NULL ORDER BY citizen_id",
            &[&target],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(counts, vec![(1, 4), (2, 3)]);

    // A replay into an import without citizen 2: those are dead letters.
    let partial = streams::create_import(&db, &[1]).await;
    let path = format!("/imports/{partial}/replay");
    let (status, body) = admin(&app, Method::POST, &path, Some(json!({"job": name}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["data"]["stored"], &body["data"]["dead_letters"]),
        (&json!(4), &json!(3)),
        "{body}"
    );
    let (status, body) = admin(
        &app,
        Method::POST,
        "/imports/999999/replay",
        Some(json!({"job": name})),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // The command line: straight from the store into PostgreSQL.
    let cli_target = streams::create_import(&db, &[1, 2]).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .args([
            "archive",
            "replay",
            &name,
            "--into",
            &cli_target.to_string(),
        ])
        .env("INSIKT_DATABASE_URL", &app.database.url)
        .env("INSIKT_ARCHIVE_URL", &store_url)
        .env("INSIKT_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("7 records read: 7 stored"), "{stdout}");
    assert_eq!(streams::stored(&db, cli_target).await, 7);
    app.stop().await;
}

#[tokio::test]
async fn expiry_archives_to_a_directory_and_replays_exactly_once() {
    archive_and_replay(Backend::Directory).await;
}

#[tokio::test]
async fn expiry_archives_to_s3_and_replays_exactly_once() {
    archive_and_replay(Backend::S3).await;
}

/// A moto server of this test's own, on its own port: the only service a
/// test may stop.
struct OwnS3 {
    port: u16,
    child: Option<tokio::process::Child>,
}

fn moto_server() -> String {
    std::env::var("INSIKT_MOTO_SERVER")
        .unwrap_or_else(|_| "/var/lib/insikt-dev/s3/venv/bin/moto_server".to_owned())
}

impl OwnS3 {
    async fn start(port: u16) -> Self {
        let mut own = Self { port, child: None };
        own.restart().await;
        own
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = tokio::process::Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server (scripts/services.sh up s3 installs it)");
        self.child = Some(child);
        let endpoint = self.endpoint();
        eventually("moto answers", Duration::from_secs(30), || async {
            reqwest::get(&endpoint).await.ok().map(|_| ())
        })
        .await;
        // Empty after every start: moto keeps everything in memory.
        create_bucket(&endpoint, S3_BUCKET).await;
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

/// The real binary with an S3 archive on `endpoint`: a process to kill.
fn service(
    database: &TestDatabase,
    port: u16,
    endpoint: &str,
    prefix: &str,
    object_offsets: u64,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .env("INSIKT_DATABASE_URL", &database.url)
        .env("INSIKT_LISTEN", format!("127.0.0.1:{port}"))
        .env("INSIKT_NO_MIGRATE", "true")
        .env("INSIKT_RETENTION", "20s")
        .env("INSIKT_ARCHIVE_URL", format!("s3://{S3_BUCKET}/{prefix}"))
        .env("INSIKT_ARCHIVE_OBJECT_OFFSETS", object_offsets.to_string())
        .env("INSIKT_RECONCILE_SECS", "1")
        .env("INSIKT_JOB_BATCH_MS", "50")
        .env("INSIKT_JOB_BACKOFF", "200ms")
        .env("INSIKT_JOB_BACKOFF_MAX", "2s")
        .env("INSIKT_INSTANCE_ID", format!("archive-{port}"))
        .env("INSIKT_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("INSIKT_SECRET", "test")
        .env("INSIKT_LOG", "warn")
        .envs(aws_env(endpoint))
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the insikt binary starts")
}

async fn get_json(url: &str) -> Option<Value> {
    let response = reqwest::get(url).await.ok()?;
    response.json().await.ok()
}

async fn produce(port: u16, import: i64, ids: impl Iterator<Item = String>) {
    let items: Vec<Value> = ids.map(|id| streams::statement(&id, import, 1)).collect();
    for chunk in items.chunks(5000) {
        let response = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{port}/imports/{import}/statements"
            ))
            .json(&chunk)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
}

async fn stop_job(port: u16, name: &str) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/jobs/{name}/stop"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn archive_rows(db: &tokio_postgres::Client, name: &str) -> Vec<(i64, i64, i64)> {
    db.query(
        "SELECT from_offset, to_offset, messages FROM job_archives WHERE job = $1 ORDER BY from_offset",
        &[&name],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Once the service at `base` answers: a new one-citizen import whose job
/// runs there, as (import, job name).
async fn running_job(db: &tokio_postgres::Client, base: &str) -> (i64, String) {
    eventually("the service answers", WAIT, || async {
        get_json(&format!("{base}/healthz")).await.map(|_| ())
    })
    .await;
    let import = streams::create_import(db, &[1]).await;
    let name = common::job_name(db, import).await;
    eventually("the job runs", WAIT, || async {
        let job = get_json(&format!("{base}/jobs/{name}")).await?;
        (job["data"]["state"] == "running").then_some(())
    })
    .await;
    (import, name)
}

/// The job's state as stored (the service may be down).
async fn stored_state(db: &tokio_postgres::Client, name: &str) -> String {
    db.query_one("SELECT state FROM jobs WHERE name = $1", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// A TCP link from the service to an S3 server that holds the first
/// request of a multipart upload's parts (`uploadId=` in its request line)
/// until the test says go, then drops that connection: the test stops the
/// server in between, so the outage falls in the middle of an upload.
struct PartTrap {
    port: u16,
    /// Fired once the held request's multipart upload was created.
    held: Option<tokio::sync::oneshot::Receiver<()>>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

impl PartTrap {
    async fn start(upstream: u16) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (held_tx, held) = tokio::sync::oneshot::channel();
        let held_tx = Arc::new(Mutex::new(Some(held_tx)));
        let release = Arc::new(tokio::sync::Notify::new());
        let created = Arc::new(AtomicBool::new(false));
        let notify = release.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue; // the server is down: so is this connection
                };
                let (held_tx, release, created) =
                    (held_tx.clone(), notify.clone(), created.clone());
                tokio::spawn(async move {
                    let (mut server_read, mut server_write) = server.split();
                    let (mut client_read, mut client_write) = client.split();
                    let upstream = async {
                        let mut buffer = vec![0u8; 64 * 1024];
                        loop {
                            let n = client_read.read(&mut buffer).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            let chunk = String::from_utf8_lossy(&buffer[..n]);
                            if chunk.contains("?uploads") {
                                created.store(true, Ordering::SeqCst);
                            }
                            if chunk.contains("uploadId=") && created.load(Ordering::SeqCst) {
                                let first = held_tx.lock().unwrap().take();
                                if let Some(first) = first {
                                    let _ = first.send(());
                                    release.notified().await;
                                    return Ok(()); // dropped, never forwarded
                                }
                            }
                            server_write.write_all(&buffer[..n]).await?;
                        }
                    };
                    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                    // Either side closing or failing ends the connection.
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                    }
                });
            }
        });
        Self {
            port,
            held: Some(held),
            release,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until a part upload is held.
    async fn part_held(&mut self) {
        let held = self.held.take().expect("waited once");
        tokio::time::timeout(WAIT, held)
            .await
            .expect("a part upload within the wait")
            .unwrap();
    }

    fn release(&self) {
        // A permit if the held connection is not waiting yet.
        self.release.notify_one();
    }
}

/// The S3 server stops in the middle of a multipart upload (created, a part
/// on its way): the job retries with backoff (its error says so), records
/// nothing meanwhile, and archives everything exactly once when the server
/// is back.
#[tokio::test]
async fn an_s3_outage_mid_upload_delays_the_archive_and_loses_nothing() {
    let database = TestDatabase::create().await;
    let db = common::connect(&database.url).await;
    let mut s3 = OwnS3::start(streams::free_port()).await;
    let mut trap = PartTrap::start(s3.port).await;
    let port = streams::free_port();
    let prefix = format!("outage-{}", uuid::Uuid::new_v4().simple());
    let _app = service(&database, port, &trap.endpoint(), &prefix, 1_000_000);
    let base = format!("http://127.0.0.1:{port}");
    let (import, name) = running_job(&db, &base).await;
    stop_job(port, &name).await;
    produce(port, import, (0..300).map(|i| format!("o{i}"))).await;
    trap.part_held().await;
    s3.stop().await;
    trap.release();

    // The positive signal of a failed attempt: the job's error names the store.
    let error = eventually("an archive attempt failed", WAIT, || async {
        let job = get_json(&format!("{base}/jobs/{name}")).await?;
        let error = job["data"]["last_error"].as_str()?.to_owned();
        error.contains("object store").then_some(error)
    })
    .await;
    assert!(error.contains("object store"), "{error}");
    assert_eq!(archive_rows(&db, &name).await, vec![]);
    let state = stored_state(&db, &name).await;
    assert_ne!(state, "expired");
    assert_ne!(state, "failed");

    s3.restart().await;
    eventually("expired once the store is back", WAIT, || async {
        let job = get_json(&format!("{base}/jobs/{name}")).await?;
        (job["data"]["state"] == "expired").then_some(())
    })
    .await;
    // 300 records and their commit marker.
    assert_eq!(archive_rows(&db, &name).await, vec![(0, 301, 300)]);
    let object = reqwest::Client::new()
        .get(format!("{base}/jobs/{name}/archives/0/0"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let lines = streams::gunzip_lines(&object);
    let mut expected: Vec<String> = (0..300).map(|i| format!("o{i}")).collect();
    expected.sort();
    assert_eq!(streams::statement_ids(&lines), expected);
}

/// SIGKILL while the archive is being written, object by object: the
/// restarted service goes on from the stored offsets, and the objects
/// together hold every record exactly once.
#[tokio::test]
async fn a_sigkill_mid_archive_resumes_from_the_stored_offsets() {
    use_shared_s3();
    create_bucket(S3_ENDPOINT, S3_BUCKET).await;
    let database = TestDatabase::create().await;
    let db = common::connect(&database.url).await;
    let port = streams::free_port();
    let prefix = format!("kill-{}", uuid::Uuid::new_v4().simple());
    // Many small objects (each a multipart upload and a durable commit).
    let mut app = service(&database, port, S3_ENDPOINT, &prefix, 50);
    let base = format!("http://127.0.0.1:{port}");
    let (import, name) = running_job(&db, &base).await;
    stop_job(port, &name).await;
    // One request: one transaction, 4,000 records and one marker.
    produce(port, import, (0..4000).map(|i| format!("k{i}"))).await;
    eventually("some objects recorded", WAIT, || async {
        (!archive_rows(&db, &name).await.is_empty()).then_some(())
    })
    .await;
    app.start_kill().unwrap();
    app.wait().await.unwrap();
    let state = stored_state(&db, &name).await;
    let before = archive_rows(&db, &name).await;
    assert_ne!(state, "expired", "killed too late: {before:?}");

    let _app = service(&database, port, S3_ENDPOINT, &prefix, 50);
    eventually("expired after the restart", WAIT, || async {
        let job = get_json(&format!("{base}/jobs/{name}")).await?;
        (job["data"]["state"] == "expired").then_some(())
    })
    .await;
    let rows = archive_rows(&db, &name).await;
    // Contiguous ranges from 0 to the end, every record once.
    let mut next = 0;
    for (from, to, _) in &rows {
        assert_eq!(*from, next, "{rows:?}");
        next = *to;
    }
    // The last span, [4000, 4001), holds only the commit marker: no object.
    assert_eq!(next, 4000);
    assert_eq!(rows.iter().map(|r| r.2).sum::<i64>(), 4000);
    let job = get_json(&format!("{base}/jobs/{name}")).await.unwrap();
    assert_eq!(job["data"]["committed_offset"], 4001, "{job}");
    assert!(rows.len() > before.len(), "{before:?} then {rows:?}");

    // Replayed, the objects give back each statement once.
    let target = streams::create_import(&db, &[1]).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/imports/{target}/replay"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"job": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["stored"], 4000, "{body}");
    assert_eq!(streams::stored(&db, target).await, 4000);
}

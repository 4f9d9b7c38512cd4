//! Black-box test harness: each test gets its own database (cloned from a
//! migrated template, so tests run in parallel) and the real application on a
//! free port, talking to the real PostgreSQL and Kafka started by
//! `scripts/services.sh`.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod browser;
pub mod schema;
pub mod streams;

use std::path::Path;
use std::time::Duration;

use insikt::config::Config;
use insikt::startup::Application;
use serde_json::Value;
use tokio::sync::{oneshot, OnceCell};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// The admin token every test app is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Tokens of an app that runs closed ([`with_tokens`]): one per scope, each
/// configured by its SHA-256 digest under the name in [`TOKEN_NAMES`].
pub const READ_TOKEN: &str = "test-read-token";
pub const WRITE_TOKEN: &str = "test-write-token";
pub const ADMIN_HASHED_TOKEN: &str = "test-admin-hashed-token";
pub const TOKEN_NAMES: [&str; 3] = ["analyst", "loader", "operator"];

/// The `name:sha256-hex` configuration of a token.
pub fn token_pair(name: &str, token: &str) -> String {
    format!("{name}:{}", insikt::access::TokenDigest::of(token).hex())
}

/// Configures read, write and admin tokens (by digest), so the app runs
/// closed; the plaintext admin token of every test app keeps working.
pub fn with_tokens(config: &mut Config) {
    config.read_tokens = Some(token_pair(TOKEN_NAMES[0], READ_TOKEN));
    config.write_tokens = Some(token_pair(TOKEN_NAMES[1], WRITE_TOKEN));
    config.admin_tokens = Some(token_pair(TOKEN_NAMES[2], ADMIN_HASHED_TOKEN));
}

/// Where test databases are created: `INSIKT_TEST_DATABASE_URL` or the local
/// default, pointing at the maintenance database.
pub fn admin_url() -> String {
    std::env::var("INSIKT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `admin_url` with another database name.
pub fn database_url(name: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

pub async fn admin_client() -> tokio_postgres::Client {
    connect(&admin_url()).await
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url} (is scripts/services.sh up?): {e}"));
    tokio::spawn(connection);
    client
}

/// FNV-1a over the migration files, so a changed migration gets a new template.
fn migrations_fingerprint() -> u64 {
    let mut entries: Vec<_> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"))
            .expect("migrations directory")
            .map(|e| e.expect("migration entry").path())
            .collect();
    entries.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for byte in name.bytes().chain(std::fs::read(&path).unwrap()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// The migrated template database, created once across all test processes.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let fingerprint = migrations_fingerprint();
            let name = format!("insikt_tpl_{fingerprint:016x}");
            let admin = admin_client().await;
            // Serialise template creation across concurrently running test binaries.
            let lock_key = (fingerprint >> 1) as i64;
            admin
                .execute("SELECT pg_advisory_lock($1)", &[&lock_key])
                .await
                .unwrap();
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .unwrap()
                .is_some();
            if !exists {
                let building = format!("{name}_building");
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                    .await
                    .unwrap();
                insikt::db::migrate(&database_url(&building))
                    .await
                    .expect("migrating the template");
                // Renaming makes the template appear only once complete.
                retry_in_use(
                    &admin,
                    &format!("ALTER DATABASE {building} RENAME TO {name}"),
                )
                .await;
            }
            admin
                .execute("SELECT pg_advisory_unlock($1)", &[&lock_key])
                .await
                .unwrap();
            name
        })
        .await
}

/// Runs DDL, retrying while a just-closed connection to its database lingers.
async fn retry_in_use(client: &tokio_postgres::Client, sql: &str) {
    for _ in 0..100 {
        match client.batch_execute(sql).await {
            Ok(()) => return,
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("database still in use after 10 s");
}

/// A fresh, migrated database; dropped when the guard is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let template = template().await;
        let name = format!("insikt_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_client().await;
        retry_in_use(
            &admin,
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        )
        .await;
        let url = database_url(&name);
        // A clone carries its template's deployment identity: give it its
        // own, as README says for any database cloned to serve beside its
        // original, or every test app would share one set of topics.
        connect(&url)
            .await
            .batch_execute("UPDATE deployment SET id = gen_random_uuid()")
            .await
            .unwrap();
        Self { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::env::var_os("INSIKT_TEST_KEEP_DB").is_some() {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let name = self.name.clone();
        // Drop runs outside any runtime we may block, so use a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin_url(), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// The configuration a test app starts from: its own database, port 0, known tokens.
pub fn test_config(database: &TestDatabase) -> Config {
    let mut config = Config::from_env();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = database.url.clone();
    config.no_migrate = true; // the template is migrated
    config.admin_token = Some(ADMIN_TOKEN.to_owned());
    config.secret = Some("test-secret".to_owned());
    config.instance_id = Some(format!("test-{}", &database.name[12..20]));
    config.shutdown_timeout_secs = 5;
    // The default topic prefix and consumer group, as users leave them: every
    // test database numbers imports from 1 and all tests share one broker,
    // which each database's own identity must keep apart.
    config
}

/// The real application serving on a free port until stopped (or dropped).
pub struct Served {
    pub addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    pub async fn start(config: Config) -> Self {
        // `INSIKT_TEST_LOG=insikt=debug cargo test ... -- --nocapture` shows
        // the service's log: what a flaky fault test needs to be read.
        if let Ok(filter) = std::env::var("INSIKT_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let app = Application::build(config)
            .await
            .expect("application starts");
        let addr = app.local_addr();
        let (shutdown, stop) = oneshot::channel();
        let server = tokio::spawn(app.run_until(async {
            let _ = stop.await;
        }));
        Self {
            addr,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The value of one series of `GET /metrics`, if it is there.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Stops the server and waits for it to finish in-flight requests.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The real application on its own fresh database; the server stops, then
/// the database is dropped, when this is dropped (fields drop in order).
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    served: Served,
    pub database: TestDatabase,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the app with a configuration adjusted by `adjust`.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let database = TestDatabase::create().await;
        let mut config = test_config(&database);
        adjust(&mut config);
        let served = Served::start(config).await;
        Self {
            addr: served.addr,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            served,
            database,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.served.url(path)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.request(method, path).json(body).send().await.unwrap()
    }

    /// `GET /jobs/{name}`'s data; the job must exist.
    pub async fn job(&self, name: &str) -> Value {
        let (status, body) = json(self.get(&format!("/jobs/{name}")).await).await;
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }

    /// `POST /imports` with `body`, which must be created: the import's id.
    pub async fn post_import(&self, body: &Value) -> i64 {
        let (status, reply) = json(
            self.send_json(reqwest::Method::POST, "/imports", body)
                .await,
        )
        .await;
        assert_eq!(status, 201, "{reply}");
        reply["data"]["import_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no import_id in {reply}"))
    }

    /// `POST /imports/{import}/statements` with `items`: status and body.
    pub async fn post_statements(&self, import: i64, items: &Value) -> (u16, Value) {
        let path = format!("/imports/{import}/statements");
        json(self.send_json(reqwest::Method::POST, &path, items).await).await
    }

    /// Like [`TestApp::post_statements`], for items that must be accepted.
    pub async fn post_accepted(&self, import: i64, items: &Value) {
        let (status, body) = self.post_statements(import, items).await;
        assert_eq!(status, 202, "{body}");
    }

    /// The value of one series of `GET /metrics`, if it is there.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        self.served.metric(series).await
    }

    /// `GET /readyz` once it answers 200 (after the start's insights plan
    /// and loads): status and body.
    pub async fn ready(&self) -> (u16, Value) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = json(self.get("/readyz").await).await;
            if status == 200 || std::time::Instant::now() >= deadline {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A connection to this app's database, to check what was (not) written.
    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.database.url).await
    }

    /// Stops the server and waits for it to finish in-flight requests.
    pub async fn stop(self) {
        self.served.stop().await;
    }
}

/// Status and JSON body of a response.
pub async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

/// Loads the real airports file (data/airports.csv), as `scripts/run.sh`
/// does before the demo, so towns can be placed.
pub async fn upload_real_airports(app: &TestApp) {
    let airports =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/airports.csv")).unwrap();
    let response = app
        .request(reqwest::Method::POST, "/airports/upload")
        .header("content-type", "text/csv")
        .body(airports)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

/// Asserts the error envelope and returns its code.
pub fn error_code(body: &Value) -> &str {
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error envelope: {body}"));
    assert!(
        error["message"].is_string(),
        "error without message: {body}"
    );
    error["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error without code: {body}"))
}

/// The deployment identity of a database (migration V9).
pub async fn deployment(db: &tokio_postgres::Client) -> uuid::Uuid {
    let id: String = db
        .query_one("SELECT id::text FROM deployment", &[])
        .await
        .unwrap()
        .get(0);
    uuid::Uuid::parse_str(&id).unwrap()
}

/// The name of an import's job in the deployment of database `db`.
pub async fn job_name(db: &tokio_postgres::Client, import_id: i64) -> String {
    insikt::jobs::job_name(&deployment(db).await, import_id)
}

/// The topic of an import's job in the deployment of `db`, with `prefix`.
pub async fn topic(db: &tokio_postgres::Client, prefix: &str, import_id: i64) -> String {
    let deployment = deployment(db).await;
    insikt::jobs::Naming::new(deployment, prefix, "")
        .topic(&insikt::jobs::job_name(&deployment, import_id))
}

/// A new, empty import row (fixtures add their own citizens); its id.
pub async fn insert_import(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "INSERT INTO imports DEFAULT VALUES RETURNING import_id",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Deletes every topic whose name starts with `prefix` from the shared
/// broker (what a test made in bulk).
pub async fn delete_topics(prefix: &str) {
    let brokers = Config::from_env().kafka_brokers;
    insikt::kafka::Cluster::connect(&brokers, "insikt-test-cleanup")
        .unwrap()
        .delete_topics_with_prefix(prefix)
        .await
        .unwrap();
}

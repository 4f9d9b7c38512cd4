//! The foundation's behaviour, black-box: health, readiness, the route table's
//! OPTIONS/405/404 answers, request ids, migrations and the CLI.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;

use common::{error_code, json, TestApp, TestDatabase};
use insikt::http::routes::ROUTES;
use reqwest::Method;

/// A concrete path for a route pattern (parameters filled with `1`).
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|s| if s.starts_with('{') { "1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn healthz_says_up() {
    let app = TestApp::spawn().await;
    let (status, body) = json(app.get("/healthz").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "up");
}

#[tokio::test]
async fn readyz_is_ready_with_postgres_and_kafka() {
    let app = TestApp::spawn().await;
    // Ready once the start's insights plan is made (nothing to load here);
    // until then 503 says so, with both dependencies up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let body = loop {
        let (status, body) = json(app.get("/readyz").await).await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["fields"]["insights"], "loading", "{body}");
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(body["data"]["checks"]["postgres"], "ok");
    assert_eq!(body["data"]["checks"]["kafka"], "ok");
    assert_eq!(body["data"]["checks"]["insights"], "ok");
    assert_eq!(body["data"]["insights"]["planned"], 0, "{body}");
}

#[tokio::test]
async fn readyz_names_postgres_when_the_database_is_unreachable() {
    let app = TestApp::spawn_with(|config| {
        config.database_url = "postgres://postgres@127.0.0.1:1/nowhere".to_owned();
    })
    .await;
    let (status, body) = json(app.get("/readyz").await).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_code(&body), "not_ready");
    assert_eq!(body["error"]["fields"]["postgres"], "unavailable");
    assert_eq!(body["error"]["fields"]["kafka"], "ok");
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1:1"),
        "leaks connection details: {text}"
    );
    // The process itself is still alive.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn readyz_names_kafka_when_the_broker_is_unreachable() {
    let app = TestApp::spawn_with(|config| {
        config.kafka_brokers = "127.0.0.1:1".to_owned();
    })
    .await;
    let (status, body) = json(app.get("/readyz").await).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["fields"]["kafka"], "unavailable");
    assert_eq!(body["error"]["fields"]["postgres"], "ok");
}

#[tokio::test]
async fn every_route_answers_options_with_exactly_its_methods() {
    let app = TestApp::spawn().await;
    for route in ROUTES {
        let path = concrete(route.pattern);
        let response = app.request(Method::OPTIONS, &path).send().await.unwrap();
        assert!(
            matches!(response.status().as_u16(), 200 | 204),
            "OPTIONS {path}: {}",
            response.status()
        );
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        let mut listed: Vec<&str> = allow.split(", ").collect();
        listed.sort_unstable();
        let mut expected: Vec<&str> = route.methods().map(Method::as_str).collect();
        expected.push("OPTIONS");
        expected.sort_unstable();
        assert_eq!(listed, expected, "Allow of {path}");
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow_and_an_error_body() {
    let app = TestApp::spawn().await;
    for route in ROUTES {
        let path = concrete(route.pattern);
        let wrong = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ]
        .into_iter()
        .find(|m| route.access(m).is_none())
        .expect("some method is not served");
        let response = app.request(wrong.clone(), &path).send().await.unwrap();
        assert_eq!(
            response.headers()["allow"],
            route.allow().as_str(),
            "{wrong} {path}"
        );
        let (status, body) = json(response).await;
        assert_eq!(status, 405, "{wrong} {path}");
        assert_eq!(error_code(&body), "method_not_allowed");
    }
}

#[tokio::test]
async fn an_unknown_path_is_404_with_an_error_body() {
    let app = TestApp::spawn().await;
    for method in [Method::GET, Method::POST, Method::OPTIONS] {
        let (status, body) =
            json(app.request(method, "/no/such/thing").send().await.unwrap()).await;
        assert_eq!(status, 404);
        assert_eq!(error_code(&body), "not_found");
    }
    let (status, _) = json(app.get("/healthz/").await).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let given = app
        .request(Method::GET, "/healthz")
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-42");
    let generated = app.get("/healthz").await;
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

fn insikt() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_insikt"));
    command.env("INSIKT_LOG", "warn");
    command
}

#[tokio::test]
async fn migrate_creates_the_database_and_twice_is_a_no_op() {
    let name = format!("insikt_test_{}", uuid::Uuid::new_v4().simple());
    let guard = TestDatabase {
        name: name.clone(),
        url: common::database_url(&name),
    };
    let first = insikt()
        .arg("migrate")
        .env("INSIKT_DATABASE_URL", &guard.url)
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("applied V1__postgis"), "{stdout}");

    let second = insikt()
        .arg("migrate")
        .env("INSIKT_DATABASE_URL", &guard.url)
        .output()
        .unwrap();
    assert!(second.status.success());
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "database is up to date"
    );

    let client = common::connect(&guard.url).await;
    let postgis: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'postgis'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(postgis.starts_with('3'), "{postgis}");
}

/// Every `INSIKT_*` variable the configuration reads (clap's own list of
/// them) is in `--help` and in README's configuration table.
#[test]
fn help_and_readme_document_every_environment_variable() {
    use clap::CommandFactory;
    let output = insikt().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let variables: Vec<String> = insikt::config::Cli::command()
        .get_arguments()
        .filter_map(|argument| argument.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    assert!(variables.len() >= 19, "{variables:?}");
    for variable in &variables {
        assert!(variable.starts_with("INSIKT_"), "{variable}");
        assert!(
            help.contains(variable.as_str()),
            "--help lacks {variable}:\n{help}"
        );
        assert!(
            readme.contains(&format!("| `{variable}` |")),
            "README's configuration table lacks {variable}"
        );
    }
    assert!(help.contains("migrate"));
}

#[tokio::test]
async fn serve_without_migrate_starts_while_postgres_is_down_and_stops_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .args(["serve", "--no-migrate", "--listen", "127.0.0.1:0"])
        .env(
            "INSIKT_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/nowhere",
        )
        // Piped, the log has no colour codes: the address reads off it.
        .env("INSIKT_LOG", "info")
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let wait = std::time::Duration::from_secs(30);
    // Ready: it says where it listens, and answers there.
    let addr = tokio::time::timeout(wait, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("insikt listening").nth(1) {
                let addr = rest.split("addr=").nth(1).unwrap();
                return addr.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("exited before listening");
    })
    .await
    .expect("listening within 30 s");
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (status, body) = json(reqwest::get(format!("http://{addr}/readyz")).await.unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("postgres"), "{body}");

    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // It says it heard the signal and stopped serving, then exits cleanly.
    let rest = tokio::time::timeout(wait, async {
        let mut rest = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            rest.push(line);
        }
        rest
    })
    .await
    .expect("output ends within 30 s");
    let status = tokio::time::timeout(wait, child.wait())
        .await
        .expect("stops within 30 s")
        .unwrap();
    assert!(status.success(), "{status}");
    let rest = rest.join("\n");
    assert!(rest.contains("SIGTERM received"), "{rest}");
    assert!(rest.contains("server stopped"), "{rest}");
}

//! Who may read and change what, against the real app: the route table's
//! every route and method with no token, a lower scope and the right one;
//! each token outcome; open mode; the audit trail written with its change
//! and absent when the change is refused; `insikt token new`.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{
    error_code, json, token_pair, with_tokens, TestApp, ADMIN_HASHED_TOKEN, ADMIN_TOKEN,
    READ_TOKEN, TOKEN_NAMES, WRITE_TOKEN,
};
use insikt::access::Scope;
use insikt::http::routes::{Access, ROUTES};
use reqwest::Method;
use serde_json::{json, Value};

/// A path of `pattern` with `1` for every parameter, and a query parameter
/// no route knows: a handler that reads its query refuses it at once (a
/// profile is not taken), and the others ignore it. Either way the answer
/// comes after the access check, which is what is tested here.
fn concrete(pattern: &str) -> String {
    let path = pattern
        .split('/')
        .map(|s| if s.starts_with('{') { "1" } else { s })
        .collect::<Vec<_>>()
        .join("/");
    format!("{path}?walk=1")
}

/// The token of a scope, and of the one below it (an unknown token below
/// `read`).
fn tokens_for(scope: Scope) -> (&'static str, &'static str) {
    match scope {
        Scope::Read => (READ_TOKEN, "not-a-configured-token"),
        Scope::Write => (WRITE_TOKEN, READ_TOKEN),
        Scope::Admin => (ADMIN_HASHED_TOKEN, WRITE_TOKEN),
    }
}

async fn status(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: Option<&str>,
) -> (u16, reqwest::Response) {
    let mut request = app.request(method.clone(), path);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response)
}

/// Every route and method of the table, including any added later: a route
/// cannot be served without declaring its access, and this walk checks that
/// the declaration holds.
#[tokio::test]
async fn every_route_and_method_needs_its_scope() {
    let app = TestApp::spawn_with(with_tokens).await;
    let mut walked = 0;
    for route in ROUTES {
        for (method, access) in route.methods {
            let path = concrete(route.pattern);
            walked += 1;
            match access {
                Access::Public => {
                    let (code, _) = status(&app, method, &path, None).await;
                    assert!(
                        !matches!(code, 401 | 403),
                        "{method} {path}: {code} without a token"
                    );
                }
                Access::Token(scope) => {
                    let (code, response) = status(&app, method, &path, None).await;
                    assert_eq!(code, 401, "{method} {path} without a token");
                    assert_eq!(
                        response.headers()["www-authenticate"],
                        "Bearer",
                        "{method} {path}"
                    );
                    let (_, body) = json(response).await;
                    assert_eq!(error_code(&body), "unauthorized", "{method} {path}");

                    let (right, lower) = tokens_for(*scope);
                    let (code, response) = status(&app, method, &path, Some(lower)).await;
                    assert_eq!(code, 403, "{method} {path} with a token below {scope}");
                    let (_, body) = json(response).await;
                    assert_eq!(error_code(&body), "forbidden", "{method} {path}");

                    for token in [right, ADMIN_HASHED_TOKEN, ADMIN_TOKEN] {
                        let (code, _) = status(&app, method, &path, Some(token)).await;
                        assert!(
                            !matches!(code, 401 | 403),
                            "{method} {path}: {code} with a token of scope {scope} or above"
                        );
                    }
                }
            }
        }
    }
    assert!(walked >= 45, "the table has {walked} route methods");
}

#[tokio::test]
async fn token_outcomes() {
    let app = TestApp::spawn_with(with_tokens).await;
    // Missing: 401 with the challenge; malformed header or unknown token: 403.
    let response = app.get("/jobs").await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    for authorization in [
        "Basic dXNlcjpwdw==",
        "Bearer",
        "Bearer wrong",
        "test-read-token",
    ] {
        let response = app
            .request(Method::GET, "/jobs")
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{authorization}");
    }
    // Tokens of any length that are not configured are refused the same way.
    for wrong in ["t", "test-read-toke", "test-read-token-", &"x".repeat(4096)] {
        let response = app
            .request(Method::GET, "/jobs")
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{} bytes", wrong.len());
    }
    // A read token reads, cannot write; a write token writes and reads.
    let response = app
        .request(Method::GET, "/jobs")
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = json!({"citizens": []});
    let (code, refused) = json(
        app.request(Method::POST, "/imports")
            .bearer_auth(READ_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 403);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs write"),
        "{refused}"
    );
    let response = app
        .request(Method::POST, "/imports")
        .bearer_auth(WRITE_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // Open routes need nothing.
    assert_eq!(app.get("/healthz").await.status(), 200);
    let (code, ready) = app.ready().await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["data"]["access"], "tokens");
    // The token values are nowhere in what the service wrote about them.
    let (_, audit) = json(
        app.request(Method::GET, "/audit")
            .bearer_auth(ADMIN_HASHED_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text = audit.to_string();
    assert!(text.contains(TOKEN_NAMES[1]), "{text}");
    for token in [READ_TOKEN, WRITE_TOKEN, ADMIN_HASHED_TOKEN] {
        assert!(!text.contains(token), "{text}");
    }
}

#[tokio::test]
async fn without_read_or_write_tokens_the_service_is_open_and_says_so() {
    // Every test app has the plaintext admin token only: open, as in 2019.
    let app = TestApp::spawn().await;
    let (code, ready) = app.ready().await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["data"]["access"], "open");
    assert_eq!(app.get("/jobs").await.status(), 200);
    let response = app
        .send_json(Method::POST, "/imports", &json!({"citizens": []}))
        .await;
    assert_eq!(response.status(), 201);
    // Admin routes still need the admin token.
    assert_eq!(app.get("/audit").await.status(), 401);
    let response = app
        .request(Method::GET, "/audit")
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_plaintext_admin_token_and_a_tokens_file_work_beside_the_variables() {
    let file =
        std::env::temp_dir().join(format!("insikt-tokens-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &file,
        format!(
            "# scope name:sha256\nread {}\n\nwrite {}\n",
            token_pair("file-reader", "file-r"),
            token_pair("file-writer", "file-w")
        ),
    )
    .unwrap();
    let app = TestApp::spawn_with(|config| {
        with_tokens(config);
        config.tokens_file = Some(file.clone());
    })
    .await;
    let read = |token: &'static str| {
        let request = app.request(Method::GET, "/jobs").bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(read("file-r").await, 200);
    assert_eq!(read("file-w").await, 200);
    assert_eq!(read(ADMIN_TOKEN).await, 200);
    let response = app
        .request(Method::POST, "/imports")
        .bearer_auth("file-r")
        .json(&json!({"citizens": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn a_deployment_that_requires_tokens_does_not_start_open() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .args(["serve", "--no-migrate", "--listen", "127.0.0.1:0"])
        .env("INSIKT_REQUIRE_TOKENS", "true")
        .env_remove("INSIKT_READ_TOKENS")
        .env_remove("INSIKT_WRITE_TOKENS")
        .env_remove("INSIKT_TOKENS_FILE")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not starting open"), "{stderr}");
}

#[test]
fn bad_token_settings_stop_the_start_with_a_short_message() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .args(["serve", "--no-migrate", "--listen", "127.0.0.1:0"])
        .env("INSIKT_WRITE_TOKENS", format!("loader:{}", "z".repeat(64)))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("INSIKT_WRITE_TOKENS"), "{stderr}");
}

#[tokio::test]
async fn token_new_prints_a_token_and_the_line_that_configures_it() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .args(["token", "new", "ci-loader", "--scope", "write"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let token = lines[0].to_owned();
    let (variable, pairs) = lines[1].split_once('=').unwrap();
    assert_eq!(variable, "INSIKT_WRITE_TOKENS");
    assert!(pairs.starts_with("ci-loader:"), "{pairs}");
    assert!(
        !pairs.contains(&token),
        "the configuration line holds only the digest"
    );
    let pairs = pairs.to_owned();
    let app = TestApp::spawn_with(move |config| config.write_tokens = Some(pairs)).await;
    let response = app
        .request(Method::POST, "/imports")
        .bearer_auth(&token)
        .json(&json!({"citizens": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(app.get("/jobs").await.status(), 401);
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .args(["token", "new", "no spaces"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

fn citizen(id: u32, relatives: &[u32]) -> Value {
    json!({
        "citizen_id": id, "town": "Ólvega", "street": "Calle Mayor", "building": "3",
        "apartment": 2, "name": format!("Secret Person {id}"), "birth_date": "01.02.1990",
        "gender": "female", "relatives": relatives,
    })
}

/// The audit rows, as an admin reads them.
async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let (code, body) = json(
        app.request(Method::GET, &format!("/audit{query}"))
            .bearer_auth(ADMIN_HASHED_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_accepted_change_is_audited_in_its_transaction_and_refusals_are_not() {
    let app = TestApp::spawn_with(with_tokens).await;
    let write = |method: Method, path: &str, body: Value| {
        app.request(method, path)
            .bearer_auth(WRITE_TOKEN)
            .json(&body)
            .send()
    };
    let response = write(
        Method::POST,
        "/imports",
        json!({"citizens": [citizen(1, &[2]), citizen(2, &[1])]}),
    )
    .await
    .unwrap();
    let (code, created) = json(response).await;
    assert_eq!(code, 201, "{created}");
    let import = created["data"]["import_id"].as_i64().unwrap();

    // Refused changes leave no row (and change nothing).
    let before = audit(&app, "").await.len();
    let (code, _) = json(
        write(
            Method::POST,
            "/imports",
            json!({"citizens": [citizen(1, &[9])]}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(code, 400);
    let path = format!("/imports/{import}/citizens/1");
    let (code, _) = json(
        write(Method::PATCH, &path, json!({"relatives": [7]}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = json(
        write(Method::PATCH, &path, json!({"town": ""}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 400);
    let response = app
        .request(Method::PATCH, &path)
        .bearer_auth(READ_TOKEN)
        .json(&json!({"town": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(audit(&app, "").await.len(), before);

    // An accepted PATCH: its row names the fields, not their values.
    let (code, _) = json(
        write(
            Method::PATCH,
            &path,
            json!({"name": "New Secret Name", "town": "Soria"}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    let response = write(
        Method::PUT,
        "/airports",
        json!({"name": "Soria airport", "latitude": 41.7, "longitude": -2.4}),
    )
    .await
    .unwrap();
    let (code, airport) = json(response).await;
    assert_eq!(code, 201, "{airport}");
    let airport_id = airport["data"]["id"].as_i64().unwrap();

    let rows = audit(&app, "").await;
    let text = serde_json::to_string(&rows).unwrap();
    for personal in [
        "Secret Person",
        "New Secret Name",
        "Ólvega",
        "Soria",
        "Calle Mayor",
    ] {
        assert!(!text.contains(personal), "{personal} in the audit: {text}");
    }
    let created_row = rows
        .iter()
        .find(|r| r["outcome"] == "created" && r["import_id"] == import)
        .unwrap();
    assert_eq!(created_row["token"], TOKEN_NAMES[1]);
    assert_eq!(created_row["method"], "POST");
    assert_eq!(created_row["route"], "/imports");
    assert_eq!(created_row["detail"], json!({"citizens": 2}));
    let patched = rows
        .iter()
        .find(|r| r["outcome"] == "updated" && r["citizen_id"] == 1)
        .unwrap();
    assert_eq!(
        patched["route"],
        "/imports/{import_id}/citizens/{citizen_id}"
    );
    assert_eq!(patched["detail"], json!({"fields": ["town", "name"]}));
    let airport_row = rows.iter().find(|r| r["airport_id"] == airport_id).unwrap();
    assert_eq!(airport_row["outcome"], "created");
    assert!(rows
        .windows(2)
        .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));

    // In the change's own transaction: the same rows in PostgreSQL, one per change.
    let db = app.db().await;
    let count: i64 = db
        .query_one("SELECT count(*) FROM audit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count as usize, rows.len());

    // Paging.
    let first = rows[0]["id"].as_i64().unwrap();
    let page = audit(&app, &format!("?after={first}&limit=1")).await;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["id"], rows[1]["id"]);
    for bad in ["?limit=0", "?limit=1001", "?after=x", "?other=1"] {
        let response = app
            .request(Method::GET, &format!("/audit{bad}"))
            .bearer_auth(ADMIN_HASHED_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
}

/// What `insikt serve` logs before it listens, with `tokens` as its
/// `INSIKT_READ_TOKENS` (PostgreSQL unreachable: it serves anyway).
async fn start_log(tokens: Option<String>) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_insikt"));
    command
        .args(["serve", "--no-migrate", "--listen", "127.0.0.1:0"])
        .env(
            "INSIKT_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/nowhere",
        )
        .env("INSIKT_LOG", "info")
        .env_remove("INSIKT_ADMIN_TOKEN")
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(tokens) = tokens {
        command.env("INSIKT_READ_TOKENS", tokens);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let log = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut log = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            let listening = line.contains("insikt listening");
            log.push(line);
            if listening {
                break;
            }
        }
        log.join("\n")
    })
    .await
    .expect("listening within 30 s");
    child.kill().await.unwrap();
    log
}

#[tokio::test]
async fn open_mode_is_announced_at_start() {
    let open = start_log(None).await;
    assert!(open.contains("running OPEN"), "{open}");
    let closed = start_log(Some(token_pair("analyst", READ_TOKEN))).await;
    assert!(!closed.contains("running OPEN"), "{closed}");
    assert!(closed.contains("read=1"), "{closed}");
    assert!(!closed.contains(READ_TOKEN), "{closed}");
}

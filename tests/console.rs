//! The console in a real browser (headless Chromium through chromedriver),
//! against the real app, PostgreSQL and Kafka: a running job is shown,
//! stopped with the admin token typed into the page, started again; its page,
//! the demand chart and a narrow screen work. The files it is made of are
//! served from the binary.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::browser::{target_file, Browser};
use common::streams::{self, eventually};
use common::{error_code, json, TestApp, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_console_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let page = app.get("/console").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    for linked in ["/console/console.js", "/console/console.css"] {
        assert!(html.contains(linked), "the page does not link {linked}");
        let asset = app.get(linked).await;
        assert_eq!(asset.status(), 200, "{linked}");
        assert!(!asset.text().await.unwrap().is_empty(), "{linked}");
    }
    // Nothing from elsewhere: every script and style is the binary's own.
    assert!(!html.contains("http://") && !html.contains("https://"));
    let (status, body) = json(app.get("/console/nope.js").await).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
}

/// A running job: an import with a citizen and one stored statement.
async fn running_job(app: &TestApp) -> (i64, String) {
    let db = app.db().await;
    let import = streams::create_import(&db, &[1]).await;
    let name = common::job_name(&db, import).await;
    let (status, body) = json(
        app.send_json(
            Method::POST,
            &format!("/imports/{import}/statements"),
            &json!([streams::statement("s1", import, 1)]),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    eventually("the statement stored", WAIT, || async {
        (streams::stored(&db, import).await == 1).then_some(())
    })
    .await;
    eventually("the job running", WAIT, || async {
        let (_, body) = json(app.get(&format!("/jobs/{name}")).await).await;
        (body["data"]["state"] == "running").then_some(())
    })
    .await;
    (import, name)
}

#[tokio::test]
async fn an_operator_stops_and_starts_a_job_from_the_console() {
    let app = TestApp::spawn_with(streams::configure).await;
    let (import, name) = running_job(&app).await;
    let browser = Browser::start(1280, 900).await;
    let outcome = scenario(&app, &browser, import, &name).await;
    match outcome {
        Ok(()) => {
            let path = target_file("console.png");
            browser.screenshot(&path).await.unwrap();
            println!("console screenshot: {}", path.display());
            browser.close().await;
        }
        Err(why) => {
            let path = target_file("console-failure.png");
            let saved = browser.screenshot(&path).await;
            browser.close().await;
            panic!(
                "{why}\nscreenshot of the failure: {} ({saved:?})",
                path.display()
            );
        }
    }
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

async fn scenario(app: &TestApp, browser: &Browser, import: i64, name: &str) -> Result<(), String> {
    let row = format!("tr[data-job=\"{name}\"]");
    let state = format!("{row} .job-state");
    browser.goto(&app.url("/console")).await?;
    browser.wait_text(&state, WAIT, |t| t == "running").await?;

    // Stop: the page asks for the token, then shows the API's answer.
    let stop = browser
        .wait_for(&format!("{row} button.stop"), WAIT)
        .await?;
    ensure(stop.tag_name().await? == "button", || {
        "stop is not a button".into()
    })?;
    stop.click().await?;
    let input = browser.wait_for("#token-input", WAIT).await?;
    input.send_keys(ADMIN_TOKEN).await?;
    browser.wait_for("#token-ok", WAIT).await?.click().await?;
    browser
        .wait_text("#status", WAIT, |t| {
            t.contains("200") && t.contains("stopped")
        })
        .await?;
    browser.wait_text(&state, WAIT, |t| t == "stopped").await?;
    let (_, body) = json(app.get(&format!("/jobs/{name}")).await).await;
    ensure(body["data"]["state"] == "stopped", || {
        format!("API says {body}")
    })?;

    // Start: the token is remembered for the session, no question asked.
    browser
        .wait_for(&format!("{row} button.start"), WAIT)
        .await?
        .click()
        .await?;
    browser
        .wait_text("#status", WAIT, |t| {
            t.contains("start") && t.contains("200")
        })
        .await?;
    browser.wait_text(&state, WAIT, |t| t == "running").await?;
    let stored: Value = browser
        .execute(
            "return sessionStorage.getItem('insikt.adminToken')",
            json!([]),
        )
        .await?;
    ensure(stored == ADMIN_TOKEN, || {
        format!("token stored as {stored}")
    })?;

    // Filtering by state.
    browser.goto(&app.url("/console#/?state=stopped")).await?;
    browser
        .wait_text("#jobs", WAIT, |t| t.contains("No stopped jobs"))
        .await?;

    // The job's page: its facts, dead letters and archives.
    browser
        .goto(&app.url(&format!("/console#/jobs/{name}")))
        .await?;
    browser
        .wait_text("#job-facts", WAIT, |t| {
            t.contains("running") && t.contains(name)
        })
        .await?;
    browser
        .wait_text("#dead-letters", WAIT, |t| t.contains("No dead letters"))
        .await?;
    browser
        .wait_text("#archives", WAIT, |t| t.contains("No archives"))
        .await?;

    // The demand chart, drawn by the API, with the `by` choices.
    browser
        .goto(&app.url(&format!("/console#/imports/{import}/demand?by=town,course")))
        .await?;
    browser.wait_for("#demand-chart img", WAIT).await?;
    let drawn: Value = browser
        .execute(
            "const img = document.querySelector('#demand-chart img'); \
             return img.complete && img.naturalWidth > 0",
            json!([]),
        )
        .await?;
    ensure(drawn == true, || "the chart image did not load".into())?;
    let selected: Value = browser
        .execute(
            "return [document.getElementById('by-first').value, document.getElementById('by-second').value]",
            json!([]),
        )
        .await?;
    ensure(selected == json!(["town", "course"]), || {
        format!("controls show {selected}")
    })?;

    // The memory sparkline has read /metrics.
    browser
        .wait_text("#rss-value", WAIT, |t| t.contains("iB"))
        .await?;

    browser.goto(&app.url("/console")).await?;
    browser.wait_text(&state, WAIT, |t| t == "running").await?;
    let wide = target_file("console-wide.png");
    browser.screenshot(&wide).await?;
    println!("console screenshot (wide): {}", wide.display());

    // A narrow screen: nothing wider than the viewport, the jobs as cards.
    browser.set_window(390, 844).await?;
    browser.goto(&app.url("/console")).await?;
    browser.wait_text(&state, WAIT, |t| t == "running").await?;
    let overflow: Value = browser
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await?;
    ensure(overflow.as_i64() == Some(0), || {
        format!("{overflow} px wider than the screen")
    })?;
    Ok(())
}

/// A service with tokens: the console asks for one when a read answers 401,
/// keeps it for the tab's session, and asks again when it is refused.
#[tokio::test]
async fn the_console_asks_for_a_token_when_reads_need_one() {
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        common::with_tokens(config);
    })
    .await;
    let browser = Browser::start(1280, 900).await;
    let outcome = token_scenario(&app, &browser).await;
    let path = target_file("console-token.png");
    let saved = browser.screenshot(&path).await;
    browser.close().await;
    if let Err(why) = outcome {
        panic!("{why}\nscreenshot: {} ({saved:?})", path.display());
    }
}

async fn token_scenario(app: &TestApp, browser: &Browser) -> Result<(), String> {
    browser.goto(&app.url("/console")).await?;
    browser
        .wait_text("#token-reason", WAIT, |t| {
            t.contains("needs a token to read")
        })
        .await?;
    browser
        .wait_text("#token-title", WAIT, |t| t == "Token")
        .await?;
    browser
        .wait_for("#token-input", WAIT)
        .await?
        .send_keys(common::READ_TOKEN)
        .await?;
    browser.wait_for("#token-ok", WAIT).await?.click().await?;
    browser
        .wait_text("#jobs", WAIT, |t| t.contains("No jobs yet"))
        .await?;
    let stored: Value = browser
        .execute("return sessionStorage.getItem('insikt.token')", json!([]))
        .await?;
    ensure(stored == common::READ_TOKEN, || {
        format!("token stored as {stored}")
    })?;
    ensure(browser.find("#forget-token").await?.is_some(), || {
        "no forget button".into()
    })?;

    // The same tab keeps it: no question on the next page load.
    browser.goto(&app.url("/console#/?state=running")).await?;
    browser
        .wait_text("#jobs", WAIT, |t| t.contains("No running jobs"))
        .await?;
    let open: Value = browser
        .execute(
            "return document.getElementById('token-dialog').open",
            json!([]),
        )
        .await?;
    ensure(open == false, || "asked again for a kept token".into())?;

    // A token the service refuses is dropped and asked for again.
    browser
        .execute(
            "sessionStorage.setItem('insikt.token', 'not-a-token')",
            json!([]),
        )
        .await?;
    browser.execute("location.reload()", json!([])).await?;
    browser
        .wait_text("#token-reason", WAIT, |t| t.contains("may not read"))
        .await?;
    Ok(())
}

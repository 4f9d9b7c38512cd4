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
use insikt::cli::demo::{demo, DemoOptions, DemoOutcome};
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
    for linked in [
        "/console/console.js",
        "/console/charts.js",
        "/console/insights.js",
        "/console/console.css",
    ] {
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

/// The demo's sample in a fresh service, as `scripts/run.sh` loads it
/// (the airports first, so towns are placed); its import.
async fn demo_import(app: &TestApp) -> i64 {
    common::upload_real_airports(app).await;
    let options = DemoOptions {
        url: Some(app.url("")),
        timeout: Duration::from_secs(180),
        ..DemoOptions::default()
    };
    let mut out = Vec::new();
    match demo(&insikt::config::Config::from_env(), &options, &mut out)
        .await
        .expect("the demo runs")
    {
        DemoOutcome::Loaded(report) => report.import_id,
        other => panic!("the demo did not load: {other:?}"),
    }
}

/// The analyst's page on the demo's data: the best opportunity's reason is
/// the first thing read, a click draws its trend, a table downloads as the
/// API's CSV, the funnel plot and the map are drawn, and it fits a phone.
/// With `INSIKT_UPDATE_DOCS=1` the screenshots also replace the README's
/// (docs/analyst-page.png, docs/analyst-page-narrow.png).
#[tokio::test]
async fn an_analyst_reads_the_opportunities_of_the_demo() {
    let app = TestApp::spawn_with(streams::configure).await;
    let import = demo_import(&app).await;
    let downloads = target_file(&format!("downloads-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start_with(1280, 900, Some(&downloads)).await;
    let outcome = analyst_scenario(&app, &browser, import, &downloads).await;
    let _ = std::fs::remove_dir_all(&downloads);
    if let Err(why) = outcome {
        let path = target_file("analyst-page-failure.png");
        let saved = browser.screenshot(&path).await;
        browser.close().await;
        panic!(
            "{why}\nscreenshot of the failure: {} ({saved:?})",
            path.display()
        );
    }
    browser.close().await;
}

/// Saves a screenshot in target/, and in docs/ when asked to.
async fn keep_screenshot(browser: &Browser, name: &str) -> Result<(), String> {
    let path = target_file(name);
    browser.screenshot(&path).await?;
    println!("analyst page screenshot: {}", path.display());
    if std::env::var_os("INSIKT_UPDATE_DOCS").is_some_and(|v| v == "1") {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name);
        std::fs::copy(&path, &docs).map_err(|e| format!("{}: {e}", docs.display()))?;
    }
    Ok(())
}

async fn analyst_scenario(
    app: &TestApp,
    browser: &Browser,
    import: i64,
    downloads: &std::path::Path,
) -> Result<(), String> {
    let (status, body) = json(
        app.get(&format!("/imports/{import}/insights/opportunities"))
            .await,
    )
    .await;
    ensure(status == 200, || format!("opportunities: {status} {body}"))?;
    let answer = if body["data"].is_object() {
        &body["data"]
    } else {
        &body
    };
    let first = &answer["rows"][0];
    let why = first["why"]
        .as_str()
        .ok_or("no first opportunity")?
        .to_owned();

    // From the console's header to the newest import's page.
    browser.goto(&app.url("/console")).await?;
    browser
        .wait_for("header a[href=\"#/insights\"]", WAIT)
        .await?
        .click()
        .await?;
    browser.wait_text("#first-why", WAIT, |t| t == why).await?;
    let url: Value = browser.execute("return location.hash", json!([])).await?;
    ensure(url == format!("#/imports/{import}/insights"), || {
        format!("the header led to {url}")
    })?;
    browser
        .wait_text(
            "#opportunities-table tbody tr:first-child td.why",
            WAIT,
            |t| t == why,
        )
        .await?;

    // A click on the first row draws its weekly trend, and the URL keeps it.
    browser
        .wait_for(
            "#opportunities-table tbody tr:first-child .trend-button",
            WAIT,
        )
        .await?
        .click()
        .await?;
    let town = first["town"].as_str().unwrap_or_default().to_owned();
    browser
        .wait_text("#trend figcaption", WAIT, |t| t.contains(&town))
        .await?;
    let drawn: Value = browser
        .execute(
            "const points = document.querySelectorAll('#trend svg circle.askers'); \
             return [points.length, location.hash]",
            json!([]),
        )
        .await?;
    ensure(drawn[0].as_u64().unwrap_or(0) >= 2, || {
        format!("the trend has {drawn}")
    })?;
    ensure(
        drawn[1].as_str().unwrap_or_default().contains("cell="),
        || format!("the selection is not in the URL: {drawn}"),
    )?;

    // The opportunities as the API's CSV, downloaded by the browser.
    browser
        .wait_for("#opportunities a.csv", WAIT)
        .await?
        .click()
        .await?;
    let file = downloads.join(format!("import-{import}-opportunities.csv"));
    let csv = eventually("the CSV downloaded", WAIT, || async {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .await;
    let header = csv.lines().next().unwrap_or_default();
    ensure(
        header.starts_with("rank,course,town,age_group,channel,score,"),
        || format!("CSV header {header:?}"),
    )?;
    ensure(
        csv.lines().nth(1).is_some_and(|l| l.contains(&town)),
        || format!("CSV {csv}"),
    )?;

    // The funnel plot: one dot per group of the API's rates, and its legend.
    let (_, rates) = json(
        app.get(&format!(
            "/imports/{import}/insights/rates?by=town&limit=10000"
        ))
        .await,
    )
    .await;
    let groups = rates["data"]["rows"].as_array().map_or(0, Vec::len);
    browser.wait_for("#funnel svg .legend", WAIT).await?;
    let dots: Value = browser
        .execute(
            "return document.querySelectorAll('#funnel svg circle.dot:not(.legend-item *)').length",
            json!([]),
        )
        .await?;
    ensure(groups > 0 && dots.as_u64() == Some(groups as u64), || {
        format!("{dots} dots for {groups} towns")
    })?;
    // The limits are the binomial ones around the overall rate, with z the
    // normal quantiles of 97.5 % and 99.9 % (scipy: norm.ppf(0.975) = 1.95996,
    // norm.ppf(0.999) = 3.09023); for p = 0.3, n = 100:
    // python3 -c "import math; print([0.3 + s*z*math.sqrt(0.21/100) for z in (1.96, 3.09) for s in (-1, 1)])"
    let limits: Value = browser
        .execute(
            "return [funnelLimits(0.3, 100, Z95), funnelLimits(0.3, 100, Z998), funnelLimits(0.001, 4, Z998)]",
            json!([]),
        )
        .await?;
    let expected = [
        0.210_181_516_378_865_5,
        0.389_818_483_621_134_5,
        0.158_398_411_025_864_5,
        0.441_601_588_974_135_4,
    ];
    let got: Vec<f64> = limits[0]
        .as_array()
        .into_iter()
        .chain(limits[1].as_array())
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    ensure(
        got.len() == 4 && got.iter().zip(expected).all(|(g, e)| (g - e).abs() < 1e-12),
        || format!("funnel limits {limits}"),
    )?;
    // Clipped to [0, 1].
    ensure(limits[2][0] == 0.0, || format!("funnel limits {limits}"))?;
    browser.wait_for("#map img", WAIT).await?;
    browser
        .wait_text("#emerging", WAIT, |t| t.contains("tested"))
        .await?;
    let map: Value = browser
        .execute(
            "const img = document.querySelector('#map img'); return img.complete && img.naturalWidth > 0",
            json!([]),
        )
        .await?;
    ensure(map == true, || "the map did not load".into())?;
    // Tall enough to show the reason, the table, the trend and the funnel plot.
    browser.set_window(1280, 2100).await?;
    browser.execute("window.scrollTo(0, 0)", json!([])).await?;
    keep_screenshot(browser, "analyst-page.png").await?;

    // A phone: nothing wider than the screen, the reason still first.
    browser.set_window(390, 844).await?;
    browser.execute("location.reload()", json!([])).await?;
    browser.wait_text("#first-why", WAIT, |t| t == why).await?;
    let overflow: Value = browser
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await?;
    ensure(overflow.as_i64() == Some(0), || {
        format!("{overflow} px wider than the screen")
    })?;
    // The answer, not the filters, in the picture: the reason and the first cards.
    browser
        .execute(
            "document.getElementById('opportunities-title').scrollIntoView()",
            json!([]),
        )
        .await?;
    keep_screenshot(browser, "analyst-page-narrow.png").await?;
    demand_heat_map(app, browser, import).await
}

/// The demand heat map the console shows, on the demo's data: the age groups
/// in their natural order (not by their totals), only rows and columns that
/// have a group, a count on every cell, a colour scale.
async fn demand_heat_map(app: &TestApp, browser: &Browser, import: i64) -> Result<(), String> {
    let (_, body) = json(
        app.get(&format!("/imports/{import}/demand?by=town,age_group"))
            .await,
    )
    .await;
    let rows = body["data"].as_array().cloned().unwrap_or_default();
    let first_age = |g: &str| {
        g.split(['-', '+'])
            .next()
            .and_then(|a| a.parse::<u32>().ok())
    };
    let mut ages: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["age_group"].as_str())
        .collect();
    ages.sort_by_key(|g| first_age(g));
    ages.dedup();
    let svg = app
        .get(&format!("/imports/{import}/demand.svg?by=town,age_group"))
        .await
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let document = roxmltree::Document::parse(&svg).map_err(|e| e.to_string())?;
    let of_class = |class: &str| -> Vec<String> {
        document
            .descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .map(|n| n.text().unwrap_or_default().to_owned())
            .collect()
    };
    ensure(ages.len() > 2 && of_class("y-label") == ages, || {
        format!("rows {:?}, natural order {ages:?}", of_class("y-label"))
    })?;
    let cells = document
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("cell"))
        .count();
    ensure(
        cells == rows.len() && of_class("value").len() == rows.len(),
        || {
            format!(
                "{cells} cells, {} values for {} groups",
                of_class("value").len(),
                rows.len()
            )
        },
    )?;
    ensure(of_class("legend").iter().any(|t| t == "statements"), || {
        "no colour scale".into()
    })?;
    browser.set_window(1280, 900).await?;
    browser
        .goto(&app.url(&format!(
            "/console#/imports/{import}/demand?by=town,age_group"
        )))
        .await?;
    browser.wait_for("#demand-chart img", WAIT).await?;
    let path = target_file("demand-heat-map.png");
    browser.screenshot(&path).await?;
    println!("demand heat map: {}", path.display());
    Ok(())
}

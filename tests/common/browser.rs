//! Headless Chromium driven over the W3C WebDriver protocol: chromedriver on
//! a free port, spoken to with the reqwest client the tests already have.
//! (`fantoccini` would bring ~23 more crates, among them an ICU segmenter,
//! for the dozen commands these tests need.)
//!
//! Every call returns `Result<_, String>`, so a scenario can stop at its
//! first failure and still take a screenshot of what the browser showed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub fn chromium() -> String {
    std::env::var("INSIKT_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

pub fn chromedriver() -> String {
    std::env::var("INSIKT_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned())
}

/// A chromedriver process (killed on drop) and one browser session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
    _driver: tokio::process::Child,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Self {
        Self::start_with(width, height, None).await
    }

    /// As [`Browser::start`], saving downloads in `downloads` without asking.
    pub async fn start_with(width: u32, height: u32, downloads: Option<&Path>) -> Self {
        let port = super::streams::free_port();
        let driver = tokio::process::Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): scripts/services.sh up installs chromium-driver",
                    chromedriver()
                )
            });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        super::streams::eventually("chromedriver ready", Duration::from_secs(30), || async {
            let status: Value = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (status["value"]["ready"] == true).then_some(())
        })
        .await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                // Root in CI has no sandbox; a small /dev/shm breaks rendering.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")],
                "prefs": downloads.map(|dir| json!({
                    "download.default_directory": dir,
                    "download.prompt_for_download": false,
                })).unwrap_or_else(|| json!({})),
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Self {
            http,
            session,
            base,
            _driver: driver,
        }
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method.clone(), &url);
        if method == reqwest::Method::POST {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {}", answer["value"]));
        }
        Ok(answer["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await
            .map(drop)
    }

    /// The first element matching the CSS `selector`, if any now.
    pub async fn find(&self, selector: &str) -> Result<Option<Element<'_>>, String> {
        let body = json!({"using": "css selector", "value": selector});
        match self.command(reqwest::Method::POST, "/element", body).await {
            Ok(value) => Ok(value[ELEMENT].as_str().map(|id| Element {
                browser: self,
                id: id.to_owned(),
            })),
            Err(e) if e.contains("no such element") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` for an element matching `selector` whose text
    /// satisfies `accept`; its text.
    pub async fn wait_text(
        &self,
        selector: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(element) = self.find(selector).await? {
                // The page may replace the element between find and read.
                if let Ok(text) = element.text().await {
                    if accept(&text) {
                        return Ok(text);
                    }
                    last = Some(text);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{selector}: not as expected within {timeout:?}; last text {last:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for an element matching `selector` and returns it.
    pub async fn wait_for(&self, selector: &str, timeout: Duration) -> Result<Element<'_>, String> {
        self.wait_text(selector, timeout, |_| true).await?;
        self.find(selector)
            .await?
            .ok_or_else(|| format!("{selector} vanished"))
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn execute(&self, script: &str, args: Value) -> Result<Value, String> {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    pub async fn set_window(&self, width: u32, height: u32) -> Result<(), String> {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await
        .map(drop)
    }

    /// A PNG of the viewport written to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        let value = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub async fn close(self) {
        let _ = self.command(reqwest::Method::DELETE, "", Value::Null).await;
    }
}

pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    pub async fn click(&self) -> Result<(), String> {
        let path = format!("/element/{}/click", self.id);
        self.browser
            .command(reqwest::Method::POST, &path, json!({}))
            .await
            .map(drop)
    }

    /// Types `text` into the element, as keystrokes.
    pub async fn send_keys(&self, text: &str) -> Result<(), String> {
        let path = format!("/element/{}/value", self.id);
        self.browser
            .command(reqwest::Method::POST, &path, json!({ "text": text }))
            .await
            .map(drop)
    }

    pub async fn text(&self) -> Result<String, String> {
        let path = format!("/element/{}/text", self.id);
        let value = self
            .browser
            .command(reqwest::Method::GET, &path, Value::Null)
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    pub async fn tag_name(&self) -> Result<String, String> {
        let path = format!("/element/{}/name", self.id);
        let value = self
            .browser
            .command(reqwest::Method::GET, &path, Value::Null)
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }
}

/// `target/NAME`: where the browser tests leave their screenshots.
pub fn target_file(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

//! The service's API as the demo talks to it: requests with the token,
//! answers or the service's reasons, and the waits (ready, the topic, the
//! statements stored, the demand settled).

use std::io::Write;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::ProgressBar;
use serde_json::{json, Value};

use super::{say, BY, IN_FLIGHT};
use crate::cli::{describe, CliError};
use crate::demo::{Sample, PLACE_FIXES};

/// The service's API, as the demo uses it.
pub(super) struct Api {
    pub(super) client: reqwest::Client,
    pub(super) base: String,
    pub(super) token: Option<String>,
}

impl Api {
    pub(super) fn unexpected(&self, path: &str, body: &Value) -> CliError {
        CliError::Unexpected {
            url: format!("{}{path}", self.base),
            body: body.to_string(),
        }
    }

    /// The body of a 2xx answer, or the service's reasons.
    pub(super) async fn answer(
        &self,
        url: String,
        response: reqwest::Response,
    ) -> Result<Value, CliError> {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(CliError::Refused {
            url,
            status: status.as_u16(),
            message: describe(&body),
        })
    }

    /// The `data` of a GET's answer.
    pub(super) async fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.send(reqwest::Method::GET, path, None).await?["data"].take())
    }

    /// Fixes the places of the sample's towns whose names are ambiguous
    /// (`PUT /towns/{name}`), and says so. Without the airports loaded the
    /// service refuses the fix: the demo says how to make it, and goes on.
    pub(super) async fn fix_places<W: Write>(&self, out: &mut W) -> Result<(), CliError> {
        for (town, country) in PLACE_FIXES {
            let path = format!("/towns/{town}");
            let body = json!({ "country": country });
            match self.send(reqwest::Method::PUT, &path, Some(&body)).await {
                Ok(_) => say(
                    out,
                    &format!(
                        "placed {town} in {country} (PUT {}{path} {body}): the airports \
                         file has a {town} in more than one country",
                        self.base
                    ),
                )?,
                Err(CliError::Refused {
                    status: 400,
                    message,
                    ..
                }) => say(
                    out,
                    &format!(
                        "could not place {town} in {country} ({message}); once the airports \
                         are loaded (insikt upload-airports data/airports.csv): PUT \
                         {}{path} {body}",
                        self.base
                    ),
                )?,
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// The `data` of a POST's answer.
    pub(super) async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        Ok(self.send(reqwest::Method::POST, path, Some(body)).await?["data"].take())
    }

    pub(super) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|source| CliError::Request {
            url: url.clone(),
            source,
        })?;
        self.answer(url, response).await
    }

    /// Waits for `GET /readyz` to answer 200 (a Kubernetes Job or a script
    /// may start the demo beside the service).
    pub(super) async fn wait_ready(&self, timeout: Duration) -> Result<(), CliError> {
        let url = format!("{}/readyz", self.base);
        poll(timeout, Duration::from_millis(500), || async {
            let last = match self.client.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Ok(Poll::Ready(())),
                Ok(response) => format!("it answered {}", response.status()),
                Err(error) => error.to_string(),
            };
            Ok(Poll::Wait(format!("{url} to be ready ({last})")))
        })
        .await
    }

    /// Sends the chunks, a few requests at a time, each retried while the
    /// service is unavailable (503: nothing of it was accepted, and
    /// statement ids dedup anyway). The job's name, when anything was sent.
    pub(super) async fn send_statements(
        &self,
        path: &str,
        chunks: &[Vec<Value>],
        progress: &ProgressBar,
    ) -> Result<Option<String>, CliError> {
        let sends = chunks.iter().map(|chunk| async move {
            let body = Value::Array(chunk.clone());
            let mut tries = 0;
            loop {
                match self.post(path, &body).await {
                    Err(CliError::Refused { status: 503, .. }) if tries < 20 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Ok(accepted) => {
                        progress.inc(chunk.len() as u64);
                        return Ok(accepted["job"].as_str().map(str::to_owned));
                    }
                    Err(error) => return Err(error),
                }
            }
        });
        let mut answers = futures_util::stream::iter(sends).buffer_unordered(IN_FLIGHT);
        let mut job = None;
        while let Some(answer) = answers.next().await {
            job = answer?.or(job);
        }
        Ok(job)
    }

    /// The job's topic once it exists (the statements just accepted made it).
    pub(super) async fn topic(
        &self,
        job: &Option<String>,
        import: i64,
        timeout: Duration,
    ) -> Result<String, CliError> {
        let path = match job {
            Some(name) => format!("/jobs/{name}"),
            None => format!("/jobs?import={import}"),
        };
        poll(timeout, Duration::from_millis(200), || async {
            let answer = self.get(&path).await?;
            let shown = if answer.is_array() {
                &answer[0]
            } else {
                &answer
            };
            if shown["state"] != "pending" {
                if let Some(topic) = shown["topic"].as_str() {
                    return Ok(Poll::Ready(topic.to_owned()));
                }
            }
            Ok(Poll::Wait(format!("the topic of import {import}")))
        })
        .await
    }

    /// Waits until the job stored every distinct statement and dead-lettered
    /// every bad record; the number stored.
    pub(super) async fn wait_stored(
        &self,
        job: &str,
        sample: &Sample,
        bad: usize,
        timeout: Duration,
        progress: &ProgressBar,
    ) -> Result<i64, CliError> {
        let want = sample.statements.len() as i64;
        progress.set_length(want as u64);
        let path = format!("/jobs/{job}");
        poll(timeout, Duration::from_millis(200), || async {
            let shown = self.get(&path).await?;
            let stored = shown["statements_stored"].as_i64().unwrap_or(0);
            let dead = shown["dead_letters"].as_i64().unwrap_or(0);
            progress.set_position(stored.max(0) as u64);
            if stored >= want && dead >= bad as i64 {
                return Ok(Poll::Ready(stored));
            }
            let why = format!(
                "job {job} to store {want} statements and {bad} dead letters \
                 (it is {}, with {stored} and {dead}; last error: {})",
                shown["state"], shown["last_error"]
            );
            Ok(if shown["state"] == "failed" {
                Poll::GiveUp(why)
            } else {
                Poll::Wait(why)
            })
        })
        .await
    }

    /// Demand trails the stored statements by up to about a second (the job
    /// folds its counts): waits until it counts all of them, or, when small
    /// groups are left out (`INSIKT_MIN_GROUP_SIZE`), until what it shows
    /// has not changed for a few seconds.
    pub(super) async fn wait_demand(
        &self,
        import: i64,
        stored: i64,
        timeout: Duration,
    ) -> Result<Vec<Value>, CliError> {
        let path = format!("/imports/{import}/demand?by={BY}");
        let last = std::cell::Cell::new((-1i64, Instant::now()));
        poll(timeout, Duration::from_millis(200), || async {
            let mut answer = self.send(reqwest::Method::GET, &path, None).await?;
            let rows = answer["data"]
                .take()
                .as_array()
                .cloned()
                .unwrap_or_default();
            let suppressed = answer["suppressed"].as_u64().unwrap_or(0);
            let counted: i64 = rows.iter().filter_map(|r| r["statements"].as_i64()).sum();
            if counted >= stored {
                return Ok(Poll::Ready(rows));
            }
            let (before, since) = last.get();
            if counted != before {
                last.set((counted, Instant::now()));
            } else if suppressed > 0 && since.elapsed() >= SETTLED {
                return Ok(Poll::Ready(rows));
            }
            Ok(Poll::Wait(format!(
                "demand of import {import} to count {stored} statements (it counts {counted}, \
                 {suppressed} small groups left out)"
            )))
        })
        .await
    }
}

/// How long demand must stay the same to count as settled when small groups
/// are left out (the job folds its counts about once a second).
const SETTLED: Duration = Duration::from_secs(3);

/// One look at what the demo waits for.
pub(super) enum Poll<T> {
    Ready(T),
    /// Not yet: what is awaited, for the error if time runs out.
    Wait(String),
    /// It will never be: why.
    GiveUp(String),
}

/// Looks every `every` until `check` is ready, gives up, or `timeout` passed.
pub(super) async fn poll<T, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, CliError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Poll<T>, CliError>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let awaited = match check().await? {
            Poll::Ready(value) => return Ok(value),
            Poll::GiveUp(why) => return Err(CliError::Timeout(why)),
            Poll::Wait(awaited) => awaited,
        };
        if Instant::now() >= deadline {
            return Err(CliError::Timeout(awaited));
        }
        tokio::time::sleep(every).await;
    }
}

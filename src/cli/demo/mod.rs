//! `insikt demo [--force]`: streams the seeded sample (`crate::demo`)
//! through a running service as a user would — `POST /imports`, then
//! `POST /imports/{id}/statements` — plus a few bad records produced
//! straight to the import's Kafka topic (the API refuses them), waits until
//! the job stored everything, and prints the best opportunities (the story
//! the sample plants, `crate::demo::STORY`, first), the demand and where to
//! look.

mod insights;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::{describe, CliError};
use crate::config::Config;
use crate::demo::{BadRecord, Plan, Resident, Sample, PLACE_FIXES};
use crate::kafka::Producer;

/// Statements per request, and requests in flight (the service commits
/// requests waiting together in one Kafka transaction).
const CHUNK: usize = 1000;
const IN_FLIGHT: usize = 4;
/// The demand grouping the demo shows.
const BY: &str = "town,age_group,channel";

/// What to run and how long to wait.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Base URL of the service [default: http://<listen address>].
    pub url: Option<String>,
    /// Add a sample import even when the service already has imports.
    pub force: bool,
    pub plan: Plan,
    /// Longest wait for the service to be ready, and for the job to store
    /// everything.
    pub timeout: Duration,
    /// Demand rows printed.
    pub top: usize,
    /// A bearer token with the write scope, for a service that needs one.
    pub token: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            url: None,
            force: false,
            plan: Plan::default(),
            timeout: Duration::from_secs(300),
            top: 8,
            token: None,
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub enum DemoOutcome {
    /// The service already had this many imports (jobs) and `force` was off.
    Skipped {
        imports: usize,
    },
    Loaded(Box<DemoReport>),
}

/// The sample import as the service stored it.
#[derive(Debug)]
pub struct DemoReport {
    pub import_id: i64,
    pub job: String,
    pub sample: Sample,
    /// The records produced around the API, which the job dead-lettered.
    pub bad: Vec<BadRecord>,
    /// `GET /imports/{id}/demand?by=town,age_group,channel`'s rows.
    pub demand: Vec<Value>,
    /// `GET /imports/{id}/insights/opportunities`'s best rows.
    pub opportunities: Vec<Value>,
}

/// Runs the demo against the service at `options.url`, writing its report to `out`.
pub async fn demo<W: Write>(
    config: &Config,
    options: &DemoOptions,
    out: &mut W,
) -> Result<DemoOutcome, CliError> {
    let base = options
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let api = Api {
        client: reqwest::Client::new(),
        base: base.trim_end_matches('/').to_owned(),
        token: options.token.clone(),
    };
    api.wait_ready(options.timeout).await?;

    let jobs = api.get("/jobs").await?;
    let jobs = jobs.as_array().cloned().unwrap_or_default();
    if !jobs.is_empty() && !options.force {
        say(
            out,
            &format!(
                "insikt demo: {} already holds {} import(s) (GET {}/jobs); the sample is \
                 only added to an empty one (`insikt demo --force` adds another).",
                api.base,
                jobs.len(),
                api.base
            ),
        )?;
        for job in jobs.iter().rev().take(3) {
            say(
                out,
                &format!(
                    "  import {}: {}/imports/{}/demand?by={BY}",
                    job["import"], api.base, job["import"]
                ),
            )?;
        }
        return Ok(DemoOutcome::Skipped {
            imports: jobs.len(),
        });
    }

    let sample = Sample::generate(&options.plan, chrono::Utc::now().date_naive());
    let citizens: Vec<Value> = sample.residents.iter().map(Resident::to_json).collect();
    let created = api
        .post("/imports", &json!({ "citizens": citizens }))
        .await?;
    let import_id = created["import_id"]
        .as_i64()
        .ok_or_else(|| api.unexpected("/imports", &created))?;
    say(
        out,
        &format!(
            "insikt demo: import {import_id}, {} residents in {} towns (seed {})",
            sample.residents.len(),
            sample.towns().len(),
            sample.plan.seed
        ),
    )?;

    api.fix_places(out).await?;
    api.offer_courses(out).await?;

    let bad = sample.bad_records(import_id);
    let progress = bar((sample.stream.len() + bad.len()) as u64);
    progress.set_message("statements");
    let chunks: Vec<Vec<Value>> = sample
        .stream
        .chunks(CHUNK)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&i| sample.statements[i].to_json())
                .collect()
        })
        .collect();
    let path = format!("/imports/{import_id}/statements");
    let (first, second) = chunks.split_at(chunks.len() / 2);
    let mut job = api.send_statements(&path, first, &progress).await?;

    // Mid-stream, so the job is seen to go on past them.
    let topic = api.topic(&job, import_id, options.timeout).await?;
    let records = bad
        .iter()
        .map(|b| (b.key.clone(), b.payload.clone().into_bytes()))
        .collect();
    Producer::connect(&config.kafka_brokers, "insikt-demo")?
        .send_all(&topic, records)
        .await?;
    progress.inc(bad.len() as u64);
    if let Some(name) = api.send_statements(&path, second, &progress).await? {
        job = Some(name);
    }
    let job = job.ok_or_else(|| api.unexpected(&path, &Value::Null))?;

    progress.set_message("stored");
    progress.set_position(0);
    let stored = api
        .wait_stored(&job, &sample, bad.len(), options.timeout, &progress)
        .await?;
    let demand = api.wait_demand(import_id, stored, options.timeout).await?;
    let opportunities = api
        .opportunities(import_id, stored, options.timeout)
        .await?;
    progress.finish_and_clear();

    say(
        out,
        &format!(
            "sent {} statements ({} of them twice) and {} bad records to job {job};\n\
             stored {stored} statements, {} dead letters\n",
            sample.statements.len(),
            sample.duplicates(),
            bad.len(),
            bad.len()
        ),
    )?;
    let base = &api.base;
    say(
        out,
        &format!(
            "What to open, for whom, where (the best {} cells of course, town, age group \
             and channel):\n{}\n\nThe analyst's page: {base}/console#/imports/{import_id}/insights\n\
             (the same as JSON: {base}/imports/{import_id}/insights/opportunities)\n",
            opportunities.len(),
            insights::text(&opportunities)
        ),
    )?;
    say(
        out,
        &format!(
            "Demand by town, age group and channel (top {} of {} groups):\n{}",
            options.top.min(demand.len()),
            demand.len(),
            table(&demand, options.top)
        ),
    )?;
    say(
        out,
        &format!(
            "\nWhere to look:\n\
             \x20 demand        {base}/imports/{import_id}/demand?by={BY}\n\
             \x20 chart         {base}/imports/{import_id}/demand.svg?by=town,age_group\n\
             \x20 per airport   {base}/imports/{import_id}/towns/airports\n\
             \x20 near MAD      {base}/imports/{import_id}/insights/near?airport=MAD&radius_km=600\n\
             \x20 map           {base}/imports/{import_id}/insights/map.svg\n\
             \x20 places        {base}/towns\n\
             \x20 job           {job}: {base}/jobs/{job}\n\
             \x20 dead letters  {base}/imports/{import_id}/dead-letters\n\
             \x20 API docs      {base}/docs/"
        ),
    )?;
    Ok(DemoOutcome::Loaded(Box::new(DemoReport {
        import_id,
        job,
        sample,
        bad,
        demand,
        opportunities,
    })))
}

fn say<W: Write>(out: &mut W, text: &str) -> Result<(), CliError> {
    writeln!(out, "{text}").map_err(CliError::Output)
}

/// A progress bar on a terminal, nothing otherwise (logs, CI, Kubernetes).
fn bar(length: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg:>10} [{wide_bar}] {pos}/{len} {per_sec}")
    {
        bar.set_style(style);
    }
    bar
}

/// The rows as an aligned text table, the first `top` of them.
fn table(rows: &[Value], top: usize) -> String {
    let header = ["town", "age_group", "channel", "statements", "residents"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .take(top)
        .map(|row| {
            header
                .iter()
                .map(|key| match &row[*key] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let mut text = String::new();
        for (c, value) in values.iter().enumerate() {
            // Names to the left, numbers to the right.
            if c < 3 {
                text.push_str(&format!("{value:<w$}  ", w = widths[c]));
            } else {
                text.push_str(&format!("{value:>w$}  ", w = widths[c]));
            }
        }
        text.trim_end().to_owned()
    };
    let mut text = line(header.to_vec());
    for row in &cells {
        text.push('\n');
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn unexpected(&self, path: &str, body: &Value) -> CliError {
        CliError::Unexpected {
            url: format!("{}{path}", self.base),
            body: body.to_string(),
        }
    }

    /// The body of a 2xx answer, or the service's reasons.
    async fn answer(&self, url: String, response: reqwest::Response) -> Result<Value, CliError> {
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
    async fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.send(reqwest::Method::GET, path, None).await?["data"].take())
    }

    /// Fixes the places of the sample's towns whose names are ambiguous
    /// (`PUT /towns/{name}`), and says so. Without the airports loaded the
    /// service refuses the fix: the demo says how to make it, and goes on.
    async fn fix_places<W: Write>(&self, out: &mut W) -> Result<(), CliError> {
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
    async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        Ok(self.send(reqwest::Method::POST, path, Some(body)).await?["data"].take())
    }

    async fn send(
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
    async fn wait_ready(&self, timeout: Duration) -> Result<(), CliError> {
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
    async fn send_statements(
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
    async fn topic(
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
    async fn wait_stored(
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
    async fn wait_demand(
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
enum Poll<T> {
    Ready(T),
    /// Not yet: what is awaited, for the error if time runs out.
    Wait(String),
    /// It will never be: why.
    GiveUp(String),
}

/// Looks every `every` until `check` is ready, gives up, or `timeout` passed.
async fn poll<T, F, Fut>(timeout: Duration, every: Duration, mut check: F) -> Result<T, CliError>
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_names_left_and_numbers_right() {
        let rows = vec![
            json!({"town": "London", "age_group": "25-34", "channel": "instagram",
                   "statements": 1234, "residents": 210}),
            json!({"town": "Sochi", "age_group": "65+", "channel": "radio",
                   "statements": 7, "residents": 3}),
            json!({"town": "Paris", "age_group": "0-17", "channel": "tiktok",
                   "statements": 1, "residents": 1}),
        ];
        assert_eq!(
            table(&rows, 2),
            "town    age_group  channel    statements  residents\n\
             London  25-34      instagram        1234        210\n\
             Sochi   65+        radio               7          3"
        );
    }
}

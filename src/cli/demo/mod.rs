//! `insikt demo [--force]`: streams the seeded sample (`crate::demo`)
//! through a running service as a user would — `POST /imports`, then
//! `POST /imports/{id}/statements` — plus a few bad records produced
//! straight to the import's Kafka topic (the API refuses them), waits until
//! the job stored everything, and prints the best opportunities (the story
//! the sample plants, `crate::demo::STORY`, first), the demand and where to
//! look.

mod api;
mod insights;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::CliError;
use crate::config::Config;
use crate::demo::{BadRecord, Plan, Resident, Sample};
use crate::kafka::Producer;
use api::Api;

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

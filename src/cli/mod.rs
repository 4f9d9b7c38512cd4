//! Client-side commands: `insikt upload-airports FILE [--url URL]` streams a
//! CSV file to a running service, with a progress bar when stderr is a
//! terminal; `insikt demo` (see [`demo`]) streams a sample import through it.

pub mod demo;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::config::Config;

/// Bytes read from the file per chunk sent.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("request to {url} failed: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error(transparent)]
    Jobs(#[from] crate::jobs::JobsError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} answered something unexpected: {body}")]
    Unexpected { url: String, body: String },
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaClientError),
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("cannot write the report: {0}")]
    Output(std::io::Error),
}

/// What the service reported for an accepted upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    pub inserted: u64,
    pub updated: u64,
}

/// Streams `file` to `POST {url}/airports/upload` (default: the configured
/// listen address) and reports the counts, or the service's reasons.
pub async fn upload_airports(
    config: &Config,
    file: &Path,
    url: Option<&str>,
    token: Option<&str>,
) -> Result<Uploaded, CliError> {
    let base = url.map_or_else(|| format!("http://{}", config.listen), str::to_owned);
    let url = format!("{}/airports/upload", base.trim_end_matches('/'));
    let file_error = |source| CliError::File {
        path: file.to_owned(),
        source,
    };
    let handle = tokio::fs::File::open(file).await.map_err(file_error)?;
    let length = handle.metadata().await.map_err(file_error)?.len();

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(length);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec}, {eta} left",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };

    // Read and send one chunk at a time; the file is never held whole.
    let chunks = futures_util::stream::unfold(
        (Some(handle), progress.clone()),
        |(handle, progress)| async move {
            let mut handle = handle?;
            let mut buffer = vec![0u8; CHUNK];
            match handle.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    progress.inc(n as u64);
                    Some((Ok(Bytes::from(buffer)), (Some(handle), progress)))
                }
                Err(error) => Some((Err(error), (None, progress))),
            }
        },
    );

    let request_error = |source| CliError::Request {
        url: url.clone(),
        source,
    };
    let mut request = reqwest::Client::new()
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(reqwest::header::CONTENT_LENGTH, length);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .map_err(request_error)?;
    progress.finish_and_clear();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        let count = |key: &str| body["data"][key].as_u64().unwrap_or(0);
        return Ok(Uploaded {
            inserted: count("inserted"),
            updated: count("updated"),
        });
    }
    Err(CliError::Refused {
        url,
        status: status.as_u16(),
        message: describe(&body),
    })
}

/// The error envelope as lines a person can read: the message, then each bad line.
fn describe(body: &Value) -> String {
    let error = &body["error"];
    let mut text = error["message"]
        .as_str()
        .unwrap_or("no error message")
        .to_owned();
    if let Some(rows) = error["fields"]["errors"].as_array() {
        for row in rows {
            text.push_str(&format!(
                "\n  line {}: {}",
                row["line"],
                row["reason"].as_str().unwrap_or("")
            ));
        }
    }
    text
}

/// Replays `job`'s archive into import `into`, reading the configured
/// archive store and writing to the configured database, with a progress
/// bar of the records read when stderr is a terminal.
pub async fn replay_archive(
    config: &Config,
    job: &str,
    into: i64,
) -> Result<crate::jobs::Replayed, CliError> {
    let pool = crate::db::pool(&config.database_url, 4)?;
    let store = crate::archive::ArchiveStore::from_url(&config.archive_url())?;
    let total = crate::jobs::replay_total(&pool, job).await?;
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total.max(0) as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {pos}/{len} records [{wide_bar}] {per_sec}, {eta} left",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let replayed = crate::jobs::replay(&pool, &store, job, into, config.job_batch_size, |read| {
        progress.set_position(read)
    })
    .await;
    progress.finish_and_clear();
    pool.close();
    Ok(replayed?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_list_the_bad_lines() {
        let body = serde_json::json!({"error": {"code": "validation_failed", "message": "bad",
            "fields": {"errors": [{"line": 3, "reason": "latitude 123 is outside [-90, 90]"}]}}});
        assert_eq!(
            describe(&body),
            "bad\n  line 3: latitude 123 is outside [-90, 90]"
        );
    }
}

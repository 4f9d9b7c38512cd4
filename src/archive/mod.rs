//! Long-term archive of stream data in an object store: a local directory
//! (`file:///path`) or an S3-compatible bucket (`s3://bucket/prefix`), one
//! code path for both (the `object_store` crate).
//!
//! Layout under the store's root: `{job}/{partition}-{from}-{to}.ndjson.gz`
//! per archived offset range (`to` exclusive), gzip-compressed NDJSON with
//! one record a line ([`Line`]), and `{job}/manifest.json` ([`Manifest`]).
//! Objects are written by multipart upload in parts of [`PART_SIZE`]: at
//! most a few parts are ever in memory, whatever the range's length.
//! Knows neither Kafka nor PostgreSQL nor HTTP.

mod object;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, PutMultipartOptions, PutOptions, RetryConfig};
use serde::{Deserialize, Serialize};

pub use object::{LineReader, ObjectWriter, Written};

/// Size of an uploaded part. S3 refuses parts under 5 MiB (but the last).
pub const PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts uploaded at once per object: memory stays near
/// `(PARTS_IN_FLIGHT + 1) * PART_SIZE` per upload.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive URL {0:?}: must be file:///absolute/path or s3://bucket[/prefix]")]
    Url(String),
    #[error("archive directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The object store refused or could not be reached (after its own retries).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("object {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// An archived record, as one NDJSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The record's timestamp (ms since the epoch): a statement's time when it has no `ts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// The record's payload as it was produced (a statement's JSON).
    pub payload: String,
}

/// One archived object, as the manifest and `job_archives` describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectInfo {
    pub partition: i32,
    /// First offset of the range.
    pub from_offset: i64,
    /// End of the range (exclusive).
    pub to_offset: i64,
    /// Records in the object (fewer than the range: transaction markers).
    pub count: i64,
    /// Compressed size in bytes.
    pub bytes: i64,
    /// SHA-256 of the object's bytes, in hex.
    pub sha256: String,
    pub url: String,
}

/// `{job}/manifest.json`: what the job's archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub job: String,
    pub topic: String,
    pub import: i64,
    pub count: i64,
    pub objects: Vec<ObjectInfo>,
}

/// The configured archive: a store and where under it the objects go.
#[derive(Clone)]
pub struct ArchiveStore {
    store: Arc<dyn ObjectStore>,
    /// Keys start with this (an S3 prefix; empty for a directory).
    prefix: Path,
    /// The URL of the store's root, without a trailing slash.
    root_url: String,
}

impl std::fmt::Debug for ArchiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveStore")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

/// Retries of one request before the error reaches the job, whose own
/// restarts (with backoff) then take over: short, so an outage shows.
fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
        ..RetryConfig::default()
    }
}

impl ArchiveStore {
    /// `file:///path` (the directory is created) or `s3://bucket/prefix`
    /// with the standard `AWS_*` variables (endpoint, region, keys, `AWS_ALLOW_HTTP`).
    pub fn from_url(url: &str) -> Result<Self, ArchiveError> {
        let url = url.trim_end_matches('/');
        if let Some(dir) = url.strip_prefix("file://") {
            let dir = PathBuf::from(dir);
            if !dir.is_absolute() {
                return Err(ArchiveError::Url(url.to_owned()));
            }
            std::fs::create_dir_all(&dir).map_err(|source| ArchiveError::Directory {
                path: dir.clone(),
                source,
            })?;
            let store = LocalFileSystem::new_with_prefix(&dir)?;
            return Ok(Self {
                store: Arc::new(store),
                prefix: Path::default(),
                root_url: url.to_owned(),
            });
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(ArchiveError::Url(url.to_owned()));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ArchiveError::Url(url.to_owned()));
        }
        let prefix = Path::parse(prefix).map_err(|_| ArchiveError::Url(url.to_owned()))?;
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry())
            .build()?;
        Ok(Self {
            store: Arc::new(store),
            prefix,
            root_url: format!("s3://{bucket}"),
        })
    }

    /// The default archive: the directory `dir` (relative to the working directory).
    pub fn directory_url(dir: &std::path::Path) -> String {
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        format!("file://{}", absolute.display())
    }

    /// The URL objects are under.
    pub fn url(&self) -> String {
        if self.prefix.as_ref().is_empty() {
            self.root_url.clone()
        } else {
            format!("{}/{}", self.root_url, self.prefix)
        }
    }

    fn key(&self, job: &str, name: &str) -> Path {
        let mut key = self.prefix.clone();
        for part in [job, name] {
            key = key.join(part);
        }
        key
    }

    /// The object of `partition`'s offsets `[from, to)`.
    pub fn object_key(&self, job: &str, partition: i32, from: i64, to: i64) -> Path {
        self.key(job, &format!("{partition}-{from}-{to}.ndjson.gz"))
    }

    pub fn manifest_key(&self, job: &str) -> Path {
        self.key(job, "manifest.json")
    }

    pub fn url_of(&self, key: &Path) -> String {
        format!("{}/{key}", self.root_url)
    }

    /// The key of an object's URL, if it is under this store.
    pub fn key_of(&self, url: &str) -> Option<Path> {
        let rest = url.strip_prefix(&self.root_url)?.strip_prefix('/')?;
        Path::parse(rest).ok()
    }

    /// Starts the multipart upload of an object (nothing is visible under
    /// `key` before [`ObjectWriter::finish`]).
    pub async fn create(&self, key: &Path) -> Result<ObjectWriter, ArchiveError> {
        let upload = self
            .store
            .put_multipart_opts(key, PutMultipartOptions::default())
            .await?;
        Ok(ObjectWriter::new(
            key.clone(),
            object_store::WriteMultipart::new_with_chunk_size(upload, PART_SIZE),
        ))
    }

    /// Writes the job's manifest (small: one put, replacing an earlier one).
    pub async fn put_manifest(&self, manifest: &Manifest) -> Result<(), ArchiveError> {
        let body = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
        self.store
            .put_opts(
                &self.manifest_key(&manifest.job),
                body.into(),
                PutOptions::default(),
            )
            .await?;
        Ok(())
    }

    pub async fn manifest(&self, job: &str) -> Result<Manifest, ArchiveError> {
        let key = self.manifest_key(job);
        let bytes = self
            .store
            .get_opts(&key, GetOptions::default())
            .await?
            .bytes()
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// Deletes every object of job `job` (its ranges and manifest), for an
    /// erasure; how many were deleted.
    pub async fn delete_job(&self, job: &str) -> Result<usize, ArchiveError> {
        use futures_util::TryStreamExt;
        use object_store::ObjectStoreExt;
        let prefix = self.prefix.clone().join(job);
        let keys: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for key in &keys {
            match self.store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(keys.len())
    }

    /// An object's name relative to the store's root (`{job}/{file}`), as the
    /// API shows it: neither the store's location nor a local path.
    pub fn relative_name(&self, url: &str) -> Option<String> {
        let key = self.key_of(url)?;
        let key = key.as_ref();
        let prefix = self.prefix.as_ref();
        let relative = if prefix.is_empty() {
            key
        } else {
            key.strip_prefix(prefix)?.strip_prefix('/')?
        };
        Some(relative.to_owned())
    }

    /// The object's bytes as they arrive (compressed), for a download.
    pub async fn stream(
        &self,
        key: &Path,
    ) -> Result<
        impl futures_util::Stream<Item = Result<bytes::Bytes, object_store::Error>> + Send + 'static,
        ArchiveError,
    > {
        Ok(self
            .store
            .get_opts(key, GetOptions::default())
            .await?
            .into_stream())
    }

    /// The object's records, decompressed as its bytes arrive.
    pub async fn lines(&self, key: &Path) -> Result<LineReader, ArchiveError> {
        let stream = self
            .store
            .get_opts(key, GetOptions::default())
            .await?
            .into_stream();
        Ok(LineReader::new(key.to_string(), Box::pin(stream)))
    }
}

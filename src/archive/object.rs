//! One archive object: gzip-compressed NDJSON written through a multipart
//! upload as the lines come, and read back line by line as its bytes arrive.
//! Neither side ever holds more than a part (plus what is in flight).

use std::io::Write;
use std::pin::Pin;

use bytes::Bytes;
use flate2::write::{GzDecoder, GzEncoder};
use flate2::Compression;
use futures_util::{Stream, StreamExt};
use object_store::path::Path;
use object_store::WriteMultipart;
use sha2::{Digest, Sha256};

use super::{ArchiveError, Line, PARTS_IN_FLIGHT, PART_SIZE};

/// Compressed bytes handed to the upload at once.
const FLUSH_AT: usize = 256 * 1024;

/// What a finished object holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub key: Path,
    pub count: i64,
    pub bytes: i64,
    pub sha256: String,
}

/// An object being written. Dropped unfinished, the upload is abandoned
/// (S3 keeps its parts until a lifecycle rule or [`ObjectWriter::abort`]
/// removes them; nothing is visible under the key).
pub struct ObjectWriter {
    key: Path,
    upload: WriteMultipart,
    gzip: GzEncoder<Vec<u8>>,
    sha256: Sha256,
    count: i64,
    bytes: i64,
}

impl ObjectWriter {
    pub(super) fn new(key: Path, upload: WriteMultipart) -> Self {
        Self {
            key,
            upload,
            gzip: GzEncoder::new(Vec::with_capacity(FLUSH_AT * 2), Compression::default()),
            sha256: Sha256::new(),
            count: 0,
            bytes: 0,
        }
    }

    /// Appends a record; waits when parts are still being uploaded (so that
    /// a slow store slows the reader down instead of filling memory).
    pub async fn write(&mut self, line: &Line) -> Result<(), ArchiveError> {
        let mut encoded = serde_json::to_vec(line).expect("a line serialises");
        encoded.push(b'\n');
        self.gzip
            .write_all(&encoded)
            .expect("writing to memory does not fail");
        self.count += 1;
        if self.gzip.get_ref().len() >= FLUSH_AT {
            let compressed = std::mem::take(self.gzip.get_mut());
            self.hand_over(&compressed);
            self.upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        }
        Ok(())
    }

    fn hand_over(&mut self, compressed: &[u8]) {
        self.sha256.update(compressed);
        self.bytes += compressed.len() as i64;
        self.upload.write(compressed);
    }

    /// Records written so far.
    pub fn count(&self) -> i64 {
        self.count
    }

    /// Completes the upload: only then is the object there, whole.
    pub async fn finish(mut self) -> Result<Written, ArchiveError> {
        let gzip = std::mem::replace(
            &mut self.gzip,
            GzEncoder::new(Vec::new(), Compression::none()),
        );
        let rest = gzip.finish().expect("writing to memory does not fail");
        self.hand_over(&rest);
        self.upload.finish().await?;
        let sha256 = self.sha256.finalize();
        Ok(Written {
            key: self.key,
            count: self.count,
            bytes: self.bytes,
            sha256: hex(&sha256),
        })
    }

    /// Gives the upload up, removing the parts already sent (best effort).
    pub async fn abort(self) {
        if let Err(error) = self.upload.abort().await {
            tracing::debug!(key = %self.key, %error, "upload not aborted");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, object_store::Error>> + Send>>;

/// One archive line: a record, or a line that is not one (and why).
pub type ReadLine = Result<Line, (Vec<u8>, String)>;

/// The records of an object, decompressed as its bytes arrive, and the
/// SHA-256 of what arrived (checked by the caller against the manifest).
pub struct LineReader {
    key: String,
    bytes: ByteStream,
    gunzip: GzDecoder<Vec<u8>>,
    /// Decompressed bytes not yet split into lines (from `start`).
    start: usize,
    sha256: Sha256,
    done: bool,
}

impl LineReader {
    pub(super) fn new(key: String, bytes: ByteStream) -> Self {
        Self {
            key,
            bytes,
            gunzip: GzDecoder::new(Vec::with_capacity(PART_SIZE.min(1 << 20))),
            start: 0,
            sha256: Sha256::new(),
            done: false,
        }
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Corrupt {
            key: self.key.clone(),
            reason: reason.to_string(),
        }
    }

    /// The next line; `None` at the end of the object.
    pub async fn next(&mut self) -> Result<Option<ReadLine>, ArchiveError> {
        loop {
            let buffer = self.gunzip.get_ref();
            if let Some(end) = buffer[self.start..].iter().position(|b| *b == b'\n') {
                let line = &buffer[self.start..self.start + end];
                let parsed = serde_json::from_slice::<Line>(line)
                    .map_err(|e| (line.to_vec(), format!("not an archive line: {e}")));
                self.start += end + 1;
                return Ok(Some(parsed));
            }
            if self.done {
                let rest = &buffer[self.start..];
                if rest.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                let parsed = serde_json::from_slice::<Line>(rest)
                    .map_err(|e| (rest.to_vec(), format!("not an archive line: {e}")));
                self.start = buffer.len();
                return Ok(Some(parsed));
            }
            // Keep only the unsplit tail before decompressing more.
            let start = self.start;
            self.gunzip.get_mut().drain(..start);
            self.start = 0;
            match self.bytes.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    self.sha256.update(&chunk);
                    self.gunzip.write_all(&chunk).map_err(|e| self.corrupt(e))?;
                }
                None => {
                    self.gunzip.try_finish().map_err(|e| self.corrupt(e))?;
                    self.done = true;
                }
            }
        }
    }

    /// SHA-256 (hex) of the bytes read; complete once [`Self::next`] gave `None`.
    pub fn sha256(&self) -> String {
        hex(&self.sha256.clone().finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{GetOptions, ObjectStore, PutMultipartOptions};

    fn line(offset: i64, payload: &str) -> Line {
        Line {
            partition: 0,
            offset,
            key: Some("k".into()),
            timestamp: Some(1_700_000_000_000 + offset),
            payload: payload.into(),
        }
    }

    #[tokio::test]
    async fn objects_read_back_line_by_line_with_their_checksum() {
        let store = InMemory::new();
        let key = Path::from("job/0-0-3.ndjson.gz");
        let upload = store
            .put_multipart_opts(&key, PutMultipartOptions::default())
            .await
            .unwrap();
        let mut writer = ObjectWriter::new(key.clone(), WriteMultipart::new(upload));
        // Enough incompressible-ish text for several flushes and more than a part.
        let lines: Vec<Line> = (0..40_000)
            .map(|i| {
                line(
                    i,
                    &format!("{{\"n\":{i},\"x\":\"{}\"}}", i * 7919 % 104_729),
                )
            })
            .collect();
        for l in &lines {
            writer.write(l).await.unwrap();
        }
        let written = writer.finish().await.unwrap();
        assert_eq!(written.count, 40_000);
        let stored = store
            .get_opts(&key, GetOptions::default())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(written.bytes, stored.len() as i64);
        assert_eq!(written.sha256, hex(&Sha256::digest(&stored)));

        // Read back in small chunks, as a network would deliver them.
        let chunks: Vec<Result<Bytes, object_store::Error>> = stored
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut reader = LineReader::new(
            key.to_string(),
            Box::pin(futures_util::stream::iter(chunks)),
        );
        let mut read = Vec::new();
        while let Some(next) = reader.next().await.unwrap() {
            read.push(next.unwrap());
        }
        assert_eq!(read, lines);
        assert_eq!(reader.sha256(), written.sha256);
    }

    #[tokio::test]
    async fn a_bad_line_is_reported_and_reading_goes_on() {
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(b"{\"partition\":0,\"offset\":1,\"key\":null,\"payload\":\"a\"}\nnot json\n{\"partition\":0,\"offset\":3,\"key\":null,\"payload\":\"b\"}")
            .unwrap();
        let bytes = Bytes::from(gzip.finish().unwrap());
        let mut reader = LineReader::new(
            "k".into(),
            Box::pin(futures_util::stream::iter([Ok(bytes)])),
        );
        assert_eq!(reader.next().await.unwrap().unwrap().unwrap().offset, 1);
        let (raw, reason) = reader.next().await.unwrap().unwrap().unwrap_err();
        assert_eq!(raw, b"not json");
        assert!(reason.starts_with("not an archive line"), "{reason}");
        assert_eq!(reader.next().await.unwrap().unwrap().unwrap().offset, 3);
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_truncated_object_is_corrupt() {
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(&b"x".repeat(10_000)).unwrap();
        let bytes = gzip.finish().unwrap();
        let cut = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
        let mut reader =
            LineReader::new("k".into(), Box::pin(futures_util::stream::iter([Ok(cut)])));
        assert!(matches!(
            reader.next().await,
            Err(ArchiveError::Corrupt { .. })
        ));
    }
}

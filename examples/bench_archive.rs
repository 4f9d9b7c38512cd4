//! Archive and read back N records through the archive store (one object,
//! streamed by multipart upload, then decompressed line by line), printing
//! the rates and the process's peak RSS after each: run at two sizes to see
//! that memory stays flat. The store is `INSIKT_ARCHIVE_URL` (file:// or
//! s3:// with the AWS_* variables), default a temporary directory.
//!
//! Usage: cargo run --example bench_archive -- N
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use insikt::archive::{ArchiveStore, Line};

mod common;

#[tokio::main]
async fn main() {
    let n = common::size_arg(200_000);
    let url = std::env::var("INSIKT_ARCHIVE_URL").unwrap_or_else(|_| {
        ArchiveStore::directory_url(&std::env::temp_dir().join("insikt-bench-archive"))
    });
    let store = ArchiveStore::from_url(&url).expect("archive store");
    let job = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let key = store.object_key(&job, 0, 0, n);
    let before = common::peak_rss_mib();

    let started = Instant::now();
    let mut writer = store.create(&key).await.expect("upload starts");
    for offset in 0..n {
        // A statement as the API produces it, with some variety per record.
        let payload = format!(
            "{{\"statement_id\":\"s-{offset}\",\"import_id\":1,\"citizen_id\":{},\"course\":\"course-{}\",\"channel\":\"radio\",\"score\":0.{},\"text\":\"I would like to learn this, statement number {offset}\"}}",
            offset % 10_000,
            offset % 97,
            offset % 10
        );
        let line = Line {
            partition: 0,
            offset,
            key: Some(format!("1:{}", offset % 10_000)),
            timestamp: Some(1_764_000_000_000 + offset),
            payload,
        };
        writer.write(&line).await.expect("write");
    }
    let written = writer.finish().await.expect("upload completes");
    let write_secs = started.elapsed().as_secs_f64();
    let after_write = common::peak_rss_mib();

    let started = Instant::now();
    let mut lines = store.lines(&key).await.expect("object opens");
    let mut read = 0i64;
    while let Some(line) = lines.next().await.expect("read") {
        line.expect("an archive line");
        read += 1;
    }
    let read_secs = started.elapsed().as_secs_f64();
    assert_eq!(read, n);
    assert_eq!(lines.sha256(), written.sha256);
    println!(
        "{url}: {n} records, object {:.1} MiB gzip; archive {:.0} records/s, read back {:.0} records/s; peak RSS {before:.1} MiB at start, {after_write:.1} MiB after archiving, {:.1} MiB after reading",
        written.bytes as f64 / 1_048_576.0,
        n as f64 / write_secs,
        n as f64 / read_secs,
        common::peak_rss_mib()
    );
}

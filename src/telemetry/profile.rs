//! CPU profiles of the running process (pprof's SIGPROF sampler), as a flame
//! graph SVG or a pprof protobuf (`go tool pprof`, speedscope, Pyroscope...).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Samples per second: not a multiple of common timer frequencies, so
/// periodic work is not systematically hit or missed.
const FREQUENCY: i32 = 99;

/// Libraries whose frames are not unwound: unwinding through them from a
/// signal handler can deadlock.
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

/// What the profile is rendered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A flame graph, `image/svg+xml`.
    Svg,
    /// A gzip-less pprof `Profile` protobuf, `application/octet-stream`.
    Pprof,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("a profile is already being taken")]
    Busy,
    #[error("profiling failed: {0}")]
    Failed(String),
}

/// Only one sampler can run per process.
static RUNNING: AtomicBool = AtomicBool::new(false);

struct Running;

impl Running {
    fn acquire() -> Result<Self, ProfileError> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| Running)
            .map_err(|_| ProfileError::Busy)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// Samples the whole process for `duration` and renders the result. Runs on
/// a blocking thread: the sampler guard is not `Send`, and rendering is CPU
/// work.
pub async fn cpu_profile(duration: Duration, format: Format) -> Result<Vec<u8>, ProfileError> {
    let running = Running::acquire()?;
    tokio::task::spawn_blocking(move || {
        let _running = running;
        profile_blocking(duration, format)
    })
    .await
    .map_err(|e| ProfileError::Failed(e.to_string()))?
}

fn profile_blocking(duration: Duration, format: Format) -> Result<Vec<u8>, ProfileError> {
    let failed = |e: pprof::Error| ProfileError::Failed(e.to_string());
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(BLOCKLIST)
        .build()
        .map_err(failed)?;
    std::thread::sleep(duration);
    let report = guard.report().build().map_err(failed)?;
    drop(guard);
    let mut out = Vec::new();
    match format {
        // The flame graph of no samples is no bytes at all (inferno draws
        // nothing): say what happened in a valid SVG instead.
        Format::Svg if report.data.is_empty() => out = no_samples_svg(duration),
        Format::Svg => report.flamegraph(&mut out).map_err(failed)?,
        Format::Pprof => {
            use pprof::protos::Message as _;
            let profile = report.pprof().map_err(failed)?;
            profile
                .encode(&mut out)
                .map_err(|e| ProfileError::Failed(e.to_string()))?;
        }
    }
    Ok(out)
}

/// A flame graph's stand-in for a profile without samples: the process used
/// no CPU worth a sample (one per 1/99 s of CPU time) while it was taken.
fn no_samples_svg(duration: Duration) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"60\" viewBox=\"0 0 1200 60\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n\
         <title>insikt CPU profile: no samples</title>\n\
         <text x=\"600\" y=\"35\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">\
         No samples in {} s at {FREQUENCY} Hz: the service was idle. \
         Profile while it works.</text>\n</svg>\n",
        duration.as_secs()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_without_samples_is_a_valid_svg_that_says_so() {
        let svg = String::from_utf8(no_samples_svg(Duration::from_secs(2))).unwrap();
        let document = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(document.root_element().tag_name().name(), "svg");
        assert!(svg.contains("No samples in 2 s"), "{svg}");
    }
}

//! Heap profiles: jemalloc is the process's allocator, with its sampling
//! profiler on from the start (one sample per 512 KiB allocated on average,
//! cheap enough to leave on), and `GET /debug/pprof/heap` dumps what is live
//! now as a gzipped pprof protobuf (`go tool pprof BINARY heap.pb.gz`).
//! Built without the `jemalloc` feature (the fuzz targets), the system
//! allocator stays and profiles answer "off".

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start (`MALLOC_CONF` in
/// the environment still overrides it). `lg_prof_sample:19` = 512 KiB.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[used]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    #[error("heap profiling is off (jemalloc started without prof:true, or not built in)")]
    Off,
    #[error("heap profile failed: {0}")]
    Failed(String),
}

/// What is allocated now (sampled), as a gzipped pprof `Profile` whose
/// sample types are `inuse_space` bytes; addresses are symbolised by the
/// reader from the binary.
#[cfg(feature = "jemalloc")]
pub async fn heap_profile() -> Result<Vec<u8>, HeapError> {
    let Some(control) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return Err(HeapError::Off);
    };
    let mut control = control.clone().lock_owned().await;
    if !control.activated() {
        return Err(HeapError::Off);
    }
    // The dump writes a file and parses it: blocking work.
    tokio::task::spawn_blocking(move || control.dump_pprof())
        .await
        .map_err(|e| HeapError::Failed(e.to_string()))?
        .map_err(|e| HeapError::Failed(e.to_string()))
}

#[cfg(not(feature = "jemalloc"))]
pub async fn heap_profile() -> Result<Vec<u8>, HeapError> {
    Err(HeapError::Off)
}

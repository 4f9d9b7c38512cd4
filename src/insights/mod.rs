//! Insights (SPEC section 5): which new course, for whom, where, through
//! which channel, and whether it is rising. Rates against the population
//! with honest intervals, age-standardised ratios, trends and emerging
//! demand, computed in memory from a compact form of the stored statements.
//!
//! - `segment`: the compact, column-wise encoding of stored statements;
//! - `store`: those segments in PostgreSQL (written by the statements'
//!   writers in their transactions, merged, rebuilt, read);
//! - `residents`, `cache`: the working set per import under a memory budget;
//! - `scan`, `rates`, `trend`, `emerging`: the answers; `stats`: the
//!   textbook statistics on statrs; `params`: the parameters;
//! - `csv`: the answers as CSV; `courses`: the course catalogue.
//!
//! No HTTP here: errors are [`InsightsError`].

pub mod cache;
pub mod courses;
pub mod csv;
pub mod emerging;
pub mod params;
pub mod rates;
pub mod residents;
pub mod scan;
pub mod segment;
pub mod stats;
pub mod store;
pub mod trend;

use std::sync::Arc;

pub use cache::Snapshot;
pub use emerging::{Emerging, EmergingRow};
pub use params::{EmergingQuery, Key, ParamError, RatesQuery, Raw, TrendQuery};
pub use rates::{RateRow, Rates, Totals};
pub use trend::{Series, Trend};

use crate::db::{DbError, Pool};

#[derive(Debug, thiserror::Error)]
pub enum InsightsError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Segment(#[from] segment::SegmentError),
    /// Segments kept being merged away between listing and reading them.
    #[error("the import's segments kept changing; try again")]
    Busy,
    #[error("insights: {0}")]
    Internal(String),
}

/// Connections a first load uses at once (residents, slices of segments).
const WARM_CONNECTIONS: usize = 6;

/// The insights of every import, with their working sets.
#[derive(Debug)]
pub struct Insights {
    cache: cache::Cache,
    /// At most this many answers are computed at once (one per core):
    /// each is a pass over up to millions of statements on a blocking
    /// thread, and more at once would only queue for the cores.
    computing: tokio::sync::Semaphore,
}

impl Insights {
    /// `memory` bytes for the working sets (`INSIKT_INSIGHTS_MEMORY`).
    pub fn new(pool: Pool, memory: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // The first load reads residents and segment slices on several
        // connections at once: open them now, not in the first request.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = pool.clone();
            runtime.spawn(async move {
                let warmed = futures_util::future::join_all((0..WARM_CONNECTIONS).map(|_| async {
                    let client = pool.get().await.map_err(DbError::from)?;
                    store::prepare(&client).await?;
                    residents::prepare(&client).await
                }))
                .await;
                let failed = warmed.iter().filter(|w| w.is_err()).count();
                if failed > 0 {
                    tracing::debug!(failed, "insights: connections not warmed at start");
                }
            });
        }
        Self {
            cache: cache::Cache::new(pool, memory),
            computing: tokio::sync::Semaphore::new(cores),
        }
    }

    /// The import as the database holds it now: its residents and counted
    /// statements, for answers of other modules (places, opportunities).
    /// `None` when the import does not exist.
    pub async fn snapshot(&self, import_id: i64) -> Result<Option<Arc<Snapshot>>, InsightsError> {
        self.cache.snapshot(import_id).await
    }

    /// Runs `compute` over the import's snapshot on a blocking thread.
    async fn answer<T: Send + 'static>(
        &self,
        import_id: i64,
        compute: impl FnOnce(&Snapshot) -> Result<T, InsightsError> + Send + 'static,
    ) -> Result<Option<T>, InsightsError> {
        let Some(snapshot) = self.snapshot(import_id).await? else {
            return Ok(None);
        };
        let _permit = self
            .computing
            .acquire()
            .await
            .map_err(|e| InsightsError::Internal(e.to_string()))?;
        let started = std::time::Instant::now();
        let answer = tokio::task::spawn_blocking(move || compute(&snapshot))
            .await
            .map_err(|e| InsightsError::Internal(e.to_string()))?;
        tracing::debug!(
            import = import_id,
            compute_ms = started.elapsed().as_secs_f64() * 1e3,
            "insights answer computed"
        );
        answer.map(Some)
    }

    pub async fn rates(
        &self,
        import_id: i64,
        query: RatesQuery,
    ) -> Result<Option<Rates>, InsightsError> {
        self.answer(import_id, move |s| Ok(rates::rates(s, &query)))
            .await
    }

    pub async fn trend(
        &self,
        import_id: i64,
        query: TrendQuery,
    ) -> Result<Option<Trend>, InsightsError> {
        self.answer(import_id, move |s| Ok(trend::trend(s, &query)?))
            .await
    }

    pub async fn emerging(
        &self,
        import_id: i64,
        query: EmergingQuery,
    ) -> Result<Option<Emerging>, InsightsError> {
        self.answer(import_id, move |s| Ok(emerging::emerging(s, &query)))
            .await
    }
}

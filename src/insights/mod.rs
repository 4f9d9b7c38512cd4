//! Insights (SPEC section 5): which new course, for whom, where, through
//! which channel, and whether it is rising. Rates against the population
//! with honest intervals, age-standardised ratios, trends and emerging
//! demand, computed in memory from a compact form of the stored statements.
//!
//! - `segment`: the compact, column-wise encoding of stored statements;
//! - `store`: those segments in PostgreSQL (written by the statements'
//!   writers in their transactions, merged, rebuilt, read);
//! - `residents`, `cache`: the working set per import under a memory budget;
//! - `scan`, `rates`, `trend`, `emerging`: the answers; `opportunities`:
//!   the cells ranked from rates and emerging, with a sentence each; `stats`: the
//!   textbook statistics on statrs; `params`: the parameters;
//! - `csv`: the answers as CSV; `courses`: the course catalogue.
//!
//! No HTTP here: errors are [`InsightsError`].

pub mod cache;
pub mod courses;
pub mod csv;
pub mod emerging;
pub mod opportunities;
pub mod params;
pub mod rates;
pub mod residents;
pub mod scan;
pub mod segment;
pub mod snapshot;
pub mod stats;
pub mod store;
pub mod trend;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub use emerging::{Emerging, EmergingRow};
pub use opportunities::{Opportunities, OpportunitiesQuery, OpportunitiesRaw, Opportunity};
pub use params::{EmergingQuery, Key, ParamError, RatesQuery, Raw, TrendQuery};
pub use rates::{RateRow, Rates, Totals};
pub use snapshot::Snapshot;
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

/// Connections a first load uses at once (residents, slices of segments):
/// opened at start, so a cold load does not open backends of its own.
const WARM_CONNECTIONS: usize = 8;
/// A starting instance loads the imports asked within this long, at most
/// this many, most recent first, within half its memory budget (the rest
/// is left to what is asked next).
const WARM_WITHIN: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
const WARM_IMPORTS: i64 = 8;
/// Memory a loaded statement takes, roughly (see `snapshot::Run`), for the
/// estimate that keeps warming within the budget before anything is read.
const BYTES_PER_STATEMENT: usize = 20;
/// A starting instance says it is ready once those loads are done, or after
/// this long at most: so the first ask a load balancer sends after a restart
/// finds its import loaded, and a slow database cannot keep it out for long.
const WARM_READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The insights of every import, with their working sets.
#[derive(Debug)]
pub struct Insights {
    cache: Arc<cache::Cache>,
    /// At most this many answers are computed at once (one per core):
    /// each is a pass over up to millions of statements on a blocking
    /// thread, and more at once would only queue for the cores.
    computing: tokio::sync::Semaphore,
    /// The loads at start: how far they are, and whether they are done.
    warm_up: Arc<WarmUp>,
    started: std::time::Instant,
    /// Imports whose feed (see [`Insights::folded`]) is due.
    feeding: Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
}

impl Insights {
    /// `memory` bytes for the working sets (`INSIKT_INSIGHTS_MEMORY`).
    pub fn new(pool: Pool, memory: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let cache = Arc::new(cache::Cache::new(pool.clone(), memory));
        let warm_up = Arc::new(WarmUp::default());
        // The first load reads residents and segment slices on several
        // connections at once: open them now, not in the first request;
        // then load the imports asked lately, as a restart found them.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let cache = cache.clone();
            let progress = warm_up.clone();
            runtime.spawn(async move {
                // Ready at once when there is nothing to load.
                let plan = plan(&pool, memory / 2).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "insights: the imports asked lately could not be listed at start");
                    Vec::new()
                });
                progress.planned.store(plan.len(), Ordering::Relaxed);
                if plan.is_empty() {
                    progress.done.store(true, Ordering::Release);
                }
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
                if let Err(e) = warm(&cache, plan, &progress).await {
                    tracing::warn!(error = %e, "insights: recently asked imports not loaded at start");
                }
                progress.done.store(true, Ordering::Release);
            });
        } else {
            warm_up.done.store(true, Ordering::Release);
        }
        Self {
            cache,
            computing: tokio::sync::Semaphore::new(cores),
            warm_up,
            started: std::time::Instant::now(),
            feeding: Arc::default(),
        }
    }

    /// A job folded statements of `import_id`: its working set reads the
    /// new segments at once (folds that come before that read starts share
    /// it), so the first ask after a stream is stored finds the import
    /// loaded, or waits for the last fold's read, instead of loading the
    /// whole import or racing a later read. Within the memory budget, never
    /// evicting an import that was asked.
    pub fn folded(&self, import_id: i64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let newly_due = self
            .feeding
            .lock()
            .is_ok_and(|mut due| due.insert(import_id));
        if !newly_due {
            return;
        }
        let (cache, feeding) = (self.cache.clone(), self.feeding.clone());
        runtime.spawn(async move {
            if let Ok(mut due) = feeding.lock() {
                due.remove(&import_id);
            }
            if let Err(error) = cache.feed(import_id).await {
                tracing::debug!(import = import_id, %error, "insights working set not fed");
            }
        });
    }

    /// Whether the loads at start are still running (and within their
    /// allowance): readiness waits for them.
    pub fn warming(&self) -> bool {
        !self.warm_up.done.load(Ordering::Acquire) && self.started.elapsed() < WARM_READY_WITHIN
    }

    /// The loads at start: (imports loaded, imports to load).
    pub fn warm_up(&self) -> (usize, usize) {
        (
            self.warm_up.loaded.load(Ordering::Relaxed),
            self.warm_up.planned.load(Ordering::Relaxed),
        )
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

    /// The best cells to open a course for: /rates and /emerging with the
    /// keys course, town, age group and channel, on one snapshot, ranked;
    /// then the towns' nearest airports from `airports` and the sentences.
    pub async fn opportunities(
        &self,
        import_id: i64,
        query: OpportunitiesQuery,
        airports: &impl opportunities::Airports,
    ) -> Result<Option<Opportunities>, InsightsError> {
        let window = query.window().to_owned();
        let ranked = self
            .answer(import_id, move |s| {
                let rates = rates::rates(s, &query.rates);
                let emerging = emerging::emerging(s, &query.emerging);
                Ok(opportunities::from_answers(rates, &emerging, &query))
            })
            .await?;
        let Some(mut answer) = ranked else {
            return Ok(None);
        };
        let nearest = airports.nearest(opportunities::towns(&answer)).await?;
        opportunities::explain(&mut answer, &nearest, &window);
        Ok(Some(answer))
    }
}

/// How far the loads at start are.
#[derive(Debug, Default)]
struct WarmUp {
    planned: AtomicUsize,
    loaded: AtomicUsize,
    done: AtomicBool,
}

/// The imports asked lately (by any instance), most recent first, while
/// their estimated size stays within `budget`: (import, statements).
async fn plan(pool: &Pool, budget: usize) -> Result<Vec<(i64, i64)>, InsightsError> {
    let recent = {
        let client = pool.get().await.map_err(DbError::from)?;
        residents::recently_asked(&client, WARM_WITHIN, WARM_IMPORTS).await?
    };
    let mut planned = 0usize;
    let mut plan = Vec::new();
    for (import_id, statements) in recent {
        let estimate = usize::try_from(statements)
            .unwrap_or(usize::MAX)
            .saturating_mul(BYTES_PER_STATEMENT);
        if planned.saturating_add(estimate) > budget {
            continue;
        }
        planned += estimate;
        plan.push((import_id, statements));
    }
    Ok(plan)
}

/// Loads the `plan`ned imports one at a time, so a request that comes
/// meanwhile waits at most for the import it asks.
async fn warm(
    cache: &cache::Cache,
    plan: Vec<(i64, i64)>,
    progress: &WarmUp,
) -> Result<(), InsightsError> {
    for (import_id, statements) in plan {
        let started = std::time::Instant::now();
        cache.warm(import_id).await?;
        progress.loaded.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            import = import_id,
            statements,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "insights: recently asked import loaded at start"
        );
    }
    Ok(())
}

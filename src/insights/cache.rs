//! The insights' working set: per import, its residents and its segments
//! decoded into columns grouped by resident, kept in memory under a budget
//! (`INSIKT_INSIGHTS_MEMORY`, least recently asked imports dropped first).
//!
//! Every request first asks PostgreSQL what the import is now (one round
//! trip: its version, its segments, the courses on offer) and brings the
//! entry up to it: residents again when a PATCH bumped the version,
//! segments it lacks (new ones, or merges of segments it held only in
//! part) read concurrently and decoded off the async runtime. So every
//! instance answers what the database holds, as of the request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::try_join_all;

use super::residents::{self, Residents};
use super::segment::{self, Decoded};
use super::snapshot::{Held, Run, Snapshot};
use super::store::{self, Directory, Listed};
use super::InsightsError;
use crate::db::Pool;

/// Segments from this size may be read in slices.
const SLICE: i64 = 1 << 20;

/// How many slices each of `reading` segments is read in: together no more
/// reads at once than the machine has cores (PostgreSQL serves each on a
/// core; more only contend with each other and with the decoding).
fn slices(listed: &Listed, reading: usize) -> i64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = (cores / reading.max(1)).max(1) as i64;
    (listed.bytes / SLICE).clamp(1, share)
}

/// One import's entry: loads of one import take turns (the second asker
/// finds the first's work done).
#[derive(Debug, Default)]
struct Slot {
    snapshot: tokio::sync::Mutex<Option<Arc<Snapshot>>>,
    used: AtomicU64,
    bytes: AtomicUsize,
    /// Whether this process marked the import as asked (once: a start
    /// loads the imports asked lately).
    marked: std::sync::atomic::AtomicBool,
}

/// Why an import is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// For a request: the import counts as used, and as asked.
    Asked,
    /// At start, the imports asked lately.
    Warm,
    /// After its job stored statements.
    Fed,
}

/// The imports' working sets under one memory budget.
#[derive(Debug)]
pub struct Cache {
    pool: Pool,
    budget: usize,
    slots: Mutex<HashMap<i64, Arc<Slot>>>,
    clock: AtomicU64,
}

impl Cache {
    pub fn new(pool: Pool, budget: usize) -> Self {
        Self {
            pool,
            budget,
            slots: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
        }
    }

    /// The import's slot; `touch` makes it the most recently used.
    fn slot(&self, import_id: i64, touch: bool) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(import_id).or_default().clone();
        if touch {
            slot.used.store(
                self.clock.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        slot
    }

    /// The import as the database holds it now; `None` when it does not exist.
    pub async fn snapshot(&self, import_id: i64) -> Result<Option<Arc<Snapshot>>, InsightsError> {
        self.load(import_id, Load::Asked).await
    }

    /// As [`Cache::snapshot`], for loading an import at start: not marked
    /// as asked, so imports nobody asks stop being loaded at starts.
    pub async fn warm(&self, import_id: i64) -> Result<Option<Arc<Snapshot>>, InsightsError> {
        self.load(import_id, Load::Warm).await
    }

    /// Brings the import up to what was just stored, so that its next ask
    /// reads only the last moment's segments: an import already held is
    /// refreshed (without counting as used), one not held is loaded only
    /// if it fits beside the others (never evicting what was asked).
    pub async fn feed(&self, import_id: i64) -> Result<(), InsightsError> {
        self.load(import_id, Load::Fed).await.map(drop)
    }

    async fn load(
        &self,
        import_id: i64,
        how: Load,
    ) -> Result<Option<Arc<Snapshot>>, InsightsError> {
        let asked = how == Load::Asked;
        let slot = self.slot(import_id, how != Load::Fed);
        let mut held = slot.snapshot.lock().await;
        let was_held = held.is_some();
        // A merge may take a segment between the listing and its read: list again.
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let directory = self.directory(import_id).await?;
            tracing::debug!(
                import = import_id,
                directory_ms = started.elapsed().as_secs_f64() * 1e3,
                "insights directory read"
            );
            let Some(directory) = directory else {
                *held = None;
                drop(held);
                // No entry for an id that names no import: asking for many
                // such ids must not grow the map.
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                slots.remove(&import_id);
                return Ok(None);
            };
            let Some(fresh) = self
                .refresh(import_id, held.as_deref(), directory, asked)
                .await?
            else {
                continue;
            };
            let fresh = Arc::new(fresh);
            let bytes = fresh.bytes();
            // One import over the whole budget is answered, not kept; one
            // fed for the first time only fills room that is free.
            let kept = bytes <= self.budget
                && (how != Load::Fed || was_held || self.fits(import_id, bytes));
            slot.bytes
                .store(if kept { bytes } else { 0 }, Ordering::Relaxed);
            *held = kept.then(|| fresh.clone());
            drop(held);
            self.evict(import_id);
            // Marked on the first ask, whoever loaded the import (the jobs'
            // feed loads it before anyone asks).
            if asked && !slot.marked.swap(true, Ordering::Relaxed) {
                self.remember(import_id, None, true);
            }
            return Ok(Some(fresh));
        }
        Err(InsightsError::Busy)
    }

    async fn directory(&self, import_id: i64) -> Result<Option<Directory>, InsightsError> {
        let mut client = self.pool.get().await.map_err(crate::db::DbError::from)?;
        let Some(directory) = store::directory(&client, import_id).await? else {
            return Ok(None);
        };
        if !directory.rebuild {
            return Ok(Some(directory));
        }
        store::rebuild(&mut client, import_id).await?;
        Ok(store::directory(&client, import_id).await?)
    }

    /// `old` brought up to `directory`; `None` when a segment it listed
    /// was merged away before it could be read.
    async fn refresh(
        &self,
        import_id: i64,
        old: Option<&Snapshot>,
        directory: Directory,
        asked: bool,
    ) -> Result<Option<Snapshot>, InsightsError> {
        let empty = Snapshot::default();
        let old = old.unwrap_or(&empty);
        let cold = old.held.is_empty() && old.residents.is_empty();
        let residents = async {
            if cold || old.residents.version != directory.version {
                let client = self.pool.get().await.map_err(crate::db::DbError::from)?;
                let Some(fetched) = residents::load_kept(&client, import_id).await? else {
                    return Ok::<_, InsightsError>(None);
                };
                drop(client);
                let loaded = Arc::new(fetched.residents);
                if !fetched.kept {
                    self.remember(import_id, Some(loaded.clone()), asked);
                }
                Ok(Some(loaded))
            } else {
                Ok(Some(old.residents.clone()))
            }
        };
        // What is held already, per listed segment; the rest is read.
        let mut plan: Vec<(Listed, Option<Vec<Arc<Run>>>)> = Vec::new();
        for listed in &directory.segments {
            plan.push((*listed, reuse(&old.held, listed)));
        }
        let reading = plan.iter().filter(|(_, held)| held.is_none()).count();
        let reads = try_join_all(
            plan.iter()
                .filter(|(_, held)| held.is_none())
                .map(|(listed, _)| self.read(import_id, *listed, slices(listed, reading))),
        );
        let started = std::time::Instant::now();
        let residents = async {
            let loaded = residents.await;
            (loaded, started.elapsed())
        };
        let ((residents, residents_took), reads) = tokio::join!(residents, reads);
        let (residents, reads) = (residents?, reads?);
        tracing::debug!(
            import = import_id,
            residents_ms = residents_took.as_secs_f64() * 1e3,
            segments_read = reads.len(),
            read_ms = started.elapsed().as_secs_f64() * 1e3,
            "insights working set read"
        );
        let Some(residents) = residents else {
            return Ok(None);
        };
        let Some(mut decoded) = reads.into_iter().collect::<Option<Vec<Decoded>>>() else {
            return Ok(None);
        };
        // Runs index residents by position: a different set of citizens
        // (never: imports keep theirs) makes every held run stale.
        let same_residents = old.residents.ids == residents.ids;
        let old_courses = old.courses.clone();
        let ids = residents.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut courses = (*old_courses).clone();
            let runs: Vec<Run> = decoded
                .drain(..)
                .map(|d| Run::build(d, &ids.ids, &mut courses))
                .collect();
            (courses, runs)
        })
        .await
        .map_err(|e| InsightsError::Internal(e.to_string()))?;
        let (courses, mut new_runs) = built;
        tracing::debug!(
            import = import_id,
            built_ms = started.elapsed().as_secs_f64() * 1e3,
            "insights runs built"
        );
        if !same_residents && plan.iter().any(|(_, held)| held.is_some()) {
            // Read everything again against the new residents.
            let mut old = old.clone();
            old.held.clear();
            old.residents = residents;
            return Box::pin(self.refresh(import_id, Some(&old), directory, asked)).await;
        }
        let mut held = Vec::with_capacity(plan.len());
        new_runs.reverse();
        for (listed, reused) in plan {
            let runs = match reused {
                Some(runs) => runs,
                None => vec![Arc::new(new_runs.pop().unwrap_or_default())],
            };
            held.push(Held {
                first_seq: listed.first_seq,
                last_seq: listed.last_seq,
                runs,
            });
        }
        let statements = held.iter().flat_map(|h| &h.runs).map(|r| r.len()).sum();
        Ok(Some(Snapshot {
            residents,
            courses: Arc::new(courses),
            held,
            offered: Arc::new(directory.offered),
            statements,
        }))
    }

    /// After the answer, not before it: keeps residents that had to be
    /// aggregated (so the next cold load of any instance reads one value),
    /// or marks the import as `asked` (so a starting instance loads it).
    fn remember(&self, import_id: i64, aggregated: Option<Arc<Residents>>, asked: bool) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let written = async {
                let client = pool.get().await.map_err(crate::db::DbError::from)?;
                match aggregated {
                    Some(r) => residents::keep(&client, import_id, &r, asked).await,
                    None => residents::asked(&client, import_id).await,
                }
            };
            if let Err(e) = written.await {
                tracing::warn!(import = import_id, error = %e, "insights: residents not kept");
            }
        });
    }

    /// One listed segment, decoded; `None` when it was merged away. A large
    /// one may be read in `parts` slices over as many connections at once,
    /// then it is decoded off the runtime.
    async fn read(
        &self,
        import_id: i64,
        listed: Listed,
        parts: i64,
    ) -> Result<Option<Decoded>, InsightsError> {
        let started = std::time::Instant::now();
        let size = (listed.bytes + parts - 1) / parts;
        let slices = try_join_all((0..parts).map(|i| async move {
            let client = self.pool.get().await.map_err(crate::db::DbError::from)?;
            let from = i * size;
            let len = size.min(listed.bytes - from);
            Ok::<_, InsightsError>(store::read(&client, import_id, &listed, from, len).await?)
        }))
        .await?;
        let Some(mut slices) = slices.into_iter().collect::<Option<Vec<Vec<u8>>>>() else {
            return Ok(None);
        };
        let read = started.elapsed();
        let decoded = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let decoded = match slices.len() {
                1 => segment::decode(&slices.swap_remove(0)),
                _ => segment::decode(&slices.concat()),
            };
            (decoded, started.elapsed())
        })
        .await
        .map_err(|e| InsightsError::Internal(e.to_string()))?;
        let (decoded, decode_took) = decoded;
        tracing::debug!(
            import = import_id,
            first_seq = listed.first_seq,
            bytes = listed.bytes,
            slices = parts,
            read_ms = read.as_secs_f64() * 1e3,
            decode_ms = decode_took.as_secs_f64() * 1e3,
            "insights segment read"
        );
        Ok(Some(decoded?))
    }

    /// Drops the least recently asked imports (not `keep`) while the
    /// working set is over the budget; an import being loaded is skipped.
    /// Whether `bytes` for `import_id` fit beside what the others hold.
    fn fits(&self, import_id: i64, bytes: usize) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let others: usize = slots
            .iter()
            .filter(|(id, _)| **id != import_id)
            .map(|(_, s)| s.bytes.load(Ordering::Relaxed))
            .sum();
        others + bytes <= self.budget
    }

    fn evict(&self, keep: i64) {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut total: usize = slots
            .values()
            .map(|s| s.bytes.load(Ordering::Relaxed))
            .sum();
        if total <= self.budget {
            report(&slots, total);
            return;
        }
        let mut order: Vec<(u64, i64, Arc<Slot>)> = slots
            .iter()
            .filter(|(id, _)| **id != keep)
            .map(|(id, s)| (s.used.load(Ordering::Relaxed), *id, s.clone()))
            .collect();
        order.sort_by_key(|(used, _, _)| *used);
        for (_, id, slot) in order {
            if total <= self.budget {
                break;
            }
            if let Ok(mut snapshot) = slot.snapshot.try_lock() {
                *snapshot = None;
                total -= slot.bytes.swap(0, Ordering::Relaxed);
                tracing::debug!(import = id, "insights working set evicted");
            }
        }
        report(&slots, total);
    }
}

/// What the working sets hold, for `/metrics`.
fn report(slots: &HashMap<i64, Arc<Slot>>, bytes: usize) {
    let imports = slots
        .values()
        .filter(|s| s.bytes.load(Ordering::Relaxed) > 0)
        .count();
    crate::telemetry::metrics::set_insights_memory(imports, bytes);
}

/// The runs held for `listed`: its own, or those of the segments it merged
/// when all of them are held; `None` when it must be read.
fn reuse(held: &[Held], listed: &Listed) -> Option<Vec<Arc<Run>>> {
    let inside: Vec<&Held> = held
        .iter()
        .filter(|h| h.first_seq >= listed.first_seq && h.last_seq <= listed.last_seq)
        .collect();
    // Held segments come in order and never overlap: they tile the listed
    // one when each starts after the one before ends.
    let mut next = listed.first_seq;
    for h in &inside {
        if h.first_seq != next {
            return None;
        }
        next = h.last_seq + 1;
    }
    (next == listed.last_seq + 1 && !inside.is_empty())
        .then(|| inside.iter().flat_map(|h| h.runs.iter().cloned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(first: i64, last: i64) -> Held {
        Held {
            first_seq: first,
            last_seq: last,
            runs: vec![Arc::new(Run::default())],
        }
    }

    fn listed(first: i64, last: i64) -> Listed {
        Listed {
            first_seq: first,
            last_seq: last,
            level: 0,
            statements: 0,
            bytes: 0,
        }
    }

    #[test]
    fn merged_segments_are_reused_only_when_all_their_parts_are_held() {
        let have = [held(1, 4), held(5, 5), held(6, 6)];
        assert_eq!(reuse(&have, &listed(1, 4)).map(|r| r.len()), Some(1));
        assert_eq!(reuse(&have, &listed(5, 6)).map(|r| r.len()), Some(2));
        assert!(reuse(&have, &listed(5, 8)).is_none());
        assert!(reuse(&have, &listed(7, 7)).is_none());
        assert!(reuse(&have, &listed(1, 6)).is_some());
    }
}

//! Prometheus metrics: one process-wide registry, recorded through the
//! functions below and rendered by `GET /metrics`.
//!
//! Crate choice: `prometheus` without default features (no protobuf) — an
//! explicit registry with typed handles and a text encoder, about fifteen
//! small crates. `metrics` + `metrics-exporter-prometheus` would add a global
//! recorder facade, its own HTTP listener/push machinery and more
//! dependencies, none of which we need since warp serves `/metrics`.
//!
//! Labels are bounded: routes are route-table patterns (never raw paths),
//! methods are the standard ones, jobs are import names (one per import; call
//! [`forget_job`] when a job is removed).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Route label of requests that matched no route-table entry.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Latency buckets in seconds: API calls are milliseconds, uploads and
/// imports of 10,000 citizens take seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    db_pool_max: IntGauge,
    db_pool_connections: IntGaugeVec,
    db_pool_waiting: IntGauge,
    job_statements_stored: IntCounterVec,
    job_dead_letters: IntCounterVec,
    job_lag: IntGaugeVec,
    job_state: IntGaugeVec,
    job_batch_duration: HistogramVec,
    job_fenced: IntCounterVec,
    job_paused: IntCounterVec,
    expired_topics_deleted: prometheus::IntCounter,
    producer_errors: IntCounterVec,
    resident_memory: IntGauge,
    insights_memory: IntGauge,
    insights_imports: IntGauge,
    streams_asleep: IntGauge,
    job_slept: IntCounterVec,
    /// The state each job's `insikt_job_state` series currently shows.
    job_states: Mutex<HashMap<String, String>>,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let counter = |name: &str, help: &str, labels: &[&str]| {
        register(
            &r,
            IntCounterVec::new(Opts::new(name, help), labels).unwrap(),
        )
    };
    let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
        register(&r, IntGaugeVec::new(Opts::new(name, help), labels).unwrap())
    };
    let gauge = |name: &str, help: &str| register(&r, IntGauge::new(name, help).unwrap());
    let histogram = |name: &str, help: &str, labels: &[&str]| {
        let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
        register(&r, HistogramVec::new(opts, labels).unwrap())
    };
    Metrics {
        http_requests: counter(
            "insikt_http_requests_total",
            "HTTP requests answered, by method, route pattern and status.",
            &["method", "route", "status"],
        ),
        http_duration: histogram(
            "insikt_http_request_duration_seconds",
            "Time to answer HTTP requests, by method, route pattern and status.",
            &["method", "route", "status"],
        ),
        db_pool_max: gauge(
            "insikt_db_pool_max_connections",
            "Largest number of pooled PostgreSQL connections.",
        ),
        db_pool_connections: gauge_vec(
            "insikt_db_pool_connections",
            "Pooled PostgreSQL connections, idle or in use.",
            &["state"],
        ),
        db_pool_waiting: gauge(
            "insikt_db_pool_waiting",
            "Tasks waiting for a PostgreSQL connection.",
        ),
        job_statements_stored: counter(
            "insikt_job_statements_stored_total",
            "Statements a job consumed and stored.",
            &["job"],
        ),
        job_dead_letters: counter(
            "insikt_job_dead_letters_total",
            "Messages a job could not store and set aside as dead letters.",
            &["job"],
        ),
        job_lag: gauge_vec(
            "insikt_job_lag_messages",
            "Messages in a job's topic not yet consumed.",
            &["job"],
        ),
        job_state: gauge_vec(
            "insikt_job_state",
            "1 for the state each job is in.",
            &["job", "state"],
        ),
        job_batch_duration: histogram(
            "insikt_job_batch_duration_seconds",
            "Time a job takes to store one batch of statements.",
            &["job"],
        ),
        job_fenced: counter(
            "insikt_job_fenced_total",
            "Times a job let go of its stream because another instance owns it now.",
            &["job"],
        ),
        job_paused: counter(
            "insikt_job_paused_total",
            "Times a job's partition was paused because the job fell behind its stream.",
            &["job"],
        ),
        expired_topics_deleted: register(
            &r,
            prometheus::IntCounter::new(
                "insikt_expired_topics_deleted_total",
                "Topics of expired streams deleted from the broker once archived.",
            )
            .unwrap(),
        ),
        producer_errors: counter(
            "insikt_kafka_produce_errors_total",
            "Messages the Kafka producer failed to deliver, by kind of error.",
            &["kind"],
        ),
        insights_memory: gauge(
            "insikt_insights_memory_bytes",
            "Memory the insights' working sets hold (INSIKT_INSIGHTS_MEMORY is its budget).",
        ),
        insights_imports: gauge(
            "insikt_insights_imports_loaded",
            "Imports whose insights working set is held in memory.",
        ),
        job_slept: counter(
            "insikt_job_slept_total",
            "Times a job's partition slept (paused while its stream was idle) until written to.",
            &["job"],
        ),
        streams_asleep: gauge(
            "insikt_streams_asleep",
            "Partitions paused because their stream was idle (fetched again once written to).",
        ),
        resident_memory: gauge(
            "insikt_process_resident_memory_bytes",
            "Resident set size of the process (VmRSS of /proc/self/status), read at scrape time.",
        ),
        job_states: Mutex::new(HashMap::new()),
        registry: r,
    }
});

/// A request method as a bounded label.
fn method_label(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
        _ => "other",
    }
}

/// Records one answered HTTP request. `route` must be a route-table pattern
/// (or [`UNMATCHED_ROUTE`]).
pub fn http_request(method: &str, route: &str, status: u16, seconds: f64) {
    let status = status.to_string();
    let labels = [method_label(method), route, status.as_str()];
    let m = &*METRICS;
    m.http_requests.with_label_values(&labels).inc();
    m.http_duration.with_label_values(&labels).observe(seconds);
}

/// The database pool's state at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    pub max_size: usize,
    /// Open connections (idle + in use).
    pub size: usize,
    pub idle: usize,
    pub waiting: usize,
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The text exposition of every metric, with the pool gauges set from `pool`.
pub fn render(pool: PoolUsage) -> String {
    let m = &*METRICS;
    m.db_pool_max.set(gauge_value(pool.max_size));
    m.db_pool_connections
        .with_label_values(&["idle"])
        .set(gauge_value(pool.idle));
    m.db_pool_connections
        .with_label_values(&["in_use"])
        .set(gauge_value(pool.size.saturating_sub(pool.idle)));
    m.db_pool_waiting.set(gauge_value(pool.waiting));
    // Left at its last value where /proc is missing (not Linux).
    if let Some(bytes) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(resident_bytes)
    {
        m.resident_memory.set(bytes);
    }
    let mut buffer = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&m.registry.gather(), &mut buffer) {
        tracing::error!(%error, "encoding metrics failed");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// The `VmRSS:` line of a `/proc/PID/status` text, in bytes.
fn resident_bytes(status: &str) -> Option<i64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: i64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// `n` statements of `job` were stored.
pub fn job_statements_stored(job: &str, n: u64) {
    METRICS
        .job_statements_stored
        .with_label_values(&[job])
        .inc_by(n);
}

/// `n` messages of `job` went to the dead letters.
pub fn job_dead_letters(job: &str, n: u64) {
    METRICS.job_dead_letters.with_label_values(&[job]).inc_by(n);
}

/// `job` found another instance owning it and let go (nothing written).
pub fn job_fenced(job: &str) {
    METRICS.job_fenced.with_label_values(&[job]).inc();
}

/// `job` fell behind its stream: its partition was paused until it caught up.
pub fn job_paused(job: &str) {
    METRICS.job_paused.with_label_values(&[job]).inc();
}

/// A partition of `job` asleep (its stream idle, paused) while this lives.
pub struct Asleep(());

impl Asleep {
    #[must_use]
    pub fn begin(job: &str) -> Self {
        METRICS.job_slept.with_label_values(&[job]).inc();
        METRICS.streams_asleep.inc();
        Self(())
    }
}

impl Drop for Asleep {
    fn drop(&mut self) {
        METRICS.streams_asleep.dec();
    }
}

/// An expired stream's topic was deleted from the broker.
pub fn expired_topic_deleted() {
    METRICS.expired_topics_deleted.inc();
}

/// The insights' working sets: `imports` held, `bytes` in all.
pub fn set_insights_memory(imports: usize, bytes: usize) {
    METRICS.insights_imports.set(gauge_value(imports));
    METRICS.insights_memory.set(gauge_value(bytes));
}

/// `job`'s consumer is `lag` messages behind the end of its topic.
pub fn set_job_lag(job: &str, lag: i64) {
    METRICS.job_lag.with_label_values(&[job]).set(lag);
}

/// One batch of `job` took `seconds` to store.
pub fn observe_job_batch(job: &str, seconds: f64) {
    METRICS
        .job_batch_duration
        .with_label_values(&[job])
        .observe(seconds);
}

/// `job` is now in `state` (e.g. `running`, `paused`, `failed`): its
/// `insikt_job_state{job,state}` series is 1 and the previous one is removed.
pub fn set_job_state(job: &str, state: &str) {
    let m = &*METRICS;
    let mut states = m.job_states.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(previous) = states.insert(job.to_owned(), state.to_owned()) {
        if previous != state {
            let _ = m.job_state.remove_label_values(&[job, previous.as_str()]);
        }
    }
    m.job_state.with_label_values(&[job, state]).set(1);
}

/// Removes every series of `job` (it was deleted), keeping cardinality bounded.
pub fn forget_job(job: &str) {
    let m = &*METRICS;
    let mut states = m.job_states.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(state) = states.remove(job) {
        let _ = m.job_state.remove_label_values(&[job, state.as_str()]);
    }
    let _ = m.job_statements_stored.remove_label_values(&[job]);
    let _ = m.job_dead_letters.remove_label_values(&[job]);
    let _ = m.job_lag.remove_label_values(&[job]);
    let _ = m.job_batch_duration.remove_label_values(&[job]);
    let _ = m.job_fenced.remove_label_values(&[job]);
    let _ = m.job_paused.remove_label_values(&[job]);
    let _ = m.job_slept.remove_label_values(&[job]);
}

/// The Kafka producer failed to deliver a message; `kind` is a short fixed
/// word (`queue_full`, `timeout`, `broker`, …), never an error message.
pub fn producer_error(kind: &str) {
    METRICS.producer_errors.with_label_values(&[kind]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_bytes_reads_vmrss() {
        let status = "Name:\tinsikt\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(12345 * 1024));
        assert_eq!(resident_bytes("Name:\tx\n"), None);
        assert_eq!(resident_bytes("VmRSS:\tlots kB\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(resident_bytes(&own).unwrap() > 0);
    }

    const POOL: PoolUsage = PoolUsage {
        max_size: 16,
        size: 3,
        idle: 2,
        waiting: 0,
    };

    fn line_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn http_requests_are_counted_by_route_pattern_and_bounded_method() {
        http_request("GET", "/unit/{id}", 200, 0.003);
        http_request("BREW", "/unit/{id}", 418, 0.003);
        let text = render(POOL);
        assert!(line_value(
            &text,
            r#"insikt_http_requests_total{method="GET",route="/unit/{id}",status="200"}"#
        )
        .is_some_and(|n| n >= 1.0));
        assert!(text.contains(r#"method="other",route="/unit/{id}",status="418""#));
        assert!(text.contains(
            r#"insikt_http_request_duration_seconds_bucket{method="GET",route="/unit/{id}",status="200",le="0.005"}"#
        ));
        assert_eq!(
            line_value(&text, "insikt_db_pool_max_connections"),
            Some(16.0)
        );
        assert_eq!(
            line_value(&text, r#"insikt_db_pool_connections{state="in_use"}"#),
            Some(1.0)
        );
    }

    #[test]
    fn job_state_shows_only_the_current_state_and_forget_removes_the_job() {
        set_job_state("unit-job", "running");
        set_job_state("unit-job", "paused");
        job_statements_stored("unit-job", 5);
        job_dead_letters("unit-job", 1);
        set_job_lag("unit-job", 42);
        let text = render(POOL);
        assert!(!text.contains(r#"insikt_job_state{job="unit-job",state="running"}"#));
        assert_eq!(
            line_value(&text, r#"insikt_job_state{job="unit-job",state="paused"}"#),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"insikt_job_statements_stored_total{job="unit-job"}"#
            ),
            Some(5.0)
        );
        assert_eq!(
            line_value(&text, r#"insikt_job_lag_messages{job="unit-job"}"#),
            Some(42.0)
        );
        forget_job("unit-job");
        assert!(!render(POOL).contains("unit-job"));
    }
}

//! Observability, black-box: trace context from incoming requests, the
//! Prometheus metrics, CPU profiles behind the admin token, and the OpenAPI
//! document and Swagger UI (checked against the route table, so a route
//! cannot be added without documenting it).
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{error_code, json, streams, TestApp, ADMIN_TOKEN};
use insikt::http::routes::ROUTES;
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use reqwest::Method;
use serde_json::Value;

/// The process-wide subscriber of this test binary: the service's own layer
/// stack (telemetry::install), exporting into memory instead of OTLP.
fn spans() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        assert!(
            insikt::telemetry::install("info,warp=warn", provider),
            "another subscriber was installed first"
        );
        exporter
    })
}

/// The finished spans of trace `trace_id`, waiting a little for the request
/// span to close after the response was sent.
async fn spans_of(trace_id: TraceId) -> Vec<SpanData> {
    for _ in 0..50 {
        let found: Vec<SpanData> = spans()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|span| span.span_context.trace_id() == trace_id)
            .collect();
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

#[tokio::test]
async fn a_request_continues_the_trace_of_its_traceparent() {
    spans();
    let app = TestApp::spawn().await;
    // Ready first (the start's insights plan made), so the traced request
    // is answered 200.
    assert_eq!(app.ready().await.0, 200);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = app
        .request(Method::GET, "/readyz")
        .header("traceparent", format!("00-{trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let found = spans_of(TraceId::from_hex(trace).unwrap()).await;
    let request = found
        .iter()
        .find(|span| span.name == "GET /readyz")
        .unwrap_or_else(|| panic!("no request span in trace {trace}: {found:?}"));
    assert_eq!(request.span_kind, SpanKind::Server);
    assert_eq!(request.parent_span_id.to_string(), caller_span);
    assert!(request
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "route" && kv.value.as_str() == "/readyz"));
    // The handler's own span is a child in the same trace.
    let handler = found
        .iter()
        .find(|span| span.name == "readyz")
        .expect("handler span");
    assert_eq!(
        handler.parent_span_id,
        request.span_context.span_id(),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_request_without_traceparent_starts_its_own_trace() {
    spans();
    let app = TestApp::spawn().await;
    let request_id = format!("no-parent-{}", uuid::Uuid::new_v4());
    let response = app
        .request(Method::GET, "/healthz")
        .header("x-request-id", &request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut found = None;
    for _ in 0..50 {
        found = spans()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .find(|span| {
                span.attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "request_id" && kv.value.as_str() == request_id)
            });
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let span = found.expect("the request span was exported");
    assert_eq!(span.name, "GET /healthz");
    assert!(span.span_context.is_valid());
    assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
}

/// One sample of the text exposition format: name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A minimal parser of the Prometheus text format: every line must be a
/// comment, blank, or `name{label="value",...} number`; every sample's family
/// must be declared by a `# TYPE` line.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut types = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            types.insert(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                    labels.insert(key.to_owned(), value.trim_end_matches('"').to_owned());
                }
                (name, labels)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|family| types.contains(*family))
            .unwrap_or(name);
        assert!(types.contains(family), "no TYPE for {name}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map_or(0.0, |s| s.value)
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse_metrics(&response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_a_request_just_made_by_route_pattern() {
    let app = TestApp::spawn().await;
    // Only this test sends OPTIONS to /openapi.json.
    let labels = [
        ("method", "OPTIONS"),
        ("route", "/openapi.json"),
        ("status", "204"),
    ];
    let before = scrape(&app).await;
    let response = app
        .request(Method::OPTIONS, "/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let unknown = format!("/no-such-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(app.get(&unknown).await.status(), 404);
    assert_eq!(app.get("/docs/favicon-32x32.png").await.status(), 200);
    let after = scrape(&app).await;

    let counted = |samples: &[Sample], name| value(samples, name, &labels);
    assert_eq!(
        counted(&after, "insikt_http_requests_total"),
        counted(&before, "insikt_http_requests_total") + 1.0
    );
    assert_eq!(
        counted(&after, "insikt_http_request_duration_seconds_count"),
        counted(&before, "insikt_http_request_duration_seconds_count") + 1.0
    );
    let inf = [labels.as_slice(), &[("le", "+Inf")]].concat();
    assert!(value(&after, "insikt_http_request_duration_seconds_bucket", &inf) >= 1.0);

    // Unknown paths are counted under one label, never by their raw path.
    assert!(
        value(
            &after,
            "insikt_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ) >= 1.0
    );
    assert!(after
        .iter()
        .all(|s| s.labels.values().all(|v| !v.contains("no-such-"))));
    // Parameterised paths are counted under their pattern.
    assert!(
        value(
            &after,
            "insikt_http_requests_total",
            &[("route", "/docs/{file}"), ("status", "200")]
        ) >= 1.0
    );
    assert!(after
        .iter()
        .all(|s| s.labels.values().all(|v| !v.contains("favicon"))));

    // The pool gauges describe this app's pool.
    assert_eq!(
        value(&after, "insikt_db_pool_max_connections", &[]),
        16.0,
        "the default pool size"
    );
    assert!(after
        .iter()
        .any(|s| s.name == "insikt_db_pool_connections" && s.labels["state"] == "idle"));
}

/// The records of `topic` (one partition) with their headers, read from the
/// beginning with a plain consumer until `count` arrived.
async fn records_of(brokers: &str, topic: &str, count: usize) -> Vec<Vec<(String, String)>> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("insikt-test-reader-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    while records.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("the produced records arrive")
            .unwrap();
        let headers = message.headers().map_or_else(Vec::new, |headers| {
            headers
                .iter()
                .map(|h| {
                    let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                    (h.key.to_owned(), value.into_owned())
                })
                .collect()
        });
        records.push(headers);
    }
    records
}

fn attribute(span: &SpanData, key: &str) -> Option<opentelemetry::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

#[tokio::test]
async fn one_trace_spans_the_request_its_kafka_records_and_the_job_batch() {
    spans();
    let mut brokers = String::new();
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        brokers = config.kafka_brokers.clone();
    })
    .await;
    let db = app.db().await;
    let import = streams::create_import(&db, &[1, 2]).await;
    let name = common::job_name(&db, import).await;
    let sent = 3;
    let items = Value::Array(
        (0..sent)
            .map(|i| streams::statement(&format!("s{i}"), import, 1 + i % 2))
            .collect(),
    );
    // A trace id of our own, so the test finds its spans among all others.
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = "00f067aa0ba902b7";
    let response = app
        .request(Method::POST, &format!("/imports/{import}/statements"))
        .header("traceparent", format!("00-{trace}-{caller_span}-01"))
        .header("tracestate", "insikt-test=1")
        .json(&items)
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 202, "{body}");
    let trace_id = TraceId::from_hex(&trace).unwrap();

    // (a) Every record carries the request's trace context.
    let (status, job) = json(app.get(&format!("/jobs/{name}")).await).await;
    assert_eq!(status, 200, "{job}");
    let topic = job["data"]["topic"].as_str().unwrap().to_owned();
    let records = records_of(&brokers, &topic, sent as usize).await;
    let mut parents = BTreeSet::new();
    for headers in &records {
        let header = |key: &str| {
            headers
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {key} header in {headers:?}"))
        };
        let parts: Vec<&str> = header("traceparent").split('-').collect();
        assert_eq!(parts.len(), 4, "{headers:?}");
        assert_eq!((parts[0], parts[1]), ("00", trace.as_str()));
        parents.insert(parts[2].to_owned());
        assert!(
            header("tracestate").contains("insikt-test=1"),
            "{headers:?}"
        );
    }
    assert_eq!(parents.len(), 1, "one producer span: {parents:?}");

    // The job stores them all ...
    streams::eventually("the statements stored", Duration::from_secs(60), || async {
        (streams::stored(&db, import).await == i64::from(sent)).then_some(())
    })
    .await;

    // ... and the trace runs request -> producer span (in the headers) -> job batch.
    let found = streams::eventually("the job's batch spans", Duration::from_secs(30), || async {
        let found = spans_of(trace_id).await;
        let stored: i64 = found
            .iter()
            .filter(|s| s.name == "job.batch")
            .filter_map(|s| attribute(s, "stored"))
            .map(|v| match v {
                opentelemetry::Value::I64(n) => n,
                other => panic!("stored is {other:?}"),
            })
            .sum();
        let request = found.iter().any(|s| s.span_kind == SpanKind::Server);
        (request && stored == i64::from(sent)).then_some(found)
    })
    .await;
    let request = found
        .iter()
        .find(|s| s.name == "POST /imports/{id}/statements")
        .unwrap_or_else(|| panic!("no request span: {found:?}"));
    assert_eq!(request.parent_span_id.to_string(), caller_span);
    let produce = found
        .iter()
        .find(|s| s.span_kind == SpanKind::Producer)
        .unwrap_or_else(|| panic!("no producer span: {found:?}"));
    assert_eq!(
        produce.span_context.span_id().to_string(),
        *parents.first().unwrap()
    );
    for batch in found.iter().filter(|s| s.name == "job.batch") {
        assert_eq!(batch.span_kind, SpanKind::Consumer);
        assert_eq!(batch.parent_span_id, produce.span_context.span_id());
        assert_eq!(
            attribute(batch, "job").map(|v| v.as_str().into_owned()),
            Some(name.clone())
        );
    }

    // The job's metrics count what it stored.
    let samples = scrape(&app).await;
    let job_label = [("job", name.as_str())];
    assert_eq!(
        value(&samples, "insikt_job_statements_stored_total", &job_label),
        f64::from(sent)
    );
    assert_eq!(
        value(&samples, "insikt_job_dead_letters_total", &job_label),
        0.0
    );
    assert!(
        value(
            &samples,
            "insikt_job_batch_duration_seconds_count",
            &job_label
        ) >= 1.0
    );
    assert_eq!(
        value(
            &samples,
            "insikt_job_state",
            &[("job", name.as_str()), ("state", "running")]
        ),
        1.0
    );
    // The lag gauges are refreshed every 5 s, all jobs in one request.
    streams::eventually("the job's lag gauge", Duration::from_secs(20), || async {
        scrape(&app)
            .await
            .iter()
            .any(|s| s.name == "insikt_job_lag_messages" && s.labels.get("job") == Some(&name))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_batch_holding_several_requests_continues_the_first_and_links_the_others() {
    spans();
    let app = TestApp::spawn_with(|config| {
        streams::configure(config);
        // Long enough for the stopped job's first read to take both requests.
        config.job_batch_ms = 1000;
    })
    .await;
    let db = app.db().await;
    // Metrics are process-wide and job names derive from import ids, which
    // every test database numbers from 1: import 2 keeps this job's series
    // apart from the other trace test's.
    streams::create_import(&db, &[]).await;
    let import = streams::create_import(&db, &[1]).await;
    let name = common::job_name(&db, import).await;
    let control = |action: &'static str| {
        app.request(Method::POST, &format!("/jobs/{name}/{action}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    // The supervisor creates the job; stop it so both requests wait in the topic.
    streams::eventually("the job", Duration::from_secs(30), || async {
        (app.get(&format!("/jobs/{name}")).await.status() == 200).then_some(())
    })
    .await;
    let (status, body) = json(control("stop").await.unwrap()).await;
    assert_eq!(status, 200, "{body}");

    let traces: Vec<String> = (0..2)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    for (i, trace) in traces.iter().enumerate() {
        let response = app
            .request(Method::POST, &format!("/imports/{import}/statements"))
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .json(&serde_json::json!([streams::statement(
                &format!("l{i}"),
                import,
                1
            )]))
            .send()
            .await
            .unwrap();
        let (status, body) = json(response).await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, body) = json(control("start").await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    streams::eventually("both stored", Duration::from_secs(60), || async {
        (streams::stored(&db, import).await == 2).then_some(())
    })
    .await;

    let [first, second] = [&traces[0], &traces[1]].map(|t| TraceId::from_hex(t).unwrap());
    let (batch, producers) =
        streams::eventually("the batch span", Duration::from_secs(30), || async {
            let found = spans_of(first).await;
            let batch = found.iter().find(|s| s.name == "job.batch")?.clone();
            let second_producer = spans_of(second)
                .await
                .into_iter()
                .find(|s| s.span_kind == SpanKind::Producer)?;
            let first_producer = found
                .into_iter()
                .find(|s| s.span_kind == SpanKind::Producer)?;
            Some((batch, [first_producer, second_producer]))
        })
        .await;
    assert_eq!(
        attribute(&batch, "messages"),
        Some(opentelemetry::Value::I64(2))
    );
    assert_eq!(
        attribute(&batch, "traces"),
        Some(opentelemetry::Value::I64(2))
    );
    assert_eq!(batch.parent_span_id, producers[0].span_context.span_id());
    let links: Vec<_> = batch.links.iter().map(|l| &l.span_context).collect();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].trace_id(), second);
    assert_eq!(links[0].span_id(), producers[1].span_context.span_id());
}

/// Keeps a core busy until dropped, so a profile has samples.
struct Burner(Arc<AtomicBool>);

impl Burner {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut x: u64 = 1;
            while !flag.load(Ordering::Relaxed) {
                for i in 0..10_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ i);
                }
            }
        });
        Self(stop)
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn admin(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request.header("authorization", format!("Bearer {ADMIN_TOKEN}"))
}

#[tokio::test]
async fn the_profile_is_a_flame_graph_or_a_pprof_protobuf() {
    let app = TestApp::spawn().await;
    let _burner = Burner::start();

    let response = admin(app.request(Method::GET, "/debug/pprof/profile?seconds=1&format=svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await.unwrap();
    assert!(svg.contains("<svg"), "not an SVG: {:.200}", svg);
    assert!(svg.contains("</svg>"));

    // The default format is SVG; `pb` is a pprof protobuf.
    let pb = admin(app.request(Method::GET, "/debug/pprof/profile?seconds=1&format=pb"))
        .send()
        .await
        .unwrap();
    assert_eq!(pb.status(), 200);
    assert_eq!(pb.headers()["content-type"], "application/octet-stream");
    assert!(!pb.bytes().await.unwrap().is_empty());

    // One profile at a time: of two overlapping requests, one is refused.
    let long = admin(app.request(Method::GET, "/debug/pprof/profile?seconds=4")).send();
    let short = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        admin(app.request(Method::GET, "/debug/pprof/profile?seconds=1"))
            .send()
            .await
    };
    let (long, short) = tokio::join!(long, short);
    let mut statuses = [
        long.unwrap().status().as_u16(),
        short.unwrap().status().as_u16(),
    ];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
}

/// An idle instance (a process of its own: the test binary's other tests
/// would give the sampler work) takes little CPU, often too little for a
/// sample in two seconds (its Kafka consumers' metadata refreshes may land
/// in them); with samples or without, its answer is an SVG, never an empty 200.
#[tokio::test]
async fn an_idle_instance_profile_is_still_a_valid_svg() {
    let database = common::TestDatabase::create().await;
    let port = streams::free_port();
    let _service = tokio::process::Command::new(env!("CARGO_BIN_EXE_insikt"))
        .args(["serve", "--no-migrate"])
        .env("INSIKT_DATABASE_URL", &database.url)
        .env("INSIKT_LISTEN", format!("127.0.0.1:{port}"))
        .env("INSIKT_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("INSIKT_SECRET", "test")
        .env("INSIKT_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    streams::eventually("the instance ready", Duration::from_secs(30), || async {
        let ready = client.get(format!("{base}/readyz")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..2 {
        let response =
            admin(client.get(format!("{base}/debug/pprof/profile?seconds=2&format=svg")))
                .send()
                .await
                .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/svg+xml");
        let svg = response.text().await.unwrap();
        // A profile with samples is inferno's flame graph, which declares
        // the SVG 1.1 DTD; one without is the service's own, which does not.
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        };
        let document = roxmltree::Document::parse_with_options(&svg, options)
            .unwrap_or_else(|e| panic!("not an SVG ({e}): {svg:.200}"));
        assert_eq!(document.root_element().tag_name().name(), "svg");
    }
}

#[tokio::test]
async fn the_profile_needs_the_admin_token_and_a_bounded_duration() {
    let app = TestApp::spawn().await;
    let path = "/debug/pprof/profile?seconds=1";

    let response = app.request(Method::GET, path).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, body) = json(response).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "unauthorized");

    let wrong = app
        .request(Method::GET, path)
        .header("authorization", "Bearer not-the-token")
        .send()
        .await
        .unwrap();
    let (status, body) = json(wrong).await;
    assert_eq!(status, 403);
    assert_eq!(error_code(&body), "forbidden");

    for query in [
        "seconds=0",
        "seconds=61",
        "seconds=-1",
        "seconds=x",
        "format=gif",
        "other=1",
    ] {
        let response = admin(app.request(Method::GET, &format!("/debug/pprof/profile?{query}")))
            .send()
            .await
            .unwrap();
        let (status, body) = json(response).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(error_code(&body), "bad_request");
    }

    // No admin token configured: the route refuses everyone.
    let closed = TestApp::spawn_with(|config| config.admin_token = None).await;
    let response = admin(closed.request(Method::GET, path))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn the_heap_profile_is_a_gzipped_pprof_behind_the_admin_token() {
    use std::io::Read;

    use pprof::protos::Message;

    let app = TestApp::spawn().await;
    let (status, body) = json(app.get("/debug/pprof/heap").await).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
    let wrong = app
        .request(Method::GET, "/debug/pprof/heap")
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);

    // Something big and live while the profile is taken, so it has samples
    // (one per 512 KiB allocated on average).
    let ballast: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1 << 20]).collect();
    let response = admin(app.request(Method::GET, "/debug/pprof/heap"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let gzipped = response.bytes().await.unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gzipped[..])
        .read_to_end(&mut raw)
        .expect("a gzip stream");
    let profile = pprof::protos::Profile::decode(&raw[..]).expect("a pprof Profile protobuf");
    let name = |i: i64| profile.string_table[usize::try_from(i).unwrap()].as_str();
    let types: Vec<&str> = profile.sample_type.iter().map(|t| name(t.ty)).collect();
    assert!(types.contains(&"inuse_space"), "{types:?}");
    let sampled: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    // 64 MiB live: the sampled estimate is of that order, never nothing.
    assert!(sampled >= 16 << 20, "{sampled} bytes in use sampled");
    assert!(!profile.mapping.is_empty(), "no mappings to symbolise with");
    drop(ballast);
}

#[tokio::test]
async fn metrics_show_the_resident_memory() {
    let app = TestApp::spawn().await;
    let samples = scrape(&app).await;
    let rss = samples
        .iter()
        .find(|s| s.name == "insikt_process_resident_memory_bytes")
        .expect("the RSS gauge");
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = own
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The app runs in this process: the same order of magnitude as its own reading.
    assert!(
        rss.value > kib * 1024.0 / 4.0 && rss.value < kib * 1024.0 * 4.0,
        "{} vs {kib} kB",
        rss.value
    );
}

/// Every `$ref` in `node` names an existing component.
fn check_refs(node: &Value, document: &Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                let pointer = target
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("external $ref {target}"));
                assert!(
                    document.pointer(pointer).is_some(),
                    "dangling $ref {target}"
                );
            }
            map.values().for_each(|v| check_refs(v, document));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(v, document)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_documents_every_route_of_the_table() {
    let app = TestApp::spawn().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();

    // Structurally an OpenAPI 3 document (utoipa's model deserialises it).
    let _: utoipa::openapi::OpenApi = serde_json::from_str(&text).expect("an OpenAPI document");
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(document["info"]["title"], "insikt");
    assert!(document["info"]["version"].is_string());
    check_refs(&document, &document);
    assert!(document.pointer("/components/schemas/Error").is_some());

    let paths = document["paths"].as_object().expect("paths");
    let methods = ["get", "put", "post", "delete", "options", "head", "patch"];
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            if !methods.contains(&method.as_str()) {
                continue;
            }
            documented.insert((path.clone(), method.to_uppercase()));
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path} has no responses");
            // Every `{param}` of the path is declared as a path parameter.
            for name in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                let declared = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true);
                assert!(declared, "{method} {path} does not declare {name}");
            }
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|route| {
            route
                .methods()
                .map(|method| (route.pattern.to_owned(), method.as_str().to_owned()))
        })
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document (annotate the handler with \
         #[utoipa::path] and list it in its resource's Api, or in src/http/openapi.rs): \
         {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "documented but not in the route table: {unserved:?}"
    );

    // Admin routes declare the bearer scheme.
    assert_eq!(
        document["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    assert!(document["paths"]["/debug/pprof/profile"]["get"]["security"].is_array());
}

#[tokio::test]
async fn docs_serve_the_bundled_swagger_ui() {
    let app = TestApp::spawn().await;
    let page = app.get("/docs").await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<base href="/docs/""#), "{html}");
    // With the trailing slash most Swagger UIs have: the same page.
    let slash = app.get("/docs/").await;
    assert_eq!(slash.status(), 200);
    assert_eq!(slash.text().await.unwrap(), html);
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        assert!(html.contains(asset), "the page does not load {asset}");
        let response = app.get(&format!("/docs/{asset}")).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{asset}");
    }
    let initializer = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");

    let (status, body) = json(app.get("/docs/no-such-file.js").await).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

/// What the service really answers is what its document says, for every
/// kind of JSON answer a user meets along the product's path (import,
/// citizens, presents, percentiles, statements, jobs, dead letters, towns,
/// demand, errors): the schemas written by hand for types serialised by
/// hand (citizens, birthdays, demand rows) included.
#[tokio::test]
async fn the_document_describes_the_real_answers() {
    use common::schema::{conforms, response_schema};
    let app = TestApp::spawn_with(streams::configure).await;
    let (_, document) = json(app.get("/openapi.json").await).await;
    let check = |method: &str, path: &str, status: u16, got: (u16, Value)| {
        assert_eq!(got.0, status, "{method} {path}: {}", got.1);
        let schema = response_schema(&document, method, path, status);
        if let Err(why) = conforms(&document, schema, &got.1) {
            panic!(
                "{method} {path} {status} answers what its document does not say: {why}\n{}",
                got.1
            );
        }
        got.1
    };
    let citizens = serde_json::json!({"citizens": [
        {"citizen_id": 1, "town": "Madrid", "street": "Gran Vía", "building": "1", "apartment": 7,
         "name": "Ana", "birth_date": "26.12.1986", "gender": "female", "relatives": [2],
         "channel": "instagram"},
        {"citizen_id": 2, "town": "Madrid", "street": "Gran Vía", "building": "1", "apartment": 7,
         "name": "Luis", "birth_date": "01.02.2000", "gender": "male", "relatives": [1]},
        {"citizen_id": 3, "town": "Sevilla", "street": "Feria", "building": "2", "apartment": 1,
         "name": "Eva", "birth_date": "15.07.1950", "gender": "female", "relatives": []}
    ]});
    let created = check(
        "post",
        "/imports",
        201,
        json(app.send_json(Method::POST, "/imports", &citizens).await).await,
    );
    let import = created["data"]["import_id"].as_i64().unwrap();
    let base = format!("/imports/{import}");
    check(
        "get",
        "/imports/{import_id}/citizens",
        200,
        json(app.get(&format!("{base}/citizens")).await).await,
    );
    check(
        "patch",
        "/imports/{import_id}/citizens/{citizen_id}",
        200,
        json(
            app.send_json(
                Method::PATCH,
                &format!("{base}/citizens/3"),
                &serde_json::json!({"relatives": [1]}),
            )
            .await,
        )
        .await,
    );
    for query in ["", "?group_by=channel"] {
        check(
            "get",
            "/imports/{import_id}/citizens/birthdays",
            200,
            json(app.get(&format!("{base}/citizens/birthdays{query}")).await).await,
        );
    }
    check(
        "get",
        "/imports/{import_id}/towns/stat/percentile/age",
        200,
        json(app.get(&format!("{base}/towns/stat/percentile/age")).await).await,
    );
    check(
        "get",
        "/imports/{import_id}/citizens",
        404,
        json(app.get("/imports/999/citizens").await).await,
    );

    let statements = serde_json::json!([
        {"statement_id": "a", "citizen_id": 1, "course": "rust", "channel": "radio", "score": 0.5,
         "text": "yes", "ts": "2026-11-28T12:00:00Z"},
        {"statement_id": "b", "citizen_id": 2, "course": "go"},
        {"statement_id": "c", "citizen_id": 3, "course": "rust"}
    ]);
    check(
        "post",
        "/imports/{id}/statements",
        202,
        json(
            app.send_json(Method::POST, &format!("{base}/statements"), &statements)
                .await,
        )
        .await,
    );
    let db = app.db().await;
    streams::eventually(
        "the statements stored and counted",
        Duration::from_secs(60),
        || async {
            let counted = streams::count(
                &db,
                "SELECT coalesce(sum(statements), 0)::bigint FROM statement_counts \
             WHERE import_id = $1 AND course IS NULL",
                import,
            )
            .await;
            (counted == 3).then_some(())
        },
    )
    .await;
    let jobs = check("get", "/jobs", 200, json(app.get("/jobs").await).await);
    let name = jobs["data"][0]["name"].as_str().unwrap().to_owned();
    check(
        "get",
        "/jobs/{name}",
        200,
        json(app.get(&format!("/jobs/{name}")).await).await,
    );
    check(
        "get",
        "/jobs/{name}/archives",
        200,
        json(app.get(&format!("/jobs/{name}/archives")).await).await,
    );
    check(
        "get",
        "/jobs/{name}/archives",
        404,
        json(app.get("/jobs/nope/archives").await).await,
    );
    // An offset past i64 (what schemathesis sent): a documented 400.
    check(
        "get",
        "/jobs/{name}/archives/{partition}/{from}",
        400,
        json(
            app.request(
                Method::GET,
                &format!("/jobs/{name}/archives/0/9223372036854775808"),
            )
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
        )
        .await,
    );
    check(
        "get",
        "/imports/{id}/dead-letters",
        200,
        json(app.get(&format!("{base}/dead-letters")).await).await,
    );
    check(
        "get",
        "/imports/{id}/towns/airports",
        200,
        json(app.get(&format!("{base}/towns/airports")).await).await,
    );
    for by in [
        "town,age_group,channel",
        "course",
        "town,age_group,channel,course",
    ] {
        let answer = check(
            "get",
            "/imports/{id}/demand",
            200,
            json(app.get(&format!("{base}/demand?by={by}")).await).await,
        );
        assert!(!answer["data"].as_array().unwrap().is_empty(), "{answer}");
    }
    check(
        "get",
        "/imports/{id}/demand",
        400,
        json(app.get(&format!("{base}/demand?by=colour")).await).await,
    );
}

#[test]
fn the_schema_checker_catches_what_it_should() {
    use common::schema::conforms;
    let document = serde_json::json!({"components": {"schemas": {
        "Row": {"type": "object", "required": ["n"], "properties": {
            "n": {"type": "integer"}, "name": {"type": ["string", "null"]}}}
    }}});
    let row = serde_json::json!({"$ref": "#/components/schemas/Row"});
    let list = serde_json::json!({"type": "array", "items": row});
    let good = serde_json::json!([{"n": 1}, {"n": 2, "name": null}]);
    assert!(conforms(&document, &list, &good).is_ok());
    for bad in [
        serde_json::json!([{"name": "x"}]),
        serde_json::json!([{"n": "1"}]),
        serde_json::json!([{"n": 1, "extra": true}]),
        serde_json::json!({"n": 1}),
    ] {
        assert!(conforms(&document, &list, &bad).is_err(), "{bad}");
    }
}

//! Logging, tracing, metrics and profiling. Nothing here knows about warp or
//! the domain: `http` feeds request facts in, `jobs`/`kafka` call the metric
//! and propagation helpers.
//!
//! Tracing: every `tracing` span also becomes an OpenTelemetry span (through
//! `tracing-opentelemetry`), so a W3C `traceparent` taken from a request or a
//! Kafka message continues the caller's trace. Spans are exported over OTLP
//! (http/protobuf) only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the other standard `OTEL_*`
//! variables (service name, resource attributes, headers, timeout, sampler,
//! batch settings) are honoured by the SDK. Otherwise logs only — trace ids
//! are still generated and propagated.

pub mod heap;
pub mod metrics;
pub mod profile;

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The provider behind the installed subscriber, kept to flush it on shutdown.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber with `filter` (an `EnvFilter` directive such
/// as `info` or `insikt=debug`) and, when the OTLP endpoint is configured, the
/// span exporter. Falls back to `info` when the filter does not parse, and
/// does nothing if a subscriber is already installed (tests).
pub fn init(filter: &str) {
    let provider = match otlp_provider() {
        Ok(provider) => provider,
        Err(error) => {
            eprintln!("insikt: not exporting traces: {error}");
            SdkTracerProvider::builder().build()
        }
    };
    install(filter, provider);
}

/// Installs the global subscriber exporting through `provider` (tests pass one
/// with an in-memory exporter). Returns false when a subscriber was already
/// installed.
///
/// Logs are coloured only on a terminal (and without `NO_COLOR`): escape
/// codes in a file or a collector's stream (journald, `kubectl logs`) only
/// get in the way of reading and parsing them.
pub fn install(filter: &str, provider: SdkTracerProvider) -> bool {
    let env_filter = EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("insikt: ignoring invalid log filter {filter:?}: {error}");
        EnvFilter::new("info")
    });
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("insikt"));
    let installed = tracing_subscriber::registry()
        .with(env_filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(true)
                .with_ansi(colour_logs()),
        )
        .with(otel)
        .try_init()
        .is_ok();
    if installed {
        let _ = PROVIDER.set(provider);
    }
    installed
}

/// True when the standard variables ask for OTLP trace export.
fn otlp_enabled() -> bool {
    let set = |name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// A provider with a batching OTLP exporter when configured, without one otherwise.
fn otlp_provider() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    if !otlp_enabled() {
        return Ok(SdkTracerProvider::builder().build());
    }
    if std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").is_ok_and(|p| p.starts_with("grpc")) {
        eprintln!("insikt: OTLP over gRPC is not built in; exporting with http/protobuf");
    }
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(exporter)
        .build())
}

/// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), named
/// `insikt` unless those name it.
fn resource() -> Resource {
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name("insikt").build()
    }
}

/// Exports the spans still buffered and stops the exporter; called once the
/// server has stopped.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(error) = provider.force_flush() {
            eprintln!("insikt: flushing traces failed: {error}");
        }
        // Shutting down twice (tests) only reports that it already happened.
        let _ = provider.shutdown();
    }
}

/// The W3C trace context headers (`traceparent`, `tracestate`) of `span`, for
/// an outgoing message (Kafka headers, an HTTP call). Empty when the span is
/// not recorded (filtered out, or no subscriber).
pub fn inject_context(span: &Span) -> Vec<(String, String)> {
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.0
}

/// The remote context carried by `headers` (name, raw value), as Kafka
/// headers or HTTP headers give them; names match case-insensitively, values
/// that are not UTF-8 are ignored. An empty context when there is none.
pub fn extract_context<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Context {
    let carrier = Carrier(
        headers
            .into_iter()
            .filter_map(|(name, value)| {
                let value = std::str::from_utf8(value).ok()?;
                Some((name.to_ascii_lowercase(), value.to_owned()))
            })
            .collect(),
    );
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` continue the remote trace in `parent` (from
/// [`extract_context`]); a no-op when `parent` carries no valid span. Call it
/// before the span is first entered.
pub fn set_parent(span: &Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The trace id of `span` in hex, when it is recorded.
pub fn trace_id(span: &Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Most links one batch span carries (the SDK drops links beyond 128 anyway).
const MAX_LINKS: usize = 128;

/// The distinct remote trace contexts carried by a batch of messages, in the
/// order first seen: the first becomes the parent of the span processing the
/// batch, the others its links (one request's messages share one context, so
/// a batch usually has few).
#[derive(Debug, Default)]
pub struct RemoteContexts(Vec<SpanContext>);

impl RemoteContexts {
    /// Notes the context in one message's `headers` (see [`extract_context`]);
    /// messages without one, or repeating one already noted, add nothing.
    pub fn add<'a>(&mut self, headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) {
        let mut headers = headers.into_iter().peekable();
        if headers.peek().is_none() || self.0.len() > MAX_LINKS {
            return;
        }
        let context = extract_context(headers);
        let span_context = context.span().span_context().clone();
        let known = self.0.iter().any(|c| {
            c.trace_id() == span_context.trace_id() && c.span_id() == span_context.span_id()
        });
        if span_context.is_valid() && !known {
            self.0.push(span_context);
        }
    }

    /// How many distinct contexts were noted.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Makes `span` continue the first context and link to the others; call
    /// it before the span is first entered. Without any context the span
    /// starts its own trace.
    pub fn continue_in(&self, span: &Span) {
        let mut contexts = self.0.iter();
        if let Some(first) = contexts.next() {
            set_parent(span, Context::new().with_remote_span_context(first.clone()));
        }
        for other in contexts {
            span.add_link(other.clone());
        }
    }
}

/// Header list used as propagation carrier (few entries: a Vec beats a map).
#[derive(Default)]
struct Carrier(Vec<(String, String)>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(name, _)| name != key);
        self.0.push((key.to_owned(), value));
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

    /// Runs `f` under a subscriber that records OpenTelemetry spans, and
    /// returns what was exported.
    fn with_tracing<T>(f: impl FnOnce() -> T) -> (T, Vec<SpanData>) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let result = tracing::subscriber::with_default(subscriber, f);
        // Read before the provider shuts down, which empties the exporter.
        let spans = exporter.get_finished_spans().unwrap();
        drop(provider);
        (result, spans)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn injected_headers_continue_the_trace_in_another_span() {
        let ((sent, received_trace), spans) = with_tracing(|| {
            let producer = tracing::info_span!("produce");
            let headers = inject_context(&producer);
            let sent = trace_id(&producer).unwrap();
            // What a consumer does with the Kafka headers of the message.
            let as_kafka: Vec<(&str, &[u8])> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect();
            let consumer = tracing::info_span!("consume");
            set_parent(&consumer, extract_context(as_kafka));
            let received = trace_id(&consumer).unwrap();
            assert!(header(&headers, "traceparent")
                .unwrap()
                .contains(&format!("-{sent}-")));
            (sent, received)
        });
        assert_eq!(sent, received_trace);
        let consume = spans
            .iter()
            .find(|s| s.name == "consume")
            .unwrap_or_else(|| panic!("{spans:?}"));
        let produce = spans.iter().find(|s| s.name == "produce").unwrap();
        assert_eq!(consume.parent_span_id, produce.span_context.span_id());
        assert_eq!(consume.span_context.trace_id().to_string(), sent);
    }

    #[test]
    fn an_incoming_traceparent_is_extracted_whatever_the_header_case() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let value = format!("00-{trace}-00f067aa0ba902b7-01");
        let context = extract_context([
            ("Traceparent", value.as_bytes()),
            ("tracestate", b"vendor=x".as_slice()),
        ]);
        let span_context = context.span().span_context().clone();
        assert!(span_context.is_remote());
        assert_eq!(span_context.trace_id().to_string(), trace);
        assert_eq!(span_context.trace_state().get("vendor"), Some("x"));

        let (continued, _) = with_tracing(|| {
            let span = tracing::info_span!("request");
            set_parent(&span, context);
            trace_id(&span)
        });
        assert_eq!(continued.as_deref(), Some(trace));
    }

    #[test]
    fn missing_or_malformed_context_starts_a_new_trace() {
        for headers in [
            vec![],
            vec![("traceparent", b"garbage".as_slice())],
            vec![(
                "traceparent",
                b"00-00000000000000000000000000000000-00f067aa0ba902b7-01".as_slice(),
            )],
            vec![("traceparent", b"\xff\xfe".as_slice())],
        ] {
            let context = extract_context(headers);
            assert!(!context.span().span_context().is_valid());
            let (fresh, _) = with_tracing(|| {
                let span = tracing::info_span!("request");
                set_parent(&span, context);
                trace_id(&span)
            });
            assert!(fresh.is_some_and(|id| id != "00000000000000000000000000000000"));
        }
    }

    #[test]
    fn a_batch_continues_its_first_context_and_links_the_other_distinct_ones() {
        let ((first, second), spans) = with_tracing(|| {
            let one = tracing::info_span!("request one");
            let two = tracing::info_span!("request two");
            let (h1, h2) = (inject_context(&one), inject_context(&two));
            let as_kafka = |headers: &[(String, String)]| -> Vec<(String, Vec<u8>)> {
                headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                    .collect()
            };
            let messages = [
                as_kafka(&h1),
                vec![],
                as_kafka(&h2),
                as_kafka(&h1),
                vec![("traceparent".to_owned(), b"garbage".to_vec())],
            ];
            let mut remotes = RemoteContexts::default();
            for headers in &messages {
                remotes.add(headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            }
            assert_eq!(remotes.len(), 2);
            let batch = tracing::info_span!("batch");
            remotes.continue_in(&batch);
            drop(batch);
            (
                one.context().span().span_context().clone(),
                two.context().span().span_context().clone(),
            )
        });
        let batch = spans.iter().find(|s| s.name == "batch").unwrap();
        assert_eq!(batch.span_context.trace_id(), first.trace_id());
        assert_eq!(batch.parent_span_id, first.span_id());
        let links: Vec<_> = batch.links.iter().map(|l| l.span_context.clone()).collect();
        assert_eq!(links.len(), 1, "{links:?}");
        assert_eq!(links[0].trace_id(), second.trace_id());
        assert_eq!(links[0].span_id(), second.span_id());
    }

    #[test]
    fn nothing_is_injected_without_a_recording_subscriber() {
        let span = tracing::info_span!("unrecorded");
        assert!(inject_context(&span).is_empty());
        assert!(trace_id(&span).is_none());
    }
}

//! OpenTelemetry traces: the `tracing` spans (request → pipeline → step →
//! stage → host calls) exported as OpenTelemetry spans through
//! `tracing-opentelemetry`, over OTLP/HTTP, when the standard variables ask
//! for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SDK_DISABLED`
//! as the specification says). Unset, nothing is exported and the spans
//! that exist only for traces are filtered out where they are declared
//! ([`SPANS`]), so they cost a disabled callsite check.

use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of the spans that exist only for traces (a pipeline, its
/// steps, model runs, feature lookups, store requests): off unless traces
/// are exported.
pub const SPANS: &str = "sluice::span";

/// Whether spans are being exported.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Whether the environment asks for traces to be exported.
pub fn requested() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The exporting pipeline; [`Traces::shutdown`] sends what is still
/// buffered.
pub struct Traces(SdkTracerProvider);

impl Traces {
    /// Send the spans still buffered and stop exporting.
    pub fn shutdown(&self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("sluice: traces not all exported at exit: {e}");
        }
    }
}

/// Start exporting: the provider (batching spans on its own thread) and
/// the tracer the `tracing` layer writes to. Call inside the Tokio runtime:
/// exports are sent by its HTTP client.
pub fn start() -> Result<(Traces, opentelemetry_sdk::trace::SdkTracer), String> {
    use opentelemetry_otlp::WithHttpConfig as _;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "traces need the Tokio runtime".to_string())?;
    let client = Client {
        runtime,
        http: reqwest::Client::new(),
    };
    // The endpoint, headers, timeout and compression come from the
    // standard variables, which the exporter reads itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .build()
        .map_err(|e| format!("cannot export traces: {e}"))?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("sluice");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("sluice");
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((Traces(provider), tracer))
}

/// Make `span` a child of the trace the caller's `traceparent` (and
/// `tracestate`) headers name, when spans are exported and they are valid.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !exporting() || !headers.contains_key("traceparent") {
        return;
    }
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    // An invalid traceparent yields an empty context: a new trace.
    let _ = span.set_parent(parent);
}

/// The `traceparent` of `span`, to answer with (W3C Trace Context's
/// `traceresponse`), when spans are exported.
pub fn trace_response(span: &tracing::Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let mut headers = HeaderMap::new();
    TraceContextPropagator::new().inject_context(
        &span.context(),
        &mut opentelemetry_http::HeaderInjector(&mut headers),
    );
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Sends the exporter's requests with the node's reqwest client on the
/// Tokio runtime (the batch processor runs on a thread of its own).
#[derive(Debug)]
struct Client {
    runtime: tokio::runtime::Handle,
    http: reqwest::Client,
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let response = http.execute(request).await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        });
        let (status, body) = sent.await??;
        Ok(Response::builder().status(status).body(body)?)
    }
}

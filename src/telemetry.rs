//! Logs, traces and metrics.
//!
//! Logs go to stderr through `tracing`. When an OTLP endpoint is configured, spans (reloads,
//! admin calls and, if asked, every decision) and metrics (decisions by result, decision
//! latency, snapshot generation, reloads by result) are exported over OTLP/gRPC from background
//! tasks; a slow or absent collector never delays a decision. Without an endpoint the metric
//! instruments are no-ops.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::eval::Decision;
use crate::snapshot::SharedSnapshot;

/// OpenTelemetry export settings.
#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector, such as `http://127.0.0.1:4317`; `None` disables export.
    pub otlp_endpoint: Option<String>,
    /// Export a span for every decision (off by default: one span per request has a cost).
    pub trace_decisions: bool,
    pub metrics_interval: Duration,
    pub json_logs: bool,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up OpenTelemetry export to `{endpoint}`: {message}")]
pub struct TelemetryError {
    endpoint: String,
    message: String,
}

/// Keeps the exporters running; [`Telemetry::shutdown`] flushes them.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Installs the log subscriber and, if configured, the OTLP exporters. Must be called
    /// inside the Tokio runtime that serves: the exporters' connections run on it.
    pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
        let filter = EnvFilter::try_from_env("IAMD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
        let fmt = if config.json_logs { fmt.json().boxed() } else { fmt.boxed() };
        let Some(endpoint) = &config.otlp_endpoint else {
            let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).try_init();
            return Ok(Telemetry { tracer: None, meter: None });
        };
        let error =
            |e: &dyn std::fmt::Display| TelemetryError { endpoint: endpoint.clone(), message: e.to_string() };
        let resource = Resource::builder().with_service_name("iamd").build();

        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| error(&e))?;
        let tracer =
            SdkTracerProvider::builder().with_batch_exporter(spans).with_resource(resource.clone()).build();
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| error(&e))?;
        let reader = PeriodicReader::builder(metrics).with_interval(config.metrics_interval).build();
        let meter = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
        opentelemetry::global::set_meter_provider(meter.clone());

        let level = if config.trace_decisions { "iamd=debug" } else { "iamd=info" };
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer.tracer("iamd"))
            .with_filter(EnvFilter::new(level));
        let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).try_init();
        Ok(Telemetry { tracer: Some(tracer), meter: Some(meter) })
    }

    /// Exports what is pending and stops the exporters.
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer {
            let _ = tracer.shutdown();
        }
        if let Some(meter) = self.meter {
            let _ = meter.shutdown();
        }
    }
}

/// The sidecar's metric instruments.
pub struct Metrics {
    decisions: Counter<u64>,
    latency: Histogram<f64>,
    reloads: Counter<u64>,
    _generation: ObservableGauge<u64>,
}

impl Metrics {
    /// Creates the instruments; the snapshot generation is read from `snapshot` when metrics
    /// are collected.
    pub fn new(snapshot: SharedSnapshot) -> Metrics {
        let meter: Meter = opentelemetry::global::meter("iamd");
        let generation = meter
            .u64_observable_gauge("iamd.snapshot.generation")
            .with_description("Generation of the published snapshot, labelled with the bundle revision")
            .with_callback(move |observer| {
                if let Some(current) = snapshot.load().as_ref() {
                    observer.observe(
                        current.generation,
                        &[KeyValue::new("bundle_revision", current.bundle.revision.clone())],
                    );
                }
            })
            .build();
        Metrics {
            _generation: generation,
            decisions: meter.u64_counter("iamd.decisions").with_description("Decisions by result").build(),
            latency: meter
                .f64_histogram("iamd.decision.duration")
                .with_unit("us")
                .with_description("Time to decide a request, from the decoded request to the decision")
                .with_boundaries(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0])
                .build(),
            reloads: meter
                .u64_counter("iamd.bundle.reloads")
                .with_description("Bundle reloads by result")
                .build(),
        }
    }

    pub fn decision(&self, decision: Decision, micros: f64) {
        let result = match decision {
            Decision::Allow => "allow",
            Decision::ImplicitDeny => "implicit_deny",
            Decision::ExplicitDeny => "explicit_deny",
        };
        let attributes = [KeyValue::new("decision", result)];
        self.decisions.add(1, &attributes);
        self.latency.record(micros, &attributes);
    }

    pub fn reload(&self, succeeded: bool) {
        let result = if succeeded { "succeeded" } else { "failed" };
        self.reloads.add(1, &[KeyValue::new("result", result)]);
    }
}

//! OpenTelemetry export to a real OTLP/gRPC receiver on loopback.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Sidecar, temp_dir};
use iamd::proto;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Collector {
    metrics: Arc<Mutex<Vec<String>>>,
    spans: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut names = self.metrics.lock().unwrap();
        for resource in request.into_inner().resource_metrics {
            for scope in resource.scope_metrics {
                names.extend(scope.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut names = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                names.extend(scope.spans.into_iter().map(|s| s.name));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn authorize() -> proto::AuthorizeRequest {
    proto::AuthorizeRequest {
        principal: "arn:aws:iam::111122223333:root".into(),
        action: "s3:GetObject".into(),
        resource: "arn:aws:s3:::reports/a".into(),
        resource_account: String::new(),
        context: HashMap::new(),
        explain: false,
        signed_request: None,
        encode_authorization_message: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_spans_reach_an_otlp_collector() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = collector.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(server.clone()))
            .add_service(TraceServiceServer::new(server))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let config = temp_dir();
    let config_file = config.path().join("iamd.toml");
    std::fs::write(&config_file, "[telemetry]\nmetrics_interval_ms = 200\n").unwrap();
    let data = temp_dir();
    let endpoint = format!("http://{address}");
    let sidecar = Sidecar::start(
        data.path(),
        None,
        &["--no-audit", "--config", config_file.to_str().unwrap(), "--otlp-endpoint", &endpoint],
    );
    let mut client = sidecar.authorizer().await;
    for _ in 0..5 {
        client.authorize(authorize()).await.unwrap();
    }
    let mut admin = sidecar.admin().await;
    admin.reload(proto::Empty {}).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    let seen = |names: &Arc<Mutex<Vec<String>>>, name: &str| names.lock().unwrap().iter().any(|n| n == name);
    while Instant::now() < deadline
        && !(seen(&collector.metrics, "iamd.decisions")
            && seen(&collector.metrics, "iamd.decision.duration")
            && seen(&collector.spans, "reload"))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen(&collector.metrics, "iamd.decisions"), "{:?}", collector.metrics.lock().unwrap());
    assert!(seen(&collector.metrics, "iamd.decision.duration"));
    assert!(seen(&collector.metrics, "iamd.snapshot.generation"));
    assert!(seen(&collector.spans, "reload"), "{:?}", collector.spans.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_collector_does_not_affect_decisions() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let data = temp_dir();
    let endpoint = format!("http://{closed}");
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit", "--otlp-endpoint", &endpoint]);
    let mut client = sidecar.authorizer().await;
    for _ in 0..200 {
        let response = client.authorize(authorize()).await.unwrap().into_inner();
        assert_eq!(response.decision, proto::Decision::Allow as i32);
    }
}

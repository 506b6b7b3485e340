//! Prometheus metrics of the API: request counts and latency by route, the queue depth, and the
//! open connections (against `RECSYS_MAX_CONNECTIONS`). The
//! worker's batch-size, batch-time and job-latency metrics join the same registry in the embedded
//! mode.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use super::AppState;

/// The API's metrics and the registry `/metrics` renders.
#[derive(Clone)]
pub struct HttpMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub queue_depth: IntGauge,
    /// Connections open now, moved by [`super::connections::ConnectionCap`].
    pub open_connections: IntGauge,
}

impl HttpMetrics {
    /// Registers the API metrics in `registry`.
    pub fn register(registry: Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "movierec_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "movierec_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["method", "route"],
        )?;
        let queue_depth = IntGauge::new("movierec_queue_depth", "Jobs waiting for a worker")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        let open_connections = IntGauge::new(
            "movierec_http_open_connections",
            "HTTP connections open now (requests on those over RECSYS_MAX_CONNECTIONS answer 503)",
        )?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            queue_depth,
            open_connections,
        })
    }
}

/// Middleware: counts and times every request under its route pattern (never its raw path, so
/// job ids do not explode the label set).
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    // Matched against the app's resource map, so it works before routing has run.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let res = next.call(req).await;
    if let Some(m) = metrics {
        let status = match &res {
            Ok(r) => r.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        m.requests
            .with_label_values(&[method.as_str(), route.as_str(), &status.to_string()])
            .inc();
        m.latency
            .with_label_values(&[method.as_str(), route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    res
}

/// Renders `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    use prometheus::{Encoder, TextEncoder};
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(out)
}

/// A server that answers only `GET /metrics` from `registry`: the worker process's own metrics
/// endpoint (batch sizes, job latency). Returns the bound port and the server to await.
pub fn metrics_server(
    host: &str,
    port: u16,
    registry: Registry,
) -> std::io::Result<(u16, actix_web::dev::Server)> {
    use actix_web::{App, HttpResponse, HttpServer};
    let listener = std::net::TcpListener::bind((host, port))?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        let registry = registry.clone();
        App::new().route(
            "/metrics",
            web::get().to(move || {
                let registry = registry.clone();
                async move {
                    match render(&registry) {
                        Ok(body) => HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4")
                            .body(body),
                        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
                    }
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((port, server))
}

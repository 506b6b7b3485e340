//! Operations: `GET /health` (the dependencies), `GET /health/live` (the process answers),
//! `GET /health/ready` (it can serve what it should), `GET /metrics`, `GET /openapi.json`.
//!
//! A probe that fails says so in a fixed phrase and logs the cause: error texts of Redis or
//! SQLite never reach a client. Every 503 carries `Retry-After`.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::error::RETRY_AFTER_SECS;
use crate::http::readiness::{WorkerView, model_problem};
use crate::http::{ApiDoc, ApiError, AppState};

/// Longest a health probe waits on one dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyHealth {
    pub ok: bool,
    /// What it is, e.g. `redis`, `in-process`, `sqlite`.
    pub backend: String,
    /// `not answering` or `timed out` (the cause is in the server's log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Jobs waiting (queue only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<u64>,
    /// Movies in the catalogue (catalogue only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub movies: Option<i64>,
}

impl DependencyHealth {
    fn up(backend: String) -> Self {
        Self {
            ok: true,
            backend,
            error: None,
            depth: None,
            movies: None,
        }
    }

    /// A failed probe: a fixed phrase for the client, the cause for the log.
    fn down(backend: String, dependency: &str, cause: Option<String>) -> Self {
        let error = match cause {
            Some(cause) => {
                tracing::warn!(dependency, %cause, "health probe failed");
                "not answering"
            }
            None => {
                tracing::warn!(dependency, "health probe timed out");
                "timed out"
            }
        };
        Self {
            ok: false,
            backend,
            error: Some(error.into()),
            depth: None,
            movies: None,
        }
    }
}

/// The service's health, per dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    pub queue: DependencyHealth,
    pub catalogue: DependencyHealth,
}

/// The process answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// Always `live`.
    pub status: &'static str,
}

/// Whether the service can serve what it should.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Why not, one sentence each; empty when ready.
    pub reasons: Vec<String>,
    /// What serves: this process (`embedded`), or the workers announced in Redis.
    pub workers: Vec<WorkerView>,
    pub queue: DependencyHealth,
    pub catalogue: DependencyHealth,
}

async fn probe_queue(state: &AppState) -> DependencyHealth {
    let backend = state.queue.backend_name().to_owned();
    let probe = async {
        state.queue.ping().await?;
        state.queue.depth().await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(depth)) => DependencyHealth {
            depth: Some(depth),
            ..DependencyHealth::up(backend)
        },
        Ok(Err(e)) => DependencyHealth::down(backend, "queue", Some(e.to_string())),
        Err(_) => DependencyHealth::down(backend, "queue", None),
    }
}

async fn probe_catalogue(state: &AppState) -> DependencyHealth {
    let backend = "sqlite".to_owned();
    let probe = state.catalogue.run(|c| c.movie_count());
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(n)) => DependencyHealth {
            movies: Some(n),
            ..DependencyHealth::up(backend)
        },
        Ok(Err(e)) => DependencyHealth::down(backend, "catalogue", Some(e.to_string())),
        Err(_) => DependencyHealth::down(backend, "catalogue", None),
    }
}

/// A 503 with `Retry-After`.
fn unavailable() -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::ServiceUnavailable();
    res.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
    res
}

/// 200 when the queue and the catalogue answer, 503 otherwise.
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "A dependency is down; see Retry-After", body = Health),
    )
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let (queue, catalogue) = futures::join!(probe_queue(&state), probe_catalogue(&state));
    let healthy = queue.ok && catalogue.ok;
    let body = Health {
        status: if healthy { "ok" } else { "unavailable" },
        queue,
        catalogue,
    };
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        unavailable().json(body)
    }
}

/// 200 whenever the process answers (a liveness probe: restart it when this fails).
#[utoipa::path(
    get,
    path = "/health/live",
    responses((status = 200, description = "The process answers", body = Live))
)]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Live { status: "live" })
}

/// 200 when the queue and the catalogue answer and a model that is not an unasked popularity
/// fallback serves (this process's in `serve --embedded`, else at least one worker's); 503
/// otherwise (a readiness probe: send no traffic while it fails).
#[utoipa::path(
    get,
    path = "/health/ready",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready; `reasons` says why; see Retry-After", body = Ready),
    )
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let workers = async {
        match tokio::time::timeout(PROBE_TIMEOUT, state.readiness.workers()).await {
            Ok(Ok(workers)) => Some(workers),
            Ok(Err(e)) => {
                tracing::warn!(cause = %e, "cannot read the workers' announcements");
                None
            }
            Err(_) => {
                tracing::warn!("reading the workers' announcements timed out");
                None
            }
        }
    };
    let (queue, catalogue, workers) =
        futures::join!(probe_queue(&state), probe_catalogue(&state), workers);
    let mut reasons = Vec::new();
    if !queue.ok {
        reasons.push("the job queue is unavailable".to_owned());
    }
    if !catalogue.ok {
        reasons.push("the catalogue is unavailable".to_owned());
    }
    let workers = match workers {
        Some(workers) => {
            reasons.extend(model_problem(&workers).map(str::to_owned));
            workers
        }
        None => {
            if queue.ok {
                reasons.push("the workers' announcements cannot be read".to_owned());
            }
            Vec::new()
        }
    };
    let ready = reasons.is_empty();
    let body = Ready {
        status: if ready { "ready" } else { "not_ready" },
        reasons,
        workers,
        queue,
        catalogue,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        unavailable().json(body)
    }
}

/// Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain"))
)]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Ok(Ok(depth)) = tokio::time::timeout(PROBE_TIMEOUT, state.queue.depth()).await {
        state
            .metrics
            .queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
    let out = crate::http::metrics::render(&state.metrics.registry)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}

/// This document, with this server's request limits.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, description = "OpenAPI 3 document"))
)]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::with_limits(&state.limits))
}

//! Operations: `GET /health`, `GET /metrics`, `GET /openapi.json`.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::http::{ApiDoc, ApiError, AppState};

/// Longest a health probe waits on one dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyHealth {
    pub ok: bool,
    /// What it is, e.g. `redis`, `in-process`, `sqlite`.
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Jobs waiting (queue only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<u64>,
    /// Movies in the catalogue (catalogue only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub movies: Option<i64>,
}

/// The service's health, per dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    pub queue: DependencyHealth,
    pub catalogue: DependencyHealth,
}

/// 200 when the queue and the catalogue answer, 503 otherwise.
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "A dependency is down", body = Health),
    )
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let queue = async {
        let backend = state.queue.backend_name().to_owned();
        let probe = async {
            state.queue.ping().await?;
            state.queue.depth().await
        };
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(depth)) => DependencyHealth {
                ok: true,
                backend,
                error: None,
                depth: Some(depth),
                movies: None,
            },
            Ok(Err(e)) => DependencyHealth {
                ok: false,
                backend,
                error: Some(e.to_string()),
                depth: None,
                movies: None,
            },
            Err(_) => DependencyHealth {
                ok: false,
                backend,
                error: Some("timed out".into()),
                depth: None,
                movies: None,
            },
        }
    };
    let catalogue = async {
        let probe = state.catalogue.run(|c| c.movie_count());
        let (ok, movies, error) = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(n)) => (true, Some(n), None),
            Ok(Err(e)) => (false, None, Some(e.to_string())),
            Err(_) => (false, None, Some("timed out".into())),
        };
        DependencyHealth {
            ok,
            backend: "sqlite".into(),
            error,
            depth: None,
            movies,
        }
    };
    let (queue, catalogue) = futures::join!(queue, catalogue);
    let healthy = queue.ok && catalogue.ok;
    let body = Health {
        status: if healthy { "ok" } else { "unavailable" },
        queue,
        catalogue,
    };
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
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

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, description = "OpenAPI 3 document"))
)]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

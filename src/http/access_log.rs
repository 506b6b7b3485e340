//! One access line per request, and its request id.
//!
//! The id is the client's `x-request-id` when that is sane (1 to 128 letters, digits or `-_.:`),
//! else a fresh UUID; it goes back in `x-request-id`, on the access line, and on every line logged
//! while the request runs (the `request` span carries it). Server errors (5xx) log at ERROR with
//! their cause, which their answer never shows; every other answer, a malformed request's
//! included, logs at INFO, so a misbehaving client cannot flood the error log.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

use super::ApiError;

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest incoming id kept.
const MAX_ID_LEN: usize = 128;

/// Middleware: assigns the request id, runs the request in its span, logs the access line.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let line = AccessLine {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        id,
    };
    let span = tracing::info_span!("request", request_id = %line.id);
    // Handlers' errors arrive as responses; an error here is one no handler turned into a
    // response, and actix answers it without this middleware's header.
    let mut res = match next.call(req).instrument(span).await {
        Ok(res) => res,
        Err(e) => {
            line.log(e.as_response_error().status_code(), started, Some(&e));
            return Err(e);
        }
    };
    if let Ok(value) = HeaderValue::from_str(&line.id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    line.log(res.status(), started, res.response().error());
    Ok(res)
}

/// What the access line says about the request.
struct AccessLine {
    method: String,
    path: String,
    id: String,
}

impl AccessLine {
    /// Logs the line: ERROR with the cause for a 5xx, WARN for a health probe's 503, INFO
    /// otherwise.
    fn log(&self, status: StatusCode, started: Instant, error: Option<&actix_web::Error>) {
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (id, method, path) = (&self.id, &self.method, &self.path);
        let status_code = status.as_u16();
        if is_probe_report(path, status) {
            tracing::warn!(
                request_id = %id, method = %method, path = %path, status = status_code,
                latency_ms, "access"
            );
        } else if status.is_server_error() {
            let cause = error
                .and_then(|e| e.as_error::<ApiError>())
                .and_then(ApiError::cause)
                .unwrap_or_default();
            tracing::error!(
                request_id = %id, method = %method, path = %path, status = status_code,
                latency_ms, cause, "access"
            );
        } else {
            tracing::info!(
                request_id = %id, method = %method, path = %path, status = status_code,
                latency_ms, "access"
            );
        }
    }
}

/// A health probe answering 503 reports a state (not ready, a dependency down) that its own
/// body and the service's logs already name; at ERROR, a probe every few seconds would flood
/// the error log.
fn is_probe_report(path: &str, status: StatusCode) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE && (path == "/health" || path.starts_with("/health/"))
}

/// The client's id when it is sane, else a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Short, and safe in a header and on a log line.
fn is_sane(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_taken_from_the_client() {
        assert!(is_sane("abc-123_x.y:z"));
        assert!(is_sane(&"a".repeat(MAX_ID_LEN)));
        assert!(!is_sane(""));
        assert!(!is_sane(&"a".repeat(MAX_ID_LEN + 1)));
        assert!(!is_sane("has space"));
        assert!(!is_sane("line\nbreak"));
        assert!(!is_sane("quote\""));
    }

    #[test]
    fn only_a_health_probe_s_503_is_a_report_rather_than_a_fault() {
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        assert!(is_probe_report("/health", unavailable));
        assert!(is_probe_report("/health/ready", unavailable));
        assert!(!is_probe_report(
            "/health/ready",
            StatusCode::INTERNAL_SERVER_ERROR
        ));
        assert!(!is_probe_report("/healthz", unavailable));
        assert!(!is_probe_report("/recommend", unavailable));
    }
}

//! Reading a request body within the edge limits: at most `limit` bytes, all of it before the
//! request timeout. actix's own client timeout covers only the request head; without this
//! deadline a client that stops partway through its body would hold its connection (and a file
//! descriptor) for ever. A late body answers 408, and actix closes a connection whose body was
//! left unread.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures::StreamExt;

use super::ApiError;

/// Bytes of an oversized body of unknown length read (and dropped) before answering 413, so
/// the client sees the answer rather than a reset connection. Bounded in time by the deadline.
const MAX_DRAIN_BYTES: usize = 8 * 1024 * 1024;

/// The body's declared length, when it has a readable `Content-Length`.
pub fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Reads the whole body: 413 for more than `limit` bytes (at once when the declared length
/// says so), 408 when it has not all arrived within `timeout`.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::PayloadTooLarge { limit };
    let declared = declared_length(req);
    if declared.is_some_and(|d| d > limit as u64) {
        return Err(too_large());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let capacity = declared.map_or(0, |d| usize::try_from(d).unwrap_or(limit).min(limit));
    let mut body = Vec::with_capacity(capacity);
    let mut seen = 0usize;
    loop {
        let next = tokio::time::timeout_at(deadline, payload.next())
            .await
            .map_err(|_| ApiError::RequestTimeout {
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError::MalformedJson(format!("unreadable body: {e}")))?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            if seen > MAX_DRAIN_BYTES {
                break;
            }
            continue;
        }
        body.extend_from_slice(&chunk);
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(body)
}

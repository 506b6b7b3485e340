//! Reading a request body within the edge limits: at most `limit` bytes, all of it before the
//! request timeout. actix's own client timeout covers only the request head; without this
//! deadline a client that stops partway through its body would hold its connection (and a file
//! descriptor) for ever. A late body answers 408, and the connection is closed
//! ([`close_unread_body`]).

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, web};
use futures::{Stream, StreamExt};

use super::{ApiError, AppState};

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

/// How long a body is kept alive past its answer when no request timeout is known.
const DEFAULT_HOLD: Duration = Duration::from_secs(5);

/// Middleware: keeps each request's body stream alive for a while past its answer, so that
/// actix closes a connection whose body was left unread (after a 408, a 401, a 413, or a route
/// that takes no body). Dropped instead, a chunked body would be drained to its end to keep the
/// connection, with no timer: a chunked upload that stalls would hold it for ever.
pub async fn close_unread_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let has_body = req.headers().contains_key(header::CONTENT_LENGTH)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return next.call(req).await;
    }
    let hold = req
        .app_data::<web::Data<AppState>>()
        .map_or(DEFAULT_HOLD, |s| s.request_timeout);
    let shared = Rc::new(RefCell::new(req.parts_mut().1.take()));
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(SharedPayload(Rc::clone(&shared)));
    req.set_payload(Payload::from(stream));
    let res = next.call(req).await;
    actix_web::rt::spawn(async move {
        actix_web::rt::time::sleep(hold).await;
        drop(shared);
    });
    res
}

/// The request's body, shared with [`close_unread_body`], which outlives the handler.
struct SharedPayload(Rc<RefCell<Payload>>);

impl Stream for SharedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

//! The connection cap with a clear refusal. actix's own `max_connections` only stops accepting:
//! a connection over it waits in the kernel's backlog with no answer, and its client cannot
//! tell a full server from a dead one. So actix is let accept a reserve above
//! `RECSYS_MAX_CONNECTIONS` ([`accepted`]), every open connection is counted here, and a
//! request on a connection accepted over the cap answers 503 with `Retry-After` and
//! `Connection: close` ([`refuse_over_cap`]). Beyond the reserve the backlog holds the rest, as
//! before.
//!
//! The count lives in a guard that [`ConnectionCap::on_connect`] puts in each connection's
//! extensions. actix-http's dispatcher owns those extensions (an `Rc`) for the connection's
//! life and each request borrows a clone that its pooled `HttpRequest` gives back when it is
//! done, so the guard drops, and the count falls, when the connection closes.
//!
//! The health probes (`/health`, `/health/live`, `/health/ready`) are answered over the cap
//! too: an orchestrator must not restart or drain a server only because it is full, and they
//! read no body.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use prometheus::IntGauge;

use super::ApiError;

/// Connections accepted above the cap at least, to be answered 503 rather than left waiting.
const MIN_RESERVE: usize = 16;

/// Connections actix accepts for a cap of `cap`: the cap plus a reserve (a tenth of the cap,
/// at least [`MIN_RESERVE`]) on which requests are refused.
pub fn accepted(cap: usize) -> usize {
    cap.saturating_add((cap / 10).max(MIN_RESERVE))
}

/// The count of open connections, shared by every worker thread, and the cap.
#[derive(Clone)]
pub struct ConnectionCap {
    open: Arc<AtomicUsize>,
    cap: usize,
    /// `movierec_http_open_connections`, moved with the count.
    gauge: IntGauge,
}

impl ConnectionCap {
    pub fn new(cap: usize, gauge: IntGauge) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            cap,
            gauge,
        }
    }

    /// For `HttpServer::on_connect`: counts the new connection, and remembers whether it came
    /// within the cap.
    pub fn on_connect(&self, _io: &dyn Any, extensions: &mut Extensions) {
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.gauge.inc();
        extensions.insert(OpenConnection {
            cap: self.clone(),
            within_cap: open <= self.cap,
        });
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// One open connection, counted while it lives (see the module's documentation).
pub struct OpenConnection {
    cap: ConnectionCap,
    within_cap: bool,
}

impl OpenConnection {
    /// Whether a request on this connection is refused: it was accepted over the cap, and the
    /// server is still over it (one that came in the reserve is served once others closed).
    pub fn refused(&self) -> bool {
        !self.within_cap && self.cap.open() > self.cap.cap
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.cap.open.fetch_sub(1, Ordering::SeqCst);
        self.cap.gauge.dec();
    }
}

/// Whether `path` is a health probe, answered over the cap.
fn is_probe(path: &str) -> bool {
    matches!(path, "/health" | "/health/live" | "/health/ready")
}

/// Middleware: a request on a connection over the cap answers 503 `too_many_connections`
/// (with `Retry-After`, and the connection closed), unless it is a health probe.
pub async fn refuse_over_cap(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let over = req
        .conn_data::<OpenConnection>()
        .filter(|c| c.refused())
        .map(|c| c.cap.cap);
    if let Some(limit) = over
        && !is_probe(req.path())
    {
        return Ok(req
            .error_response(ApiError::TooManyConnections { limit })
            .map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(n: usize) -> ConnectionCap {
        ConnectionCap::new(n, IntGauge::new("open", "open connections").unwrap())
    }

    fn connect(cap: &ConnectionCap) -> OpenConnection {
        let mut ext = Extensions::new();
        cap.on_connect(&(), &mut ext);
        ext.remove::<OpenConnection>().unwrap()
    }

    #[test]
    fn the_reserve_is_a_tenth_of_the_cap_and_at_least_sixteen() {
        assert_eq!(accepted(8), 24);
        assert_eq!(accepted(10_000), 11_000);
        assert_eq!(accepted(usize::MAX), usize::MAX);
    }

    #[test]
    fn connections_over_the_cap_are_refused_until_others_close() {
        let cap = cap(2);
        let first = connect(&cap);
        let second = connect(&cap);
        let third = connect(&cap);
        assert!(!first.refused() && !second.refused());
        assert!(third.refused());
        assert_eq!(cap.open(), 3);
        assert_eq!(cap.gauge.get(), 3);
        drop(first);
        // Two open, within the cap: the one that came in the reserve is served now.
        assert!(!third.refused());
        drop((second, third));
        assert_eq!(cap.open(), 0);
        assert_eq!(cap.gauge.get(), 0);
    }

    #[test]
    fn only_the_probes_are_exempt() {
        assert!(is_probe("/health/live") && is_probe("/health") && is_probe("/health/ready"));
        assert!(!is_probe("/recommend") && !is_probe("/metrics") && !is_probe("/health/x"));
    }
}

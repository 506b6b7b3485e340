//! Limits at the edge, before a handler runs: the listening socket and its backlog, the
//! open-file limit that connections count against, and an oversized `Content-Length` refused
//! before a byte of its body is read. The timeouts are actix's own settings, applied in
//! [`super::Application::build`]; the connection cap is [`super::connections`].

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use socket2::{Domain, Socket, Type};

use super::body::declared_length;
use super::{ApiError, MAX_BODY_BYTES};

/// File descriptors kept free beyond the connection cap (catalogue files, Redis, logs).
const SPARE_FILES: u64 = 256;

/// Binds `host:port` (port 0 picks a free one) with a listen backlog of `backlog`: the
/// connections the kernel queues while the server accepts none (std's `bind` fixes it at 128).
pub fn listen(host: &str, port: u16, backlog: u32) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match bind(addr, backlog) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{host} resolves to no address"),
        )
    }))
}

fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Raises the soft open-file limit to the hard one, so that the connection cap, not EMFILE
/// ("Too many open files"), is what holds back a flood of connections. Warns when even the
/// hard limit is below `max_connections` plus some spare.
pub fn raise_open_file_limit(max_connections: u64) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let wanted = max_connections.saturating_add(SPARE_FILES);
            if limit < wanted {
                tracing::warn!(
                    open_file_limit = limit,
                    max_connections,
                    "the open-file limit is below RECSYS_MAX_CONNECTIONS plus {SPARE_FILES} spare: \
                     lower RECSYS_MAX_CONNECTIONS or raise the hard limit (ulimit -Hn, or the \
                     container's nofile ulimit)"
                );
            } else {
                tracing::debug!(open_file_limit = limit, "open-file limit");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read or raise the open-file limit"),
    }
}

/// Middleware: a request declaring a body over [`MAX_BODY_BYTES`] answers 413 at once, and its
/// connection is closed without reading the body.
pub async fn refuse_oversized(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if declared_length(req.request()).is_some_and(|d| d > MAX_BODY_BYTES as u64) {
        return Ok(req
            .error_response(ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            })
            .map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

//! The HTTP API (actix-web): [`Application::build`] binds the listener (port 0 picks a free one)
//! and wires the routes; handlers only talk to the [`JobQueue`] trait and the catalogue pool.
//!
//! Routes: `POST /recommend`, `GET /recommend/{job_id}`, `GET /movies/search`,
//! `GET /movies/{id}`, `GET /health`, `GET /health/live`, `GET /health/ready`, `GET /metrics`,
//! `GET /openapi.json`, the demo page at `/` with its assets under `/static/`, and
//! `POST /sign-in` and `POST /sign-out` for the page when a secret is set ([`auth`]). Every
//! request gets a request id and one access line ([`access_log`]); limits on size, time and
//! connections apply before any handler ([`edge`], [`body`], [`connections`]).

pub mod access_log;
mod admission;
mod auth;
mod body;
mod connections;
mod edge;
mod error;
mod json_body;
pub mod metrics;
mod openapi;
mod pool;
pub mod readiness;
pub mod routes;
mod session;
mod whole_number;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::KeepAlive;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

pub use admission::Admission;
pub use auth::{Auth, SESSION_COOKIE};
pub use error::{ApiError, Dependency, ErrorBody};
pub use metrics::HttpMetrics;
pub use openapi::ApiDoc;
pub use pool::CataloguePool;
pub use readiness::ModelReadiness;

use crate::config::{
    DEFAULT_MAX_K, DEFAULT_MAX_SEARCH_LIMIT, DEFAULT_MAX_SEQUENCE, ServerSettings,
};
use crate::queue::JobQueue;
use crate::recommend::ModelInfo;
use crate::registry::control::ModelControl;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest `wait_ms` a caller may ask for.
pub const MAX_WAIT_MS: u64 = 10_000;

/// The `avoided` list may always hold this many ids, however short sequences must be.
pub const MIN_MAX_AVOIDED: usize = 1000;

/// Request limits the handlers enforce, and `/openapi.json` states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_k: usize,
    pub max_sequence: usize,
    pub max_search_limit: usize,
}

impl Limits {
    /// Longest `avoided` list a request may send.
    pub fn max_avoided(&self) -> usize {
        self.max_sequence.max(MIN_MAX_AVOIDED)
    }
}

impl Default for Limits {
    /// The limits of a server started without limit settings.
    fn default() -> Self {
        Self {
            max_k: DEFAULT_MAX_K,
            max_sequence: DEFAULT_MAX_SEQUENCE,
            max_search_limit: DEFAULT_MAX_SEARCH_LIMIT,
        }
    }
}

/// What every handler can reach.
pub struct AppState {
    pub queue: Arc<dyn JobQueue>,
    pub catalogue: CataloguePool,
    pub limits: Limits,
    /// The secret and the session key; `None` when no secret is set (everything open).
    pub auth: Option<Auth>,
    /// How long a client has to send a request body (and, in actix, its head).
    pub request_timeout: Duration,
    pub metrics: HttpMetrics,
    /// What answers, shown on the demo page (`None` when the API process has no checkpoint).
    pub model: Option<ModelInfo>,
    /// Where `/health/ready` learns whether the model side is ready.
    pub readiness: ModelReadiness,
    /// Where `GET /models` lists the checkpoints.
    pub checkpoint_root: Option<PathBuf>,
    /// Which models are live, and promotions (here or on the Redis workers).
    pub control: Arc<dyn ModelControl>,
    /// The bound on recommend requests in progress (`RECSYS_MAX_PENDING`).
    pub admission: Admission,
}

/// The parts an [`Application`] is built from (so `serve`, `serve --embedded` and tests can pick
/// the queue backend).
pub struct AppDeps {
    pub queue: Arc<dyn JobQueue>,
    pub catalogue: CataloguePool,
    pub metrics: HttpMetrics,
    /// What answers, for the demo page.
    pub model: Option<ModelInfo>,
    /// Where readiness comes from: the model this process serves, or the workers in Redis.
    pub readiness: ModelReadiness,
    /// Where `GET /models` lists the checkpoints.
    pub checkpoint_root: Option<PathBuf>,
    /// Which models are live, and promotions.
    pub control: Arc<dyn ModelControl>,
}

/// A bound, not yet running API server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds `settings.host:settings.port` and prepares the server, with the edge limits of
    /// `settings`: request timeout (head and body), keep-alive, connection cap and backlog.
    pub fn build(settings: &ServerSettings, deps: AppDeps) -> std::io::Result<Self> {
        let auth = settings
            .required_secret()
            .map(|s| Auth::new(s, settings.session_ttl_secs, settings.secure_cookie))
            .transpose()
            .map_err(std::io::Error::other)?;
        let cap = usize::try_from(settings.max_connections).unwrap_or(usize::MAX);
        let accepted = connections::accepted(cap);
        edge::raise_open_file_limit(accepted as u64);
        let listener = edge::listen(&settings.host, settings.port, settings.backlog)?;
        let port = listener.local_addr()?.port();
        let request_timeout = Duration::from_millis(settings.request_timeout_ms);
        let connection_cap =
            connections::ConnectionCap::new(cap, deps.metrics.open_connections.clone());
        let state = web::Data::new(AppState {
            queue: deps.queue,
            catalogue: deps.catalogue,
            limits: Limits {
                max_k: settings.max_k.max(1),
                max_sequence: settings.max_sequence,
                max_search_limit: settings.max_search_limit.max(1),
            },
            auth,
            request_timeout,
            metrics: deps.metrics,
            model: deps.model,
            readiness: deps.readiness,
            checkpoint_root: deps.checkpoint_root,
            control: deps.control,
            admission: Admission::new(usize::try_from(settings.max_pending).unwrap_or(usize::MAX)),
        });
        // actix's cap is per worker thread, and stops accepting (the backlog holds the rest);
        // it is set to the cap plus the reserve on which requests answer 503.
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let per_worker = accepted.div_ceil(workers);
        let keep_alive = match settings.keep_alive_secs {
            0 => KeepAlive::Disabled,
            secs => KeepAlive::Timeout(Duration::from_secs(secs)),
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(auth::guard))
                .wrap(from_fn(edge::refuse_oversized))
                .wrap(from_fn(connections::refuse_over_cap))
                .wrap(from_fn(body::close_unread_body))
                .wrap(from_fn(metrics::track))
                .wrap(from_fn(access_log::access_log))
                .configure(routes::configure)
        })
        .workers(workers)
        .max_connections(per_worker)
        .on_connect(move |io, ext| connection_cap.on_connect(io, ext))
        .client_request_timeout(request_timeout)
        .client_disconnect_timeout(Duration::from_millis(settings.disconnect_timeout_ms))
        .keep_alive(keep_alive)
        .listen(listener)?
        .shutdown_timeout(30)
        .run();
        tracing::info!(
            port,
            workers,
            max_connections = settings.max_connections,
            accepted_connections = accepted,
            request_timeout_ms = settings.request_timeout_ms,
            "API listening"
        );
        Ok(Self { port, server })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop it gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGTERM/SIGINT or [`ServerHandle::stop`]); in-flight requests finish
    /// first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

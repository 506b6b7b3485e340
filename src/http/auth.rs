//! Who may call what. With `RECSYS_SECRET` set, every route but the public ones (the page, sign
//! in and out, its static files, health, metrics, the OpenAPI document) needs either
//! `Authorization: Bearer <secret>` (scripts) or the session cookie that `POST /sign-in` sets
//! once a person has typed the secret (the page). Both are checked in constant time and never
//! logged. Without a secret everything is open.
//!
//! [`guard`] enforces this for every request, so a route added later is closed by default; the
//! handlers of the JSON API also call [`authorize`] themselves.

use actix_web::HttpRequest;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web;
use sha2::{Digest, Sha256};

use super::session::{KeyError, SessionKey, unix_now};
use super::{ApiError, AppState};
use crate::config::Secret;

/// Name of the cookie that carries a signed session token.
pub const SESSION_COOKIE: &str = "movierec_session";

/// Paths anyone may ask, exactly as written (deny by default: any other path needs
/// credentials, an unknown one included).
const PUBLIC_PATHS: &[&str] = &[
    "/",
    "/sign-in",
    "/sign-out",
    "/static/app.css",
    "/static/app.js",
    "/health",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/openapi.json",
];

/// The secret, the session key derived from it, and how session cookies are made.
#[derive(Debug, Clone)]
pub struct Auth {
    /// SHA-256 of the secret: comparing digests takes the same time whatever the length of
    /// what a client sends.
    secret_digest: [u8; 32],
    key: SessionKey,
    session_ttl_secs: u64,
    secure_cookie: bool,
}

impl Auth {
    /// Auth with `secret`; sessions last `session_ttl_secs`; `secure_cookie` marks the cookie
    /// `Secure` (behind a TLS proxy).
    pub fn new(
        secret: &Secret,
        session_ttl_secs: u64,
        secure_cookie: bool,
    ) -> Result<Self, KeyError> {
        Ok(Self {
            secret_digest: Sha256::digest(secret.expose()).into(),
            key: SessionKey::derive(secret)?,
            session_ttl_secs,
            secure_cookie,
        })
    }

    /// True when `given` is the secret (constant time).
    pub fn is_secret(&self, given: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        constant_time_eq::constant_time_eq_32(&digest, &self.secret_digest)
    }

    /// True when the request carries the bearer secret or a valid session cookie.
    pub fn allows(&self, req: &HttpRequest) -> bool {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        if bearer.is_some_and(|token| self.is_secret(token)) {
            return true;
        }
        req.cookie(SESSION_COOKIE)
            .is_some_and(|c| self.key.verify(c.value(), unix_now()).is_ok())
    }

    /// A session cookie with a fresh signed token: HttpOnly, SameSite=Strict, `Secure` when
    /// configured, and gone with the token's expiry.
    pub fn session_cookie(&self) -> Cookie<'static> {
        let token = self
            .key
            .mint(unix_now().saturating_add(self.session_ttl_secs));
        let max_age = i64::try_from(self.session_ttl_secs).unwrap_or(i64::MAX);
        self.cookie(token)
            .max_age(time::Duration::seconds(max_age))
            .finish()
    }

    /// The cookie that replaces a session cookie on sign-out (empty, already expired).
    pub fn cleared_cookie(&self) -> Cookie<'static> {
        self.cookie(String::new())
            .max_age(time::Duration::ZERO)
            .finish()
    }

    fn cookie(&self, value: String) -> actix_web::cookie::CookieBuilder<'static> {
        Cookie::build(SESSION_COOKIE, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure_cookie)
    }
}

/// Lets the request through, or answers 401.
pub fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    match &state.auth {
        Some(auth) if !auth.allows(req) => Err(ApiError::Unauthorized),
        _ => Ok(()),
    }
}

/// True when `path` answers without credentials.
fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path)
}

/// Middleware: with a secret set, a request for anything but a public path without
/// credentials gets 401 before any handler (or the 404 and 405 answers) runs.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = !is_public(req.path())
        && req
            .app_data::<web::Data<AppState>>()
            .and_then(|s| s.auth.as_ref())
            .is_some_and(|auth| !auth.allows(req.request()));
    if refused {
        return Ok(req
            .error_response(ApiError::Unauthorized)
            .map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_paths_are_public() {
        for path in [
            "/",
            "/health",
            "/health/ready",
            "/static/app.js",
            "/sign-in",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in [
            "/recommend",
            "/recommend/x",
            "/movies/1",
            "/movies/search",
            "/static/other.js",
            "/health/../recommend",
            "//recommend",
            "/nope",
            "",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[test]
    fn the_secret_is_recognised_exactly() {
        let auth = Auth::new(&"s3cret".parse().unwrap(), 60, false).unwrap();
        assert!(auth.is_secret("s3cret"));
        for wrong in ["", "s3cre", "s3cret ", "S3cret", "s3crets"] {
            assert!(!auth.is_secret(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_when_asked() {
        let auth = Auth::new(&"s3cret".parse().unwrap(), 60, false).unwrap();
        let c = auth.session_cookie();
        assert_eq!(c.http_only(), Some(true));
        assert_eq!(c.same_site(), Some(SameSite::Strict));
        assert_ne!(c.secure(), Some(true));
        assert_eq!(c.max_age(), Some(time::Duration::seconds(60)));
        assert!(!c.value().contains("s3cret"));
        let secure = Auth::new(&"s3cret".parse().unwrap(), 60, true).unwrap();
        assert_eq!(secure.session_cookie().secure(), Some(true));
    }
}

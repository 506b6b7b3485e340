//! The bearer secret: when `RECSYS_SECRET` is set, the JSON API needs
//! `Authorization: Bearer <secret>`. Compared in constant time; never logged. The demo page's own
//! same-origin calls carry its HttpOnly cookie instead (see [`super::routes::page`]).

use actix_web::HttpRequest;
use actix_web::http::header;

use super::{ApiError, AppState};

/// Lets the request through, or answers 401.
pub fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(secret) = &state.secret else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if let Some(token) = given
        && constant_time_eq::constant_time_eq(token.as_bytes(), secret.expose())
    {
        return Ok(());
    }
    if let Some(cookie) = req.cookie(super::routes::page::UI_COOKIE)
        && constant_time_eq::constant_time_eq(cookie.value().as_bytes(), state.ui_token.as_bytes())
    {
        return Ok(());
    }
    Err(ApiError::Unauthorized)
}

//! The demo page at `/` (askama, `templates/index.html`) and its static assets, compiled into
//! the binary so it works offline and needs no front-end build.
//!
//! With `RECSYS_SECRET` set, the page still works without the secret reaching the browser: it
//! sets an HttpOnly, SameSite=Strict cookie holding a random per-process token, which
//! [`authorize`](crate::http) accepts for the page's own same-origin calls.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use askama::Template;

use crate::http::{ApiError, AppState};
use crate::recommend::ModelInfo;

/// Name of the cookie that lets the page call the API when a secret is set.
pub const UI_COOKIE: &str = "movierec_ui";

/// K the form starts with.
const DEFAULT_K: usize = 10;

/// `templates/index.html`.
#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    model: Option<&'a ModelInfo>,
    max_k: usize,
    default_k: usize,
    max_sequence: usize,
}

/// `GET /`: the demo page.
pub async fn index(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let page = IndexPage {
        model: state.model.as_ref(),
        max_k: state.limits.max_k,
        default_k: DEFAULT_K.min(state.limits.max_k),
        max_sequence: state.limits.max_sequence,
    };
    let html = page
        .render()
        .map_err(|e| ApiError::Internal(format!("rendering the page: {e}")))?;
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if state.secret.is_some() {
        response.cookie(
            Cookie::build(UI_COOKIE, state.ui_token.clone())
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .finish(),
        );
    }
    Ok(response.body(html))
}

/// `GET /static/app.css`.
pub async fn css() -> HttpResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../../templates/static/app.css"),
    )
}

/// `GET /static/app.js`.
pub async fn js() -> HttpResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../../templates/static/app.js"),
    )
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_and_model_text_is_escaped() {
        let info = ModelInfo {
            architecture: "<script>alert(1)</script>".into(),
            dataset: "ml-100k".into(),
            checkpoint: "\"><img src=x onerror=alert(1)>".into(),
            items: 3,
            max_len: 20,
        };
        let html = IndexPage {
            model: Some(&info),
            max_k: 100,
            default_k: 10,
            max_sequence: 200,
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>alert(1)</script>"));
        // askama writes `<` and `>` as numeric (`&#60;`) or named (`&lt;`) references.
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "the architecture is shown, escaped"
        );
        assert!(!html.contains("<img src=x"));
        assert!(html.contains(r#"data-max-k="100""#));
    }

    #[test]
    fn renders_without_a_model() {
        let html = IndexPage {
            model: None,
            max_k: 50,
            default_k: 10,
            max_sequence: 200,
        }
        .render()
        .unwrap();
        assert!(html.contains("movierec"));
        assert!(html.contains(r#"max="50""#));
    }
}

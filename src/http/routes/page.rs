//! The demo page at `/` (askama, `templates/index.html`), its sign-in form
//! (`templates/sign_in.html`) and its static assets, compiled into the binary so it works
//! offline and needs no front-end build.
//!
//! With `RECSYS_SECRET` set, `GET /` shows the sign-in form until the visitor has typed the
//! secret: `POST /sign-in` checks it (constant time) and sets the signed session cookie (see
//! [`crate::http::Auth`]) that the page's own same-origin calls then carry. `GET /` itself never
//! hands out a credential.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use askama::Template;
use serde::Deserialize;

use crate::http::body::read_body;
use crate::http::{ApiError, AppState};
use crate::recommend::ModelInfo;

/// K the form starts with.
const DEFAULT_K: usize = 10;

/// Largest sign-in form accepted.
const MAX_SIGN_IN_BYTES: usize = 4 * 1024;

/// What the browser may load and send on the pages: this origin only.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'self'";

/// `templates/index.html`.
#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    model: Option<&'a ModelInfo>,
    max_k: usize,
    default_k: usize,
    max_sequence: usize,
    /// Shows the sign-out button (a secret is set, and the visitor signed in).
    signed_in: bool,
}

/// `templates/sign_in.html`.
#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    error: Option<&'a str>,
}

/// The form `POST /sign-in` reads.
#[derive(Deserialize)]
struct SignInForm {
    secret: String,
}

/// `GET /`: the demo page, or the sign-in form when a secret is set and the visitor has no
/// valid session.
pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Some(auth) = &state.auth
        && !auth.allows(&req)
    {
        return page(HttpResponse::Ok(), &SignInPage { error: None });
    }
    let index = IndexPage {
        model: state.model.as_ref(),
        max_k: state.limits.max_k,
        default_k: DEFAULT_K.min(state.limits.max_k),
        max_sequence: state.limits.max_sequence,
        signed_in: state.auth.is_some(),
    };
    page(HttpResponse::Ok(), &index)
}

/// `POST /sign-in` (form field `secret`): the right secret sets the session cookie and goes back
/// to the page (303); a wrong one shows the form again with 401.
pub async fn sign_in(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(auth) = &state.auth else {
        return Err(ApiError::NotFound(
            "this server has no secret, so there is nothing to sign in to".into(),
        ));
    };
    let body = read_body(&req, payload, MAX_SIGN_IN_BYTES, state.request_timeout).await?;
    let form: SignInForm = serde_urlencoded::from_bytes(&body).map_err(|_| {
        ApiError::invalid(
            "secret",
            "send the form field `secret` (application/x-www-form-urlencoded)",
        )
    })?;
    if !auth.is_secret(&form.secret) {
        let error = "That is not the secret.";
        return page(
            HttpResponse::build(StatusCode::UNAUTHORIZED),
            &SignInPage { error: Some(error) },
        );
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(auth.session_cookie())
        .finish())
}

/// `POST /sign-out`: clears the session cookie and goes back to the page (303).
pub async fn sign_out(state: web::Data<AppState>) -> HttpResponse {
    let mut res = HttpResponse::SeeOther();
    res.insert_header((header::LOCATION, "/"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(auth) = &state.auth {
        res.cookie(auth.cleared_cookie());
    }
    res.finish()
}

/// Renders `template` as an HTML page that is never cached and loads from this origin only.
fn page(mut res: HttpResponseBuilder, template: &impl Template) -> Result<HttpResponse, ApiError> {
    let html = template
        .render()
        .map_err(|e| ApiError::Internal(format!("rendering the page: {e}")))?;
    Ok(res
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(html))
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
            precision: crate::model::Precision::F32,
        };
        let html = IndexPage {
            model: Some(&info),
            max_k: 100,
            default_k: 10,
            max_sequence: 200,
            signed_in: false,
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
            signed_in: false,
        }
        .render()
        .unwrap();
        assert!(html.contains("movierec"));
        assert!(html.contains(r#"max="50""#));
    }

    #[test]
    fn the_sign_in_form_posts_the_secret_and_escapes_its_message() {
        let html = SignInPage {
            error: Some("<b>no</b>"),
        }
        .render()
        .unwrap();
        assert!(html.contains(r#"action="/sign-in""#));
        assert!(html.contains(r#"name="secret" type="password""#));
        assert!(!html.contains("<b>no</b>"));
        assert!(
            !SignInPage { error: None }
                .render()
                .unwrap()
                .contains("sign-in-error")
        );
    }
}

//! The OpenAPI 3 document of every endpoint, generated with utoipa.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes::{movies, ops, recommend};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "movierec", description = "Next-movie recommendations over MovieLens"),
    paths(
        recommend::post_recommend,
        recommend::get_job,
        movies::search,
        movies::get_movie,
        ops::health,
        ops::metrics,
        ops::openapi,
    ),
    components(schemas(
        recommend::RecommendBody,
        recommend::Accepted,
        recommend::JobView,
        recommend::ResultView,
        recommend::ItemView,
        recommend::ModelView,
        movies::MovieView,
        movies::SearchResults,
        ops::Health,
        ops::DependencyHealth,
        super::ErrorBody,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the JSON endpoints use when a secret is set.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

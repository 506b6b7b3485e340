//! Route table and the handlers, one file per resource.

pub mod models;
pub mod movies;
pub mod ops;
pub mod page;
pub mod recommend;

use actix_web::{HttpResponse, Resource, web};

use super::ApiError;

/// Registers every API route; a known path asked with another method answers 405 with `Allow`,
/// and an unknown path a JSON 404.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/", "GET").route(web::get().to(page::index)))
        .service(resource("/sign-in", "POST").route(web::post().to(page::sign_in)))
        .service(resource("/sign-out", "POST").route(web::post().to(page::sign_out)))
        .service(resource("/static/app.css", "GET").route(web::get().to(page::css)))
        .service(resource("/static/app.js", "GET").route(web::get().to(page::js)))
        .service(resource("/recommend", "POST").route(web::post().to(recommend::post_recommend)))
        .service(resource("/recommend/{job_id}", "GET").route(web::get().to(recommend::get_job)))
        .service(resource("/movies/search", "GET").route(web::get().to(movies::search)))
        .service(resource("/movies/{movie_id}", "GET").route(web::get().to(movies::get_movie)))
        .service(resource("/models", "GET").route(web::get().to(models::list)))
        .service(resource("/models/promote", "POST").route(web::post().to(models::promote)))
        .service(resource("/health", "GET").route(web::get().to(ops::health)))
        .service(resource("/health/live", "GET").route(web::get().to(ops::live)))
        .service(resource("/health/ready", "GET").route(web::get().to(ops::ready)))
        .service(resource("/metrics", "GET").route(web::get().to(ops::metrics)))
        .service(resource("/openapi.json", "GET").route(web::get().to(ops::openapi)))
        .default_service(web::to(not_found));
}

/// The resource at `path`, whose other methods answer 405 naming `allow`.
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow })
    }))
}

async fn not_found() -> Result<&'static str, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

//! Route table and the handlers, one file per resource.

pub mod movies;
pub mod ops;
pub mod page;
pub mod recommend;

use actix_web::web;

use super::ApiError;

/// Registers every API route, and a JSON 404 for anything else.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(page::index))
        .route("/static/app.css", web::get().to(page::css))
        .route("/static/app.js", web::get().to(page::js))
        .route("/recommend", web::post().to(recommend::post_recommend))
        .route("/recommend/{job_id}", web::get().to(recommend::get_job))
        .route("/movies/search", web::get().to(movies::search))
        .route("/movies/{movie_id}", web::get().to(movies::get_movie))
        .route("/health", web::get().to(ops::health))
        .route("/metrics", web::get().to(ops::metrics))
        .route("/openapi.json", web::get().to(ops::openapi))
        .default_service(web::to(not_found));
}

async fn not_found() -> Result<&'static str, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

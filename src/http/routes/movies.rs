//! `GET /movies/search?q=&limit=` and `GET /movies/{movie_id}`.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::catalogue::Movie;
use crate::http::auth::authorize;
use crate::http::{ApiError, AppState};

/// Default `limit` of a search.
const DEFAULT_LIMIT: usize = 20;

/// Longest search text accepted.
const MAX_QUERY_CHARS: usize = 200;

/// A catalogue movie.
#[derive(Debug, Serialize, ToSchema)]
pub struct MovieView {
    pub movie_id: i64,
    pub title: String,
    pub year: Option<i32>,
    pub genres: Vec<String>,
    pub imdb_id: Option<String>,
    pub tmdb_id: Option<i64>,
    /// Number of ratings: the movie's popularity.
    pub rating_count: i64,
}

impl From<Movie> for MovieView {
    fn from(m: Movie) -> Self {
        Self {
            movie_id: m.movie_id,
            title: m.title,
            year: m.year,
            genres: m.genres,
            imdb_id: m.imdb_id,
            tmdb_id: m.tmdb_id,
            rating_count: m.rating_count,
        }
    }
}

/// Search results, most rated first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub movies: Vec<MovieView>,
}

/// Searches titles.
#[utoipa::path(
    get,
    path = "/movies/search",
    params(
        ("q" = String, Query, max_length = 200, description = "Text to find in titles (at most 200 characters)"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 100, description = "Most results (default 20; the maximum is RECSYS_MAX_SEARCH_LIMIT)"),
    ),
    responses(
        (status = 200, description = "Matching movies", body = SearchResults),
        (status = 401, description = "Missing or wrong secret", body = crate::http::ErrorBody),
        (status = 422, description = "Bad q or limit", body = crate::http::ErrorBody),
        (status = 503, description = "Catalogue unavailable", body = crate::http::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn search(
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let q = query
        .get("q")
        .map(|q| q.trim().to_owned())
        .ok_or_else(|| ApiError::invalid("q", "q is required"))?;
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid(
            "q",
            format!("q must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let max = state.limits.max_search_limit;
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT.min(max),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("limit must be a whole number from 1 to {max}"),
                ));
            }
        },
    };
    let movies = state
        .catalogue
        .run(move |c| c.search(&q, limit))
        .await?
        .into_iter()
        .map(MovieView::from)
        .collect();
    Ok(HttpResponse::Ok().json(SearchResults { movies }))
}

/// One movie by its MovieLens id.
#[utoipa::path(
    get,
    path = "/movies/{movie_id}",
    params(("movie_id" = i64, Path, minimum = 1, description = "MovieLens movie id")),
    responses(
        (status = 200, description = "The movie", body = MovieView),
        (status = 401, description = "Missing or wrong secret", body = crate::http::ErrorBody),
        (status = 404, description = "Unknown id", body = crate::http::ErrorBody),
        (status = 422, description = "Not a positive integer", body = crate::http::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_movie(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let id = match path.parse::<i64>() {
        Ok(id) if id > 0 => id,
        _ => {
            return Err(ApiError::invalid(
                "movie_id",
                "movie_id must be a positive integer",
            ));
        }
    };
    match state.catalogue.run(move |c| c.movie(id)).await? {
        Some(m) => Ok(HttpResponse::Ok().json(MovieView::from(m))),
        None => Err(ApiError::NotFound(format!("no movie with id {id}"))),
    }
}

//! `POST /recommend` (validate, enqueue, optionally wait) and `GET /recommend/{job_id}`.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::auth::authorize;
use crate::http::body::read_body;
use crate::http::json_body::{BadValue, BodyError, parse_object};
use crate::http::{ApiError, AppState, Limits, MAX_BODY_BYTES, MAX_WAIT_MS};
use crate::model::Precision;
use crate::queue::{JobId, JobState, JobStatus, Route};
use crate::recommend::{ModelInfo, RecommendRequest};
use crate::registry::specs;

/// The body of `POST /recommend`: parsed once into this struct, checked against the server's
/// [`Limits`], and documented from it. The bounds written here are the defaults;
/// `/openapi.json` states the ones the server was started with (see [`crate::http::ApiDoc`]).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendBody {
    /// Movie ids watched, oldest first (positive integers; at most `RECSYS_MAX_SEQUENCE`).
    #[schema(max_items = 200, minimum = 1)]
    #[serde(deserialize_with = "crate::http::whole_number::i64_list")]
    pub sequence: Vec<i64>,
    /// Movie ids never to recommend (positive integers; at most 1000, or `RECSYS_MAX_SEQUENCE`
    /// when that is larger).
    #[serde(
        default,
        deserialize_with = "crate::http::whole_number::optional_i64_list"
    )]
    #[schema(max_items = 1000, minimum = 1)]
    pub avoided: Option<Vec<i64>>,
    /// How many movies to return (1 to `RECSYS_MAX_K`).
    #[schema(minimum = 1, maximum = 100)]
    #[serde(deserialize_with = "crate::http::whole_number::u64_field")]
    pub k: u64,
    /// The model to answer, by name (`GET /models`); without it the weighted split picks one of
    /// the live models.
    #[schema(min_length = 1, max_length = 200, pattern = "^[A-Za-z0-9._-]+$")]
    #[serde(default)]
    pub model: Option<String>,
    /// Who asks (any stable id): the split gives one user the same model every time.
    #[schema(min_length = 1, max_length = 256)]
    #[serde(default)]
    pub user_key: Option<String>,
}

/// Longest `user_key`, in characters.
const MAX_USER_KEY_CHARS: usize = 256;

impl RecommendBody {
    /// Checks what the types cannot say (the limits, positive ids, names); names the field at
    /// fault.
    pub fn validate(self, limits: &Limits) -> Result<(RecommendRequest, Route), ApiError> {
        check_ids("sequence", &self.sequence, limits.max_sequence)?;
        let avoided = self.avoided.unwrap_or_default();
        check_ids("avoided", &avoided, limits.max_avoided())?;
        if self.k == 0 || self.k > limits.max_k as u64 {
            return Err(k_error(limits));
        }
        if let Some(name) = &self.model {
            specs::check_name(name).map_err(|e| ApiError::invalid("model", e.to_string()))?;
        }
        if let Some(key) = &self.user_key
            && (key.is_empty() || key.chars().count() > MAX_USER_KEY_CHARS)
        {
            return Err(ApiError::invalid(
                "user_key",
                format!("user_key must be 1 to {MAX_USER_KEY_CHARS} characters"),
            ));
        }
        let request = RecommendRequest {
            sequence: self.sequence,
            avoided,
            k: self.k as usize,
        };
        let route = Route {
            model: self.model,
            user_key: self.user_key,
        };
        Ok((request, route))
    }
}

/// A job was accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub job_id: String,
    /// Always `queued`.
    pub status: &'static str,
    /// Where to poll: `/recommend/{job_id}`.
    pub status_url: String,
}

/// A recommended movie with its catalogue details.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemView {
    pub movie_id: i64,
    /// `null` only if the catalogue lacks a movie the model knows.
    pub title: Option<String>,
    pub year: Option<i32>,
    pub genres: Vec<String>,
    pub imdb_id: Option<String>,
    pub tmdb_id: Option<i64>,
    pub score: f32,
}

/// The model that answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    /// Its name, as `GET /models` lists it and requests name it.
    pub name: String,
    pub architecture: String,
    pub dataset: String,
    pub checkpoint: String,
    pub items: usize,
    pub max_len: usize,
    /// What the network's dense layers computed in: `f32` or `bf16`.
    #[schema(value_type = String)]
    pub precision: Precision,
}

impl From<ModelInfo> for ModelView {
    fn from(m: ModelInfo) -> Self {
        Self {
            name: m.name().to_owned(),
            architecture: m.architecture,
            dataset: m.dataset,
            checkpoint: m.checkpoint,
            items: m.items,
            max_len: m.max_len,
            precision: m.precision,
        }
    }
}

/// A finished job's recommendation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultView {
    pub items: Vec<ItemView>,
    /// Sequence ids the model does not know; they were skipped.
    pub unknown_ids: Vec<i64>,
    /// True when popularity answered because no sequence movie was known.
    pub fallback: bool,
    pub model: ModelView,
    /// `request` when the request named the model, `split` when the weighted split chose it.
    pub chosen_by: &'static str,
}

/// Where a job stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub job_id: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Queues a recommendation job.
#[utoipa::path(
    post,
    path = "/recommend",
    request_body = RecommendBody,
    params(("wait_ms" = Option<u64>, Query, minimum = 0, maximum = 10000, description = "Wait up to this many ms for the result")),
    responses(
        (status = 202, description = "Queued", body = Accepted),
        (status = 200, description = "Finished within wait_ms", body = JobView),
        (status = 400, description = "Malformed JSON", body = crate::http::ErrorBody),
        (status = 401, description = "Missing or wrong secret", body = crate::http::ErrorBody),
        (status = 404, description = "The model named is not live", body = crate::http::ErrorBody),
        (status = 408, description = "The body did not arrive within the request timeout; the connection is closed", body = crate::http::ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = crate::http::ErrorBody),
        (status = 422, description = "A field is invalid", body = crate::http::ErrorBody),
        (status = 429, description = "Queue full, or this server busy with its maximum of requests; see Retry-After", body = crate::http::ErrorBody),
        (status = 503, description = "Queue unavailable", body = crate::http::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_recommend(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let wait_ms = parse_wait_ms(req.query_string())?;
    let body = read_body(&req, payload, MAX_BODY_BYTES, state.request_timeout).await?;
    let (request, route) = parse_request(&body, &state.limits)?;
    let _admitted = state.admission.admit()?;
    if let Some(name) = &route.model {
        check_live(&state, name).await?;
    }
    let id = state.queue.enqueue(request, route).await?;
    if let Some(ms) = wait_ms.filter(|&ms| ms > 0)
        && let Some(status) = state.queue.wait(&id, Duration::from_millis(ms)).await?
        && status.state.is_terminal()
    {
        let view = job_view(&state, &id, status).await?;
        return Ok(HttpResponse::Ok().json(view));
    }
    let status_url = format!("/recommend/{id}");
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, status_url.clone()))
        .json(Accepted {
            job_id: id.to_string(),
            status: JobState::Queued.as_str(),
            status_url,
        }))
}

/// A job's status, with its result once done.
#[utoipa::path(
    get,
    path = "/recommend/{job_id}",
    params(("job_id" = String, Path, description = "Id returned by POST /recommend")),
    responses(
        (status = 200, description = "The job's status", body = JobView),
        (status = 401, description = "Missing or wrong secret", body = crate::http::ErrorBody),
        (status = 404, description = "Unknown or expired job", body = crate::http::ErrorBody),
        (status = 503, description = "Queue unavailable", body = crate::http::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let unknown = || ApiError::NotFound("no such job (or its result has expired)".into());
    let id = JobId::parse(&path).ok_or_else(unknown)?;
    let status = state.queue.status(&id).await?.ok_or_else(unknown)?;
    let view = job_view(&state, &id, status).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Refuses a model that no worker serves. With no worker known (all restarting) the job is
/// queued, and a worker refuses it if it still does not serve it.
async fn check_live(state: &AppState, name: &str) -> Result<(), ApiError> {
    let live = state.control.live().await?;
    if live.models.is_empty() || live.models.iter().any(|m| m.name == name) {
        return Ok(());
    }
    let names: Vec<&str> = live.models.iter().map(|m| m.name.as_str()).collect();
    Err(ApiError::UnknownName {
        field: "model",
        message: format!(
            "model `{name}` is not live; live models: {} (GET /models lists them)",
            names.join(", ")
        ),
    })
}

fn parse_wait_ms(query: &str) -> Result<Option<u64>, ApiError> {
    let params = web::Query::<HashMap<String, String>>::from_query(query)
        .map_err(|e| ApiError::invalid("wait_ms", format!("bad query string: {e}")))?;
    match params.get("wait_ms") {
        None => Ok(None),
        Some(raw) => match raw.parse::<u64>() {
            Ok(ms) if ms <= MAX_WAIT_MS => Ok(Some(ms)),
            _ => Err(ApiError::invalid(
                "wait_ms",
                format!("wait_ms must be a whole number from 0 to {MAX_WAIT_MS}"),
            )),
        },
    }
}

/// Parses and validates a `POST /recommend` body: what to recommend, and which model answers.
pub fn parse_request(body: &[u8], limits: &Limits) -> Result<(RecommendRequest, Route), ApiError> {
    parse_object::<RecommendBody>(body)
        .map_err(|e| body_error(e, limits))?
        .validate(limits)
}

/// The answer to a body that does not fit [`RecommendBody`].
fn body_error(e: BodyError, limits: &Limits) -> ApiError {
    let BadValue { field, at, problem } = match e.answer("sequence, avoided, k, model, user_key") {
        Ok(answer) => return answer,
        Err(bad) => bad,
    };
    match field.as_str() {
        "k" => k_error(limits),
        "sequence" | "avoided" if at != field => ApiError::invalid(
            field,
            format!("{at} must be a positive integer movie id ({problem})"),
        ),
        "sequence" | "avoided" => {
            let message = format!("{field} must be an array of movie ids ({problem})");
            ApiError::invalid(field, message)
        }
        _ => ApiError::invalid(field, format!("{at}: {problem}")),
    }
}

fn k_error(limits: &Limits) -> ApiError {
    ApiError::invalid(
        "k",
        format!("k must be a whole number from 1 to {}", limits.max_k),
    )
}

/// At most `max_len` ids, each positive.
fn check_ids(field: &str, ids: &[i64], max_len: usize) -> Result<(), ApiError> {
    if ids.len() > max_len {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} holds {} ids; at most {max_len} are allowed",
                ids.len()
            ),
        ));
    }
    match ids.iter().position(|&id| id <= 0) {
        Some(i) => Err(ApiError::invalid(
            field,
            format!(
                "{field}[{i}] must be a positive integer movie id, got {}",
                ids[i]
            ),
        )),
        None => Ok(()),
    }
}

/// Turns a job status into its API view, with catalogue details on each item.
async fn job_view(state: &AppState, id: &JobId, status: JobStatus) -> Result<JobView, ApiError> {
    let result = match status.result {
        None => None,
        Some(out) => {
            let ids: Vec<i64> = out
                .recommendation
                .items
                .iter()
                .map(|m| m.movie_id)
                .collect();
            let mut movies = state.catalogue.run(move |c| c.movies_by_ids(&ids)).await?;
            let items = out
                .recommendation
                .items
                .into_iter()
                .map(|scored| {
                    let m = movies.remove(&scored.movie_id);
                    ItemView {
                        movie_id: scored.movie_id,
                        year: m.as_ref().and_then(|m| m.year),
                        imdb_id: m.as_ref().and_then(|m| m.imdb_id.clone()),
                        tmdb_id: m.as_ref().and_then(|m| m.tmdb_id),
                        genres: m.as_ref().map(|m| m.genres.clone()).unwrap_or_default(),
                        title: m.map(|m| m.title),
                        score: scored.score,
                    }
                })
                .collect();
            Some(ResultView {
                items,
                unknown_ids: out.recommendation.unknown_ids,
                fallback: out.recommendation.fallback,
                model: out.model.into(),
                chosen_by: out.chosen_by.as_str(),
            })
        }
    };
    Ok(JobView {
        job_id: id.to_string(),
        status: status.state.as_str(),
        result,
        error: status.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_k: 100,
        max_sequence: 5,
        max_search_limit: 50,
    };

    /// The status and field of the answer to `body` (200 when it is accepted).
    fn field_of(body: &str) -> (u16, Option<String>) {
        use actix_web::ResponseError;
        let Err(e) = parse_request(body.as_bytes(), &LIMITS) else {
            return (200, None);
        };
        let field = match &e {
            ApiError::Validation { field, .. } => field.clone(),
            _ => None,
        };
        (e.status_code().as_u16(), field)
    }

    #[test]
    fn accepts_a_valid_body() {
        let (r, route) = parse_request(br#"{"sequence":[1,2],"k":3}"#, &LIMITS).unwrap();
        assert_eq!(r.sequence, vec![1, 2]);
        assert!(r.avoided.is_empty());
        assert_eq!(r.k, 3);
        assert_eq!(route, Route::default());
        let (_, route) = parse_request(
            br#"{"sequence":[1],"k":3,"model":"sasrec-a.1","user_key":"u-42"}"#,
            &LIMITS,
        )
        .unwrap();
        assert_eq!(route.model.as_deref(), Some("sasrec-a.1"));
        assert_eq!(route.user_key.as_deref(), Some("u-42"));
    }

    #[test]
    fn names_a_bad_model_or_user_key() {
        assert_eq!(
            field_of(r#"{"sequence":[1],"k":3,"model":"../x"}"#),
            (422, Some("model".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1],"k":3,"model":""}"#),
            (422, Some("model".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1],"k":3,"model":7}"#),
            (422, Some("model".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1],"k":3,"user_key":""}"#),
            (422, Some("user_key".into()))
        );
        let long = format!(
            r#"{{"sequence":[1],"k":3,"user_key":"{}"}}"#,
            "u".repeat(257)
        );
        assert_eq!(field_of(&long), (422, Some("user_key".into())));
    }

    #[test]
    fn names_the_bad_field() {
        assert_eq!(field_of("{"), (400, None));
        assert_eq!(field_of(r#"{"k":3}"#), (422, Some("sequence".into())));
        assert_eq!(field_of(r#"{"sequence":[1]}"#), (422, Some("k".into())));
        assert_eq!(
            field_of(r#"{"sequence":[1],"k":0}"#),
            (422, Some("k".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1],"k":1000000}"#),
            (422, Some("k".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1],"k":2.5}"#),
            (422, Some("k".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1,-2],"k":3}"#),
            (422, Some("sequence".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":["1"],"k":3}"#),
            (422, Some("sequence".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1],"avoided":[0],"k":3}"#),
            (422, Some("avoided".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1,2,3,4,5,6],"k":3}"#),
            (422, Some("sequence".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1],"k":3,"kk":1}"#),
            (422, Some("kk".into()))
        );
        assert_eq!(field_of("[1,2]"), (422, None));
        assert_eq!(
            field_of(r#"{"sequence":[1],"k":3,"k":4}"#),
            (422, Some("k".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1],"sequence":[2],"k":3}"#),
            (422, Some("sequence".into()))
        );
        assert_eq!(
            field_of(r#"{"sequence":[1],"avoided":[1,2,3,4,5,6],"k":3}"#),
            (200, None),
            "avoided may hold up to 1000 ids even when sequences are capped lower"
        );
    }

    #[test]
    fn a_null_avoided_list_is_an_empty_one() {
        let (r, _) = parse_request(br#"{"sequence":[1],"avoided":null,"k":3}"#, &LIMITS).unwrap();
        assert!(r.avoided.is_empty());
        let many = format!(
            r#"{{"sequence":[1],"avoided":[{}],"k":3}}"#,
            vec!["7"; 1001].join(",")
        );
        assert!(parse_request(many.as_bytes(), &LIMITS).is_err());
    }

    #[test]
    fn wait_ms_is_bounded() {
        assert_eq!(parse_wait_ms("").unwrap(), None);
        assert_eq!(parse_wait_ms("wait_ms=250").unwrap(), Some(250));
        assert!(parse_wait_ms("wait_ms=10001").is_err());
        assert!(parse_wait_ms("wait_ms=abc").is_err());
    }
}

//! `GET /models`: the model registry as the API sees it: every checkpoint under the checkpoint
//! root, newest first, with which ones are live and their traffic weights, and promotions that
//! failed. `POST /models/promote`: the admin route that makes a model live.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::auth::authorize;
use crate::http::body::read_body;
use crate::http::json_body::{BadValue, BodyError, parse_object};
use crate::http::{ApiError, AppState, MAX_BODY_BYTES};
use crate::registry::control::PromoteError;
use crate::registry::specs::{MAX_NAME_CHARS, ModelSpec, SpecError};
use crate::registry::{self, ModelEntry};

/// One model of the registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistryModel {
    /// The checkpoint directory's name: how requests and `RECSYS_MODELS` name it.
    pub name: String,
    /// `bert4rec`, `sasrec`, `transition`, `ease`, `blend` or `popularity`.
    pub architecture: String,
    pub dataset: String,
    /// Seconds since the Unix epoch when it was trained (0 for popularity).
    pub created_at: u64,
    /// Validation NDCG@10 (full ranking) recorded for it.
    pub valid_ndcg10: Option<f64>,
    /// Test NDCG@10 (full ranking) recorded for it.
    pub test_ndcg10: Option<f64>,
    /// Whether a worker of this service answers with it.
    pub live: bool,
    /// Its share of the split's traffic (0 when not live, or live by name only).
    pub weight: f64,
}

/// The registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelRegistry {
    pub models: Vec<RegistryModel>,
    /// Promotions that could not be loaded (the live models kept serving).
    pub errors: Vec<String>,
}

/// Every checkpoint of the checkpoint root, newest first, with the live ones and their weights.
#[utoipa::path(
    get,
    path = "/models",
    responses(
        (status = 200, description = "The checkpoints as models", body = ModelRegistry),
        (status = 401, description = "A secret is set and none was given", body = crate::http::error::ErrorBody),
        (status = 503, description = "Redis is unavailable", body = crate::http::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let live = state.control.live().await?;
    let root = state.checkpoint_root.clone();
    let entries = web::block(move || {
        root.as_deref()
            .map(|r| registry::list(r, None))
            .unwrap_or_default()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("listing the models: {e}")))?;
    let weights: HashMap<&str, f64> = live
        .models
        .iter()
        .map(|s| (s.name.as_str(), s.weight))
        .collect();
    let total: f64 = live.models.iter().map(|s| s.weight).sum();
    let share = |w: f64| if total > 0.0 { w / total } else { 0.0 };
    let mut models: Vec<RegistryModel> = entries
        .into_iter()
        .map(|e: ModelEntry| {
            let weight = weights.get(e.name.as_str()).copied();
            RegistryModel {
                live: weight.is_some(),
                weight: weight.map_or(0.0, share),
                name: e.name,
                architecture: e.architecture,
                dataset: e.dataset.name().to_string(),
                created_at: e.created_at,
                valid_ndcg10: e.valid_ndcg10,
                test_ndcg10: e.test_ndcg10,
            }
        })
        .collect();
    // Live models outside the root (popularity, or a checkpoint given by path) are listed too.
    for spec in &live.models {
        if !models.iter().any(|m| m.name == spec.name) {
            let model = state.model.as_ref();
            models.insert(
                0,
                RegistryModel {
                    name: spec.name.clone(),
                    architecture: model.map_or_else(String::new, |m| m.architecture.clone()),
                    dataset: model.map_or_else(String::new, |m| m.dataset.clone()),
                    created_at: 0,
                    valid_ndcg10: None,
                    test_ndcg10: None,
                    live: true,
                    weight: share(spec.weight),
                },
            );
        }
    }
    Ok(HttpResponse::Ok().json(ModelRegistry {
        models,
        errors: live.errors,
    }))
}

/// The body of `POST /models/promote`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// The model's name, as `GET /models` lists it.
    #[schema(min_length = 1, max_length = 200, pattern = "^[A-Za-z0-9._-]+$")]
    pub name: String,
    /// Its share of the traffic, 0 to 1 (default 1: the only model); the others keep their
    /// proportions in the rest; 0 serves it to requests that name it only.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub weight: Option<f64>,
}

/// The set of models after a promotion.
#[derive(Debug, Serialize, ToSchema)]
pub struct Promoted {
    pub models: Vec<PromotedModel>,
}

/// One model of a promoted set.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromotedModel {
    pub name: String,
    pub weight: f64,
}

/// Makes a model live on every worker (admin): loads it first, and keeps the live models when
/// it does not load. Needs the secret: a service without one refuses it.
#[utoipa::path(
    post,
    path = "/models/promote",
    request_body = PromoteBody,
    responses(
        (status = 200, description = "Promoted: loaded here, or announced to the workers", body = Promoted),
        (status = 400, description = "Malformed JSON", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing or wrong secret", body = crate::http::error::ErrorBody),
        (status = 403, description = "The service has no secret, so no admin route", body = crate::http::error::ErrorBody),
        (status = 404, description = "No model of that name", body = crate::http::error::ErrorBody),
        (status = 409, description = "It does not load, or no model would take traffic", body = crate::http::error::ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = crate::http::error::ErrorBody),
        (status = 422, description = "A malformed name or weight", body = crate::http::error::ErrorBody),
        (status = 503, description = "Redis is unavailable", body = crate::http::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn promote(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.auth.is_none() {
        return Err(ApiError::Forbidden(
            "promotion over HTTP needs a secret (RECSYS_SECRET); without one, use `movierec \
             models promote`"
                .into(),
        ));
    }
    authorize(&req, &state)?;
    let body = read_body(&req, payload, MAX_BODY_BYTES, state.request_timeout).await?;
    let body = parse_object::<PromoteBody>(&body).map_err(body_error)?;
    let weight = body.weight.unwrap_or(1.0);
    let set = state
        .control
        .promote(body.name, weight)
        .await
        .map_err(promote_error)?;
    Ok(HttpResponse::Ok().json(Promoted {
        models: set
            .into_iter()
            .map(|ModelSpec { name, weight }| PromotedModel { name, weight })
            .collect(),
    }))
}

fn body_error(e: BodyError) -> ApiError {
    let BadValue { field, problem, .. } = match e.answer("name, weight") {
        Ok(answer) => return answer,
        Err(bad) => bad,
    };
    let message = match field.as_str() {
        "weight" => format!("weight must be a number from 0 to 1 ({problem})"),
        _ => format!("name must be a model name of 1 to {MAX_NAME_CHARS} characters ({problem})"),
    };
    ApiError::invalid(field, message)
}

fn promote_error(e: PromoteError) -> ApiError {
    match e {
        PromoteError::Spec(SpecError::BadWeight { .. }) => {
            ApiError::invalid("weight", "weight must be a number from 0 to 1")
        }
        PromoteError::Spec(e @ SpecError::NoTraffic) => ApiError::Conflict {
            field: "weight",
            message: e.to_string(),
        },
        PromoteError::Spec(e) => ApiError::invalid("name", e.to_string()),
        PromoteError::Unknown(message) => ApiError::UnknownName {
            field: "name",
            message,
        },
        PromoteError::Load(message) => ApiError::Conflict {
            field: "name",
            message,
        },
        PromoteError::Queue(e) => e.into(),
    }
}

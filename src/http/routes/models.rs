//! `GET /models`: the model registry as the API sees it: every checkpoint under the checkpoint
//! root (and the served one, wherever it lives), newest first, with which one is live.

use std::path::PathBuf;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{ApiError, AppState};
use crate::registry::{self, ModelEntry};

/// One model of the registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistryModel {
    /// The checkpoint directory's name.
    pub name: String,
    /// `bert4rec`, `sasrec`, `transition`, `ease` or `blend`.
    pub architecture: String,
    pub dataset: String,
    /// Seconds since the Unix epoch when it was trained.
    pub created_at: u64,
    /// Validation NDCG@10 (full ranking) recorded when it was trained.
    pub valid_ndcg10: Option<f64>,
    /// Test NDCG@10 (full ranking), where training recorded it.
    pub test_ndcg10: Option<f64>,
    /// Whether this service answers with it.
    pub live: bool,
    /// Its share of the traffic (1 for the one live model, 0 otherwise).
    pub weight: f64,
}

/// The registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelRegistry {
    pub models: Vec<RegistryModel>,
}

/// Every checkpoint of the checkpoint root, newest first, and the one this service serves.
#[utoipa::path(
    get,
    path = "/models",
    responses(
        (status = 200, description = "The checkpoints as models", body = ModelRegistry),
        (status = 401, description = "A secret is set and none was given", body = crate::http::error::ErrorBody),
    )
)]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let root = state.checkpoint_root.clone();
    let served: Option<PathBuf> = state.served_checkpoint.clone();
    let entries = web::block(move || {
        let mut entries = root
            .as_deref()
            .map(|r| registry::list(r, None))
            .unwrap_or_default();
        if let Some(dir) = served
            && !entries.iter().any(|e| e.path == dir)
            && let Some(entry) = registry::entry(&dir)
        {
            entries.insert(0, entry);
        }
        entries
    })
    .await
    .map_err(|e| ApiError::Internal(format!("listing the models: {e}")))?;
    let live = state.served_checkpoint.as_deref();
    let models = entries
        .into_iter()
        .map(|e: ModelEntry| {
            let is_live = live == Some(e.path.as_path());
            RegistryModel {
                name: e.name,
                architecture: e.architecture,
                dataset: e.dataset.name().to_string(),
                created_at: e.created_at,
                valid_ndcg10: e.valid_ndcg10,
                test_ndcg10: e.test_ndcg10,
                live: is_live,
                weight: if is_live { 1.0 } else { 0.0 },
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(ModelRegistry { models }))
}

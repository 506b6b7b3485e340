//! Whether the model side is ready: the API's own model when it serves in-process
//! (`serve --embedded`), else the workers' announcements in Redis. Popularity standing in for a
//! missing checkpoint answers requests but is not ready, unless the operator allowed it.

use serde::Serialize;
use utoipa::ToSchema;

use crate::model::Precision;
use crate::queue::{QueueError, WorkerPresence, WorkerRegistry};
use crate::recommend::{ModelSource, Serving};
use crate::worker::LiveModels;

/// Where the API learns what serves.
#[derive(Clone)]
pub enum ModelReadiness {
    /// This process serves (`serve --embedded`): the models it serves now (its main one
    /// answers for readiness).
    Local(LiveModels),
    /// Workers elsewhere announce themselves in Redis. With `allow_fallback`
    /// (`--allow-popularity-fallback` given to the API) a popularity fallback counts as ready.
    Workers {
        registry: Box<WorkerRegistry>,
        allow_fallback: bool,
    },
}

/// One serving process, as `/health/ready` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    /// `embedded`, or the worker's name.
    pub name: String,
    /// Whether it counts towards readiness.
    pub ready: bool,
    /// `checkpoint`, `popularity_allowed` or `popularity_fallback`.
    #[schema(value_type = String)]
    pub source: ModelSource,
    pub architecture: String,
    /// Checkpoint directory name (empty for popularity).
    pub checkpoint: String,
    /// What its network computes the dense layers in: `f32` or `bf16`.
    #[schema(value_type = String)]
    pub precision: Precision,
    /// Jobs it has finished since it started, as of its last heartbeat (`null` for the
    /// embedded model, whose requests `/metrics` counts).
    pub jobs_done: Option<u64>,
}

impl WorkerView {
    fn new(name: String, serving: &Serving, allow_fallback: bool, jobs_done: Option<u64>) -> Self {
        Self {
            jobs_done,
            name,
            ready: serving.ready() || allow_fallback,
            source: serving.source,
            architecture: serving.model.architecture.clone(),
            checkpoint: serving.model.checkpoint.clone(),
            precision: serving.model.precision,
        }
    }
}

impl ModelReadiness {
    /// The processes that serve now.
    pub async fn workers(&self) -> Result<Vec<WorkerView>, QueueError> {
        match self {
            Self::Local(live) => Ok(vec![WorkerView::new(
                "embedded".into(),
                &live.current().main_arm().serving,
                false,
                None,
            )]),
            Self::Workers {
                registry,
                allow_fallback,
            } => Ok(registry
                .live()
                .await?
                .into_iter()
                .map(
                    |WorkerPresence {
                         name,
                         serving,
                         jobs_done,
                         ..
                     }| {
                        WorkerView::new(name, &serving, *allow_fallback, Some(jobs_done))
                    },
                )
                .collect()),
        }
    }
}

/// Why the model side is not ready, if it is not: none serves, or every one serves the
/// popularity fallback.
pub fn model_problem(workers: &[WorkerView]) -> Option<&'static str> {
    if workers.is_empty() {
        Some("no worker has announced itself: start `movierec worker`")
    } else if workers.iter().any(|w| w.ready) {
        None
    } else {
        Some(
            "popularity stands in for a missing checkpoint: train one with `movierec train`, or \
             pass --allow-popularity-fallback to serve popularity on purpose",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::ModelInfo;

    fn view(source: ModelSource, allow: bool) -> WorkerView {
        let serving = Serving {
            model: ModelInfo::popularity("ml-100k", 3),
            source,
        };
        WorkerView::new("w".into(), &serving, allow, None)
    }

    #[test]
    fn ready_needs_one_worker_that_is_not_an_unasked_fallback() {
        assert!(model_problem(&[]).unwrap().contains("no worker"));
        let fallback = view(ModelSource::PopularityFallback, false);
        assert!(model_problem(&[fallback]).unwrap().contains("popularity"));
        let both = [
            view(ModelSource::PopularityFallback, false),
            view(ModelSource::PopularityAllowed, false),
        ];
        assert_eq!(model_problem(&both), None);
        assert_eq!(
            model_problem(&[view(ModelSource::PopularityFallback, true)]),
            None,
            "the API's own --allow-popularity-fallback"
        );
        assert_eq!(model_problem(&[view(ModelSource::Checkpoint, false)]), None);
    }
}

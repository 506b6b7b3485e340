//! Running one job: check its input, route it to one of the live models, score it through that
//! model's batcher, package the output.

use std::time::Duration;

use super::{LiveModels, ScorerError, WorkerMetrics};
use crate::queue::{JobOutput, RecommendJob};

/// Largest k a worker accepts whatever the API allows (a guard against hand-pushed jobs).
const WORKER_MAX_K: usize = 10_000;

/// Why a job did not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// The job can never succeed: fail it at once, no retry.
    #[error("{0}")]
    BadInput(String),
    /// It may succeed later: retry with backoff, a bounded number of times.
    #[error("{0}")]
    Transient(String),
}

/// Runs jobs against the live models; shared by the Redis and the in-process workers.
#[derive(Clone)]
pub struct JobRunner {
    live: LiveModels,
    metrics: Option<WorkerMetrics>,
}

impl JobRunner {
    /// A runner over the models `live` serves (now and after every swap).
    pub fn new(live: LiveModels, metrics: Option<WorkerMetrics>) -> Self {
        Self { live, metrics }
    }

    /// The models it serves.
    pub fn live(&self) -> &LiveModels {
        &self.live
    }

    /// Scores one job on the model its route picks. The job holds the set it started on, so a
    /// swap meanwhile does not move it.
    pub async fn run(&self, job: &RecommendJob) -> Result<JobOutput, JobError> {
        let set = self.live.current();
        let picked = check(job).and_then(|()| {
            set.pick(&job.route)
                .map_err(|e| JobError::BadInput(e.to_string()))
        });
        let (name, outcome) = match picked {
            Ok((arm, chosen_by)) => {
                let result = arm.batcher.recommend(job.request.clone()).await;
                let outcome = match result {
                    Ok(recommendation) => Ok(JobOutput {
                        recommendation,
                        model: arm.batcher.info().clone(),
                        chosen_by,
                    }),
                    Err(ScorerError::BadInput(e)) => Err(JobError::BadInput(e)),
                    Err(ScorerError::Internal(e)) => Err(JobError::Transient(e)),
                };
                (arm.name.as_str(), outcome)
            }
            Err(e) => (job.route.model.as_deref().unwrap_or(""), Err(e)),
        };
        if let Some(m) = &self.metrics {
            let label = match &outcome {
                Ok(_) => "done",
                Err(JobError::BadInput(_)) => "failed",
                Err(JobError::Transient(_)) => "retry",
            };
            // A name nobody serves is not a label: it would let callers grow the series.
            let model = if set.get(name).is_some() { name } else { "" };
            m.jobs.with_label_values(&[model, label]).inc();
            if outcome.is_ok() {
                m.job_latency
                    .with_label_values(&[model])
                    .observe(Duration::from_millis(job.age_ms()).as_secs_f64());
            }
        }
        outcome
    }
}

/// The structural checks every job must pass, whoever pushed it.
fn check(job: &RecommendJob) -> Result<(), JobError> {
    let r = &job.request;
    if r.k == 0 || r.k > WORKER_MAX_K {
        return Err(JobError::BadInput(format!(
            "k must be from 1 to {WORKER_MAX_K}, got {}",
            r.k
        )));
    }
    if let Some(bad) = r.sequence.iter().chain(&r.avoided).find(|&&id| id <= 0) {
        return Err(JobError::BadInput(format!(
            "movie ids must be positive, got {bad}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::RecommendRequest;

    #[test]
    fn structural_checks() {
        let ok = RecommendJob::new(
            RecommendRequest {
                sequence: vec![1],
                avoided: vec![2],
                k: 5,
            },
            crate::queue::Route::default(),
        );
        assert!(check(&ok).is_ok());
        let mut zero_k = ok.clone();
        zero_k.request.k = 0;
        assert!(matches!(check(&zero_k), Err(JobError::BadInput(_))));
        let mut negative = ok.clone();
        negative.request.avoided = vec![-4];
        let err = check(&negative).unwrap_err().to_string();
        assert!(err.contains("-4"), "{err}");
    }
}

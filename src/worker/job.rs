//! Running one job: check its input, score it through the batcher, package the output.

use std::time::Duration;

use super::{Batcher, ScorerError, WorkerMetrics};
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

/// Runs jobs against the model; shared by the Redis and the in-process workers.
#[derive(Clone)]
pub struct JobRunner {
    batcher: Batcher,
    metrics: Option<WorkerMetrics>,
}

impl JobRunner {
    /// A runner over a started batcher.
    pub fn new(batcher: Batcher, metrics: Option<WorkerMetrics>) -> Self {
        Self { batcher, metrics }
    }

    /// Scores one job.
    pub async fn run(&self, job: &RecommendJob) -> Result<JobOutput, JobError> {
        check(job)?;
        let result = self.batcher.recommend(job.request.clone()).await;
        let outcome = match result {
            Ok(recommendation) => Ok(JobOutput {
                recommendation,
                model: self.batcher.info().clone(),
            }),
            Err(ScorerError::BadInput(e)) => Err(JobError::BadInput(e)),
            Err(ScorerError::Internal(e)) => Err(JobError::Transient(e)),
        };
        if let Some(m) = &self.metrics {
            let label = match &outcome {
                Ok(_) => "done",
                Err(JobError::BadInput(_)) => "failed",
                Err(JobError::Transient(_)) => "retry",
            };
            m.jobs.with_label_values(&[label]).inc();
            if outcome.is_ok() {
                m.job_latency
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
        let ok = RecommendJob::new(RecommendRequest {
            sequence: vec![1],
            avoided: vec![2],
            k: 5,
        });
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

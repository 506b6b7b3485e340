//! Prometheus metrics of the worker side, labelled by the model that answered: batch sizes,
//! forward-pass time, job latency and job outcomes.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Worker metrics, registered in the registry `/metrics` exposes.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Requests per forward pass, by model.
    pub batch_size: HistogramVec,
    /// Seconds from the API accepting a job to its result being ready, by model.
    pub job_latency: HistogramVec,
    /// Seconds one forward pass took, by model.
    pub batch_seconds: HistogramVec,
    /// Finished jobs by model and outcome (`done`, `failed`, `retry`); a job that named a model
    /// nobody serves counts under the name it asked for.
    pub jobs: IntCounterVec,
}

impl WorkerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let batch_size = HistogramVec::new(
            HistogramOpts::new("movierec_batch_size", "Requests scored in one forward pass")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            &["model"],
        )?;
        let job_latency = HistogramVec::new(
            HistogramOpts::new(
                "movierec_job_latency_seconds",
                "Seconds from accepting a job to its result",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["model"],
        )?;
        let batch_seconds = HistogramVec::new(
            HistogramOpts::new("movierec_batch_seconds", "Seconds one forward pass took").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ],
            ),
            &["model"],
        )?;
        let jobs = IntCounterVec::new(
            Opts::new("movierec_jobs_total", "Finished jobs by model and outcome"),
            &["model", "outcome"],
        )?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(job_latency.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        Ok(Self {
            batch_size,
            job_latency,
            batch_seconds,
            jobs,
        })
    }
}

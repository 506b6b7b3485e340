//! Prometheus metrics of the worker side: batch sizes, job latency, job outcomes.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

/// Worker metrics, registered in the registry `/metrics` exposes.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Requests per forward pass.
    pub batch_size: Histogram,
    /// Seconds from the API accepting a job to its result being ready.
    pub job_latency: Histogram,
    /// Seconds one forward pass took.
    pub batch_seconds: Histogram,
    /// Finished jobs by outcome (`done`, `failed`, `retry`).
    pub jobs: IntCounterVec,
}

impl WorkerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("movierec_batch_size", "Requests scored in one forward pass")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        let job_latency = Histogram::with_opts(
            HistogramOpts::new(
                "movierec_job_latency_seconds",
                "Seconds from accepting a job to its result",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new("movierec_batch_seconds", "Seconds one forward pass took").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ],
            ),
        )?;
        let jobs = IntCounterVec::new(
            Opts::new("movierec_jobs_total", "Finished jobs by outcome"),
            &["outcome"],
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

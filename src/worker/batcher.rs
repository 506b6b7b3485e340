//! Dynamic batching: requests in flight are collected into batches (up to a size, waiting at most
//! a short time for stragglers) and scored on ONE model thread, so the async runtime and the
//! queue's heartbeats never wait on the model.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use prometheus::Histogram;
use tokio::sync::oneshot;

use super::{Scorer, ScorerError, WorkerMetrics};
use crate::recommend::{ModelInfo, RecommendRequest, Recommendation};

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Most requests in one forward pass (1 turns batching off).
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch.
    pub max_wait: Duration,
    /// Extra delay before each batch: a testing aid that stands in for a slow model.
    pub delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 64,
            max_wait: Duration::from_millis(1),
            delay: Duration::ZERO,
        }
    }
}

struct Pending {
    request: RecommendRequest,
    reply: oneshot::Sender<Result<Recommendation, ScorerError>>,
}

/// The handle to the model thread; cheap to clone. The thread stops when the last handle drops.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
    info: ModelInfo,
}

impl Batcher {
    /// Starts the model thread; its metrics carry the label `model="{name}"`.
    pub fn start(
        scorer: Arc<dyn Scorer>,
        config: BatchConfig,
        metrics: Option<WorkerMetrics>,
        name: &str,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Pending>();
        let info = scorer.info();
        let observe = metrics.map(|m| BatchMetrics {
            size: m.batch_size.with_label_values(&[name]),
            seconds: m.batch_seconds.with_label_values(&[name]),
        });
        std::thread::Builder::new()
            .name("movierec-model".into())
            .spawn(move || model_loop(scorer.as_ref(), &rx, config, observe.as_ref()))?;
        Ok(Self { tx, info })
    }

    /// The model behind this batcher.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Scores one request as part of whatever batch it lands in.
    pub async fn recommend(
        &self,
        request: RecommendRequest,
    ) -> Result<Recommendation, ScorerError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { request, reply })
            .map_err(|_| ScorerError::Internal("the model thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| ScorerError::Internal("the model thread dropped the request".into()))?
    }
}

/// The batch histograms of one model.
struct BatchMetrics {
    size: Histogram,
    seconds: Histogram,
}

fn model_loop(
    scorer: &dyn Scorer,
    rx: &mpsc::Receiver<Pending>,
    config: BatchConfig,
    metrics: Option<&BatchMetrics>,
) {
    let max_batch = config.max_batch.max(1);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match rx.recv_timeout(deadline - now) {
                        Ok(p) => batch.push(p),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
        }
        // Callers that went away (timeouts, shutdown) need no answer.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        if !config.delay.is_zero() {
            std::thread::sleep(config.delay);
        }
        let started = Instant::now();
        let requests: Vec<RecommendRequest> = batch.iter().map(|p| p.request.clone()).collect();
        let answers = score(scorer, &requests);
        if let Some(m) = metrics {
            m.size.observe(batch.len() as f64);
            m.seconds.observe(started.elapsed().as_secs_f64());
        }
        match answers {
            Ok(recs) => {
                for (p, rec) in batch.into_iter().zip(recs) {
                    let _ = p.reply.send(Ok(rec));
                }
            }
            // One bad request must not fail its neighbours: score them one by one.
            Err(_) if batch.len() > 1 => {
                for p in batch {
                    let one = score(scorer, std::slice::from_ref(&p.request))
                        .and_then(|mut v| v.pop().ok_or_else(|| no_answer(1, 0)));
                    let _ = p.reply.send(one);
                }
            }
            Err(e) => {
                for p in batch {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn no_answer(asked: usize, got: usize) -> ScorerError {
    ScorerError::Internal(format!("the model answered {got} of {asked} requests"))
}

/// Runs the scorer, turning a panic or a short answer into an error.
fn score(
    scorer: &dyn Scorer,
    requests: &[RecommendRequest],
) -> Result<Vec<Recommendation>, ScorerError> {
    let out = catch_unwind(AssertUnwindSafe(|| scorer.recommend_batch(requests)))
        .map_err(|_| ScorerError::Internal("the model panicked".into()))??;
    if out.len() != requests.len() {
        return Err(no_answer(requests.len(), out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::ScoredMovie;
    use std::sync::Mutex;

    /// Echoes k as a score and records batch sizes; k == 0 is bad input.
    struct Probe {
        sizes: Mutex<Vec<usize>>,
    }

    impl Scorer for Probe {
        fn info(&self) -> ModelInfo {
            ModelInfo {
                architecture: "probe".into(),
                dataset: "none".into(),
                checkpoint: String::new(),
                items: 0,
                max_len: 0,
                precision: crate::model::Precision::F32,
            }
        }
        fn recommend_batch(
            &self,
            reqs: &[RecommendRequest],
        ) -> Result<Vec<Recommendation>, ScorerError> {
            self.sizes.lock().unwrap().push(reqs.len());
            std::thread::sleep(Duration::from_millis(20));
            if reqs.iter().any(|r| r.k == 0) {
                return Err(ScorerError::BadInput("k is 0".into()));
            }
            Ok(reqs
                .iter()
                .map(|r| Recommendation {
                    items: vec![ScoredMovie {
                        movie_id: r.sequence[0],
                        score: r.k as f32,
                    }],
                    unknown_ids: vec![],
                    fallback: false,
                })
                .collect())
        }
    }

    fn req(id: i64, k: usize) -> RecommendRequest {
        RecommendRequest {
            sequence: vec![id],
            avoided: vec![],
            k,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_bad_input_is_isolated() {
        let probe = Arc::new(Probe {
            sizes: Mutex::new(vec![]),
        });
        let batcher = Batcher::start(
            probe.clone(),
            BatchConfig {
                max_batch: 8,
                max_wait: Duration::from_millis(5),
                delay: Duration::ZERO,
            },
            None,
            "probe",
        )
        .unwrap();
        let mut handles = vec![];
        for i in 0..20 {
            let b = batcher.clone();
            let k = if i == 7 { 0 } else { 3 };
            handles.push(tokio::spawn(
                async move { b.recommend(req(i + 1, k)).await },
            ));
        }
        let mut ok = 0;
        for (i, h) in handles.into_iter().enumerate() {
            match h.await.unwrap() {
                Ok(rec) => {
                    assert_eq!(rec.items[0].movie_id, i as i64 + 1);
                    ok += 1;
                }
                Err(ScorerError::BadInput(_)) => assert_eq!(i, 7),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 19);
        let sizes = probe.sizes.lock().unwrap().clone();
        assert!(sizes.iter().all(|&s| s <= 8), "{sizes:?}");
        // 20 requests arriving together need far fewer than 20 forward passes (plus the one-by-one
        // rescoring of the batch that held the bad request).
        assert!(sizes.iter().filter(|&&s| s > 1).count() >= 2, "{sizes:?}");
    }
}

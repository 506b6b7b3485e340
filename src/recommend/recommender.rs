//! [`Recommender`]: a checkpoint in; batched top-K MovieLens ids with exclusions and a
//! popularity fallback out. The worker and the API call exactly this.

use std::collections::BinaryHeap;
use std::path::Path;

use rayon::prelude::*;

use super::item_scores::{ItemScores, NetworkScores, ScoreError};
use super::{ModelInfo, RecommendRequest, Recommendation, ScoredMovie};
use crate::baseline::Popularity;
use crate::baseline::stored::{BaselineError, StoredBaseline};
use crate::model::checkpoint::{self, CheckpointConfig, CheckpointKind};
use crate::model::{ItemVocab, ModelError, Precision, SeqModel};

/// Why a recommendation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    /// The checkpoint could not be loaded.
    #[error("cannot load the model: {0}")]
    Model(#[from] ModelError),
    /// The checkpoint of a non-neural model could not be loaded (boxed: it is large).
    #[error("cannot load the model: {0}")]
    Baseline(#[from] Box<BaselineError>),
    /// The forward pass failed.
    #[error("inference failed: {0}")]
    Inference(#[from] candle_core::Error),
    /// Scoring failed.
    #[error("{0}")]
    Score(#[from] ScoreError),
}

/// A loaded checkpoint, ready to answer. `Send + Sync`: share it behind an `Arc`.
pub struct Recommender {
    scores: Box<dyn ItemScores>,
    vocab: ItemVocab,
    /// The training counts of the items: the answer to a history the model cannot read.
    popularity: Popularity<u32>,
    info: ModelInfo,
}

/// A request mapped onto item indices.
struct Prepared {
    history: Vec<u32>,
    /// Item indices never to return (the history and the avoided movies); may repeat.
    excluded: Vec<u32>,
    unknown: Vec<i64>,
}

/// What a checkpoint answers with, from its `config.json` alone (no weights needed).
pub fn model_info(cfg: &CheckpointConfig, dir: &Path) -> ModelInfo {
    ModelInfo {
        architecture: cfg.model.architecture.name().to_string(),
        dataset: cfg.dataset.name().to_string(),
        checkpoint: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        items: cfg.model.items,
        max_len: cfg.model.max_len,
        precision: Precision::F32,
    }
}

impl Recommender {
    /// Loads the checkpoint directory `dir` (`model.safetensors` + `config.json`) of any model
    /// type, a network's dense layers to run in `precision`; nothing else is read.
    pub fn load(dir: &Path, precision: Precision) -> Result<Self, RecommendError> {
        match checkpoint::kind(dir)? {
            CheckpointKind::Network => {
                let (cfg, mut model) = checkpoint::load(dir)?;
                model.set_precision(precision)?;
                Self::from_parts(cfg, model, dir)
            }
            CheckpointKind::Baseline => {
                let stored = StoredBaseline::load(dir).map_err(Box::new)?;
                let info = stored.info(dir);
                let (cfg, scores) = stored.into_parts();
                Ok(Self::new(scores, cfg.vocab, &cfg.popularity, info))
            }
        }
    }

    /// A recommender over an already loaded network.
    pub fn from_parts(
        cfg: CheckpointConfig,
        model: SeqModel,
        dir: &Path,
    ) -> Result<Self, RecommendError> {
        let info = ModelInfo {
            precision: model.precision(),
            ..model_info(&cfg, dir)
        };
        let scores = Box::new(NetworkScores::new(model)?);
        Ok(Self::new(scores, cfg.vocab, &cfg.popularity, info))
    }

    /// A recommender over any scoring model; `popularity` (one count per item) answers a
    /// history the model cannot read.
    pub fn new(
        scores: Box<dyn ItemScores>,
        vocab: ItemVocab,
        popularity: &[u32],
        info: ModelInfo,
    ) -> Self {
        Self {
            scores,
            popularity: Popularity::new(
                (0u32..)
                    .zip(popularity)
                    .map(|(i, &count)| (i, u64::from(count))),
            ),
            vocab,
            info,
        }
    }

    /// What answers: architecture, dataset, checkpoint, sizes.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Recommends for one request.
    pub fn recommend(&self, request: &RecommendRequest) -> Result<Recommendation, RecommendError> {
        let mut out = self.recommend_batch(std::slice::from_ref(request))?;
        Ok(out.pop().unwrap_or(Recommendation {
            items: Vec::new(),
            unknown_ids: Vec::new(),
            fallback: true,
        }))
    }

    /// Recommends for many requests with one forward pass, padded to the longest member.
    /// Unknown ids are skipped and reported; a history longer than `max_len` keeps its most
    /// recent items; an empty or all-unknown history gets the most popular movies with
    /// `fallback = true`. Inputs and avoided movies are never returned.
    pub fn recommend_batch(
        &self,
        requests: &[RecommendRequest],
    ) -> Result<Vec<Recommendation>, RecommendError> {
        let prepared: Vec<Prepared> = requests.iter().map(|r| self.prepare(r)).collect();
        let histories: Vec<&[u32]> = prepared
            .iter()
            .filter(|p| !p.history.is_empty())
            .map(|p| p.history.as_slice())
            .collect();
        let mut rows = self.scores.score_rows(&histories)?.into_iter();
        // Each scored request takes the next row; the top-K selections run in parallel.
        let work: Vec<(usize, Prepared, Option<Vec<f32>>)> = requests
            .iter()
            .zip(prepared)
            .map(|(req, p)| {
                let row = (!p.history.is_empty()).then(|| rows.next().unwrap_or_default());
                (req.k, p, row)
            })
            .collect();
        Ok(work
            .into_par_iter()
            .map(|(k, p, row)| Recommendation {
                items: match &row {
                    Some(scores) => self.top_k(scores, k, &p.excluded),
                    None => self.most_popular(k, &p.excluded),
                },
                unknown_ids: p.unknown,
                fallback: row.is_none(),
            })
            .collect())
    }

    fn prepare(&self, req: &RecommendRequest) -> Prepared {
        let mut history = Vec::with_capacity(req.sequence.len());
        let mut unknown = Vec::new();
        for &id in &req.sequence {
            match self.vocab.index_of(id) {
                Some(ix) => history.push(ix),
                None => {
                    if !unknown.contains(&id) {
                        unknown.push(id);
                    }
                }
            }
        }
        let excluded = history
            .iter()
            .copied()
            .chain(req.avoided.iter().filter_map(|&id| self.vocab.index_of(id)))
            .collect();
        Prepared {
            history,
            excluded,
            unknown,
        }
    }

    /// The fallback: the `k` most popular movies outside `excluded`, scored by their count.
    fn most_popular(&self, k: usize, excluded: &[u32]) -> Vec<ScoredMovie> {
        self.popularity
            .top_k(k, |i| !excluded.contains(&i))
            .into_iter()
            .filter_map(|(i, count)| {
                self.vocab.movie_id(i).map(|movie_id| ScoredMovie {
                    movie_id,
                    score: count as f32,
                })
            })
            .collect()
    }

    /// The `k` best-scored items outside `excluded`, best first (ties: the lower index). One
    /// pass with a heap of `k`: at 62,423 items, collecting every candidate and partitioning
    /// them cost more than the forward pass of a short history.
    fn top_k(&self, scores: &[f32], k: usize, excluded: &[u32]) -> Vec<ScoredMovie> {
        // A flag per item, instead of a hash-set lookup per score.
        let mut allowed = vec![true; scores.len()];
        for &i in excluded {
            if let Some(a) = allowed.get_mut(i as usize) {
                *a = false;
            }
        }
        best_k(scores, &allowed, k)
            .into_iter()
            .filter_map(|r| {
                self.vocab.movie_id(r.index).map(|movie_id| ScoredMovie {
                    movie_id,
                    score: r.score,
                })
            })
            .collect()
    }
}

/// The `k` best of the `allowed` scores, best first.
fn best_k(scores: &[f32], allowed: &[bool], k: usize) -> Vec<Ranked> {
    let mut best: BinaryHeap<Ranked> = BinaryHeap::with_capacity(k + 1);
    if k == 0 {
        return Vec::new();
    }
    let chunks = scores.chunks(SKIP_CHUNK).zip(allowed.chunks(SKIP_CHUNK));
    for (c, (scores, allowed)) in chunks.enumerate() {
        // Once k are kept, most chunks hold nothing above the worst of them: one vectorized
        // comparison passes over the chunk. `x < floor` implies the total order's `<`; ties,
        // ±0 and NaN go on to the exact comparison below.
        if best.len() == k
            && let Some(worst) = best.peek()
            && scores.iter().fold(true, |all, &x| all & (x < worst.score))
        {
            continue;
        }
        for (j, (&score, _)) in scores
            .iter()
            .zip(allowed)
            .enumerate()
            .filter(|(_, (_, a))| **a)
        {
            let candidate = Ranked {
                index: (c * SKIP_CHUNK + j) as u32,
                score,
            };
            if best.len() < k {
                best.push(candidate);
            } else if best.peek().is_some_and(|worst| candidate < *worst) {
                best.pop();
                best.push(candidate);
            }
        }
    }
    best.into_sorted_vec()
}

/// Scores [`best_k`] passes over at once when none of them can enter the best k.
const SKIP_CHUNK: usize = 16;

/// An item in ranking order: `a < b` when `a` ranks before `b` (higher score, then lower
/// index), so a max-heap of the best `k` keeps the worst of them on top.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    index: u32,
    score: f32,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ranked {}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn assert_send_sync<T: Send + Sync>() {}

    /// Against a full sort: scores with many ties (a few distinct values), a third excluded,
    /// `k` from none to more than are allowed.
    #[test]
    fn best_k_is_the_head_of_a_full_sort() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for n in [0usize, 1, 7, 100, 5000] {
            let scores: Vec<f32> = (0..n)
                .map(|_| rng.random_range(0..20) as f32 / 4.0)
                .collect();
            let allowed: Vec<bool> = (0..n).map(|_| rng.random_range(0..3) != 0).collect();
            let mut sorted: Vec<(u32, f32)> = (0..n)
                .filter(|&i| allowed[i])
                .map(|i| (i as u32, scores[i]))
                .collect();
            sorted.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
            for k in [0, 1, 10, n / 2, n + 3] {
                let got: Vec<(u32, f32)> = super::best_k(&scores, &allowed, k)
                    .into_iter()
                    .map(|r| (r.index, r.score))
                    .collect();
                assert_eq!(got, sorted[..k.min(sorted.len())], "n {n}, k {k}");
            }
        }
    }

    #[test]
    fn recommender_is_send_and_sync() {
        assert_send_sync::<super::Recommender>();
    }
}

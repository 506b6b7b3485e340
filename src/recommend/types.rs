//! Plain data types of a recommendation: what goes in, what comes out.

use serde::{Deserialize, Serialize};

use crate::model::Precision;

/// One request: a history (MovieLens ids, oldest first), movies never to return, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecommendRequest {
    pub sequence: Vec<i64>,
    #[serde(default)]
    pub avoided: Vec<i64>,
    pub k: usize,
}

/// A recommended movie and its model score (higher is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredMovie {
    pub movie_id: i64,
    pub score: f32,
}

/// The answer to one [`RecommendRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Best first; never an input or avoided movie.
    pub items: Vec<ScoredMovie>,
    /// Input ids the model does not know; they were skipped.
    pub unknown_ids: Vec<i64>,
    /// True when the sequence was empty or all unknown, and popularity answered instead.
    pub fallback: bool,
}

/// What answered: enough for a caller to tell models and checkpoints apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Architecture name, e.g. `bert4rec`.
    pub architecture: String,
    /// MovieLens release it was trained on.
    pub dataset: String,
    /// Checkpoint directory name.
    pub checkpoint: String,
    /// Number of movies the model can recommend.
    pub items: usize,
    /// Longest history the model reads; longer ones keep their most recent items.
    pub max_len: usize,
    /// What the network's dense layers compute in: `f32`, or `bf16` where the CPU has
    /// AVX-512 BF16 and `RECSYS_PRECISION` allows it; `f32` for the other models (and for an
    /// older worker's answer, which does not say).
    #[serde(default)]
    pub precision: Precision,
}

impl ModelInfo {
    /// How requests and `GET /models` name it: its checkpoint directory's name, or the
    /// architecture when no checkpoint is behind it (popularity).
    pub fn name(&self) -> &str {
        if self.checkpoint.is_empty() {
            &self.architecture
        } else {
            &self.checkpoint
        }
    }

    /// The popularity model of `dataset` over `items` movies (no checkpoint behind it).
    pub fn popularity(dataset: &str, items: usize) -> Self {
        Self {
            architecture: "popularity".into(),
            dataset: dataset.into(),
            checkpoint: String::new(),
            items,
            max_len: 0,
            precision: Precision::F32,
        }
    }
}

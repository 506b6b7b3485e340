//! [`ItemScores`]: what every servable model has in common. Given histories of item indices,
//! it scores every item; the [`Recommender`](super::Recommender) around it maps movie ids,
//! excludes, falls back and picks the top K, so each model type is written once.

use candle_core::Tensor;

use crate::baseline::{Ease, Transition};
use crate::model::SeqModel;

/// Why scoring failed.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The forward pass of a network failed.
    #[error("inference failed: {0}")]
    Inference(#[from] candle_core::Error),
}

/// A model that scores every item for a batch of histories.
pub trait ItemScores: Send + Sync {
    /// Number of items each row holds.
    fn items(&self) -> usize;

    /// One row of `items()` scores per history, in order. Histories are non-empty item indices,
    /// oldest first; higher scores rank first.
    fn score_rows(&self, histories: &[&[u32]]) -> Result<Vec<Vec<f32>>, ScoreError>;
}

/// A BERT4Rec or SASRec network with its output matrix, transposed once at load.
pub struct NetworkScores {
    model: SeqModel,
    output: Tensor,
}

impl NetworkScores {
    /// Wraps a loaded network.
    pub fn new(model: SeqModel) -> candle_core::Result<Self> {
        Ok(Self {
            output: model.output_matrix()?,
            model,
        })
    }
}

impl ItemScores for NetworkScores {
    fn items(&self) -> usize {
        self.model.config().items
    }

    fn score_rows(&self, histories: &[&[u32]]) -> Result<Vec<Vec<f32>>, ScoreError> {
        if histories.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .model
            .score_histories_against(histories, &self.output)?
            .to_vec2::<f32>()?)
    }
}

impl ItemScores for Transition {
    fn items(&self) -> usize {
        Transition::items(self)
    }

    fn score_rows(&self, histories: &[&[u32]]) -> Result<Vec<Vec<f32>>, ScoreError> {
        Ok(histories
            .iter()
            .map(|h| {
                let mut row = vec![0f32; Transition::items(self)];
                self.score_into(h, &mut row);
                row
            })
            .collect())
    }
}

impl ItemScores for Ease {
    fn items(&self) -> usize {
        Ease::items(self)
    }

    fn score_rows(&self, histories: &[&[u32]]) -> Result<Vec<Vec<f32>>, ScoreError> {
        let mut as_usize = Vec::new();
        Ok(histories
            .iter()
            .map(|h| {
                as_usize.clear();
                as_usize.extend(h.iter().map(|&i| i as usize));
                let mut row = vec![0f32; Ease::items(self)];
                self.score_into(&as_usize, &mut row);
                row
            })
            .collect())
    }
}

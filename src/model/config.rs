//! Hyperparameters of the network, stored in every checkpoint.

use serde::{Deserialize, Serialize};

/// Which model: the bidirectional cloze model or the causal next-item model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
pub enum Architecture {
    /// BERT4Rec: bidirectional attention, masked-item (cloze) objective, scores an appended [MASK].
    #[default]
    #[serde(rename = "bert4rec")]
    #[value(name = "bert4rec")]
    Bert4Rec,
    /// SASRec: causal attention, next-item objective at every position, scores the last item.
    #[serde(rename = "sasrec")]
    #[value(name = "sasrec")]
    SasRec,
}

impl Architecture {
    /// The name used in `config.json`, file names and API answers.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bert4Rec => "bert4rec",
            Self::SasRec => "sasrec",
        }
    }

    /// Whether attention is causal (each position sees only itself and the past).
    pub fn causal(self) -> bool {
        matches!(self, Self::SasRec)
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The shape of the network. Item indices are `0..items`; [`pad`](Self::pad) and
/// [`mask`](Self::mask) come after them, so neither can ever be a movie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    /// Number of movies (output classes).
    pub items: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    /// Longest input, [MASK] included.
    pub max_len: usize,
    /// Dropout on embeddings, residual branches and attention probabilities.
    pub dropout: f32,
}

impl ModelConfig {
    /// The padding index (`items`).
    pub fn pad(&self) -> u32 {
        self.items as u32
    }

    /// The [MASK] index (`items + 1`).
    pub fn mask(&self) -> u32 {
        self.items as u32 + 1
    }

    /// Rows of the embedding table: the movies, padding and [MASK].
    pub fn vocab_size(&self) -> usize {
        self.items + 2
    }

    /// Checks the numbers fit together.
    pub fn validate(&self) -> Result<(), super::ModelError> {
        let bad = |m: String| Err(super::ModelError::Invalid(m));
        if self.items == 0 {
            return bad("the model needs at least one item".into());
        }
        if self.heads == 0 || self.hidden == 0 || !self.hidden.is_multiple_of(self.heads) {
            return bad(format!(
                "hidden ({}) must be a positive multiple of heads ({})",
                self.hidden, self.heads
            ));
        }
        if self.max_len < 2 {
            return bad(format!("max_len must be at least 2, got {}", self.max_len));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }
}

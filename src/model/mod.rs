//! The sequential recommender in candle: BERT4Rec (Sun et al., CIKM 2019) and SASRec with
//! cross-entropy (Kang & McAuley 2018; Klenitskiy & Vasilev 2023), sharing blocks, vocabulary
//! and checkpoint format. The two differ only in the attention mask, the objective (see
//! [`crate::train`]) and the scoring position.

pub mod checkpoint;
mod config;
mod dropout;
mod layers;
mod net;
mod ops;
mod precision;
mod vocab;

pub use config::{Architecture, ModelConfig};
pub use dropout::DropoutRng;
pub use net::{ITEM_EMBEDDINGS, SeqModel, pad_left, reinitialise, standard_normal};
pub use ops::loss;
pub use precision::{Precision, PrecisionChoice, bf16_supported};
pub use vocab::ItemVocab;

use std::path::PathBuf;

/// Everything that can go wrong while building, running, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A checkpoint file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A checkpoint's `config.json` could not be parsed or written.
    #[error("{path}: invalid checkpoint config: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The configuration or checkpoint is inconsistent.
    #[error("invalid model: {0}")]
    Invalid(String),
    /// bf16 was asked for on a CPU without AVX-512 BF16.
    #[error(
        "bf16 inference needs a CPU with AVX-512 BF16 and this one has none; \
         use --precision auto or f32 (RECSYS_PRECISION)"
    )]
    Bf16Unsupported,
}

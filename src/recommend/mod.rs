//! Recommendation requests and answers: the contract between the model, the worker and the API.
//!
//! A [`Recommender`] turns [`RecommendRequest`]s into [`Recommendation`]s in one batched
//! forward pass; [`Serving`] says what a process serves and whether that makes it ready.

mod item_scores;
mod recommender;
mod serving;
mod types;

pub use item_scores::{ItemScores, NetworkScores, ScoreError};
pub use recommender::{RecommendError, Recommender, model_info};
pub use serving::{ModelSource, Serving};
pub use types::{ModelInfo, RecommendRequest, Recommendation, ScoredMovie};

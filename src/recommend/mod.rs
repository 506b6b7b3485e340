//! Recommendation requests and answers: the contract between the model, the worker and the API.
//!
//! A [`Recommender`] turns [`RecommendRequest`]s into
//! [`Recommendation`]s in one batched forward pass.

mod recommender;
mod types;

pub use recommender::{RecommendError, Recommender, model_info};

pub use types::{ModelInfo, RecommendRequest, Recommendation, ScoredMovie};

//! Recommendation requests and answers: the contract between the model, the worker and the API.
//!
//! A [`Recommender`](self) (added by the model work) turns [`RecommendRequest`]s into
//! [`Recommendation`]s in one batched forward pass.

mod types;

pub use types::{ModelInfo, RecommendRequest, Recommendation, ScoredMovie};

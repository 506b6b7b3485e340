//! Non-neural baselines that the evaluation reports beside the models.

pub mod ease;

pub use ease::{Ease, EaseError};

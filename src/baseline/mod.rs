//! Non-neural models: popularity (served when there is no checkpoint, and a checkpoint's answer
//! to an unknown history) and EASE, which the evaluation reports beside the models.

pub mod ease;
mod popularity;

pub use ease::{Ease, EaseError};
pub use popularity::Popularity;

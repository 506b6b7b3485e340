//! Non-neural models: popularity (served when there is no checkpoint, and a checkpoint's answer
//! to an unknown history), EASE and the transition model; the last two are trained, stored and
//! served like the networks ([`stored`]).

pub mod blend;
pub mod ease;
mod popularity;
pub mod stored;
pub mod transition;

pub use ease::{Ease, EaseError};
pub use popularity::Popularity;
pub use transition::{Transition, TransitionError, TransitionParams};

//! What a service serves, and whether that is what its operator asked for. The setup decides
//! it, the worker logs it, and a readiness probe reads it: popularity standing in for a missing
//! checkpoint answers requests, but is not a ready service.

use serde::{Deserialize, Serialize};

use super::ModelInfo;

/// Where the served model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// A trained checkpoint: the one given, or the newest of the release.
    Checkpoint,
    /// Popularity, with no checkpoint, as the operator allowed (`--allow-popularity-fallback`).
    PopularityAllowed,
    /// Popularity because no checkpoint was found and nobody asked for it: degraded.
    PopularityFallback,
}

/// What a process serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Serving {
    /// The model that answers.
    pub model: ModelInfo,
    /// Why it is that model.
    pub source: ModelSource,
}

impl Serving {
    /// False only while popularity stands in for a checkpoint that nobody said could be missing.
    pub fn ready(&self) -> bool {
        self.source != ModelSource::PopularityFallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unasked_popularity_fallback_is_not_ready() {
        let serving = |source| Serving {
            model: ModelInfo::popularity("ml-100k", 3),
            source,
        };
        assert!(serving(ModelSource::Checkpoint).ready());
        assert!(serving(ModelSource::PopularityAllowed).ready());
        assert!(!serving(ModelSource::PopularityFallback).ready());
        let json = serde_json::to_value(serving(ModelSource::PopularityFallback)).unwrap();
        assert_eq!(json["source"], "popularity_fallback");
    }
}

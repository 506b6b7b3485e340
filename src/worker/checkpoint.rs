//! A trained checkpoint ([`Recommender`]) as the worker's [`Scorer`].

use super::{Scorer, ScorerError};
use crate::recommend::{ModelInfo, RecommendRequest, Recommendation, Recommender};

impl Scorer for Recommender {
    fn info(&self) -> ModelInfo {
        Recommender::info(self).clone()
    }

    fn recommend_batch(
        &self,
        requests: &[RecommendRequest],
    ) -> Result<Vec<Recommendation>, ScorerError> {
        // Unknown ids and awkward sequences are handled inside the recommender; what fails here
        // is the forward pass itself, which a retry may get past.
        Recommender::recommend_batch(self, requests)
            .map_err(|e| ScorerError::Internal(e.to_string()))
    }
}

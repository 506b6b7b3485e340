//! The popularity model as a [`Scorer`]: movies ranked by how often they were rated
//! ([`Popularity`]). It needs no checkpoint, so it is what serves when none is loaded.

use std::collections::HashSet;

use super::{Scorer, ScorerError};
use crate::baseline::Popularity;
use crate::catalogue::{Catalogue, CatalogueError};
use crate::recommend::{ModelInfo, RecommendRequest, Recommendation, ScoredMovie};

/// Ranks every catalogue movie by its rating count (ties by id), excluding the request's
/// sequence and avoided movies.
pub struct PopularityScorer {
    ranking: Popularity<i64>,
    known: HashSet<i64>,
    info: ModelInfo,
}

impl PopularityScorer {
    /// From `(movie_id, rating_count)` pairs, in any order.
    pub fn new(counts: Vec<(i64, i64)>, dataset: &str) -> Self {
        let known = counts.iter().map(|&(id, _)| id).collect();
        let ranking = Popularity::new(
            counts
                .into_iter()
                .map(|(id, count)| (id, u64::try_from(count).unwrap_or(0))),
        );
        let info = ModelInfo::popularity(dataset, ranking.len());
        Self {
            ranking,
            known,
            info,
        }
    }

    /// Reads the rating counts of every movie in the catalogue.
    pub fn from_catalogue(catalogue: &Catalogue, dataset: &str) -> Result<Self, CatalogueError> {
        Ok(Self::new(catalogue.rating_counts()?, dataset))
    }

    fn recommend_one(&self, req: &RecommendRequest) -> Recommendation {
        let excluded: HashSet<i64> = req.sequence.iter().chain(&req.avoided).copied().collect();
        let mut unknown_ids = Vec::new();
        for &id in &req.sequence {
            if !self.known.contains(&id) && !unknown_ids.contains(&id) {
                unknown_ids.push(id);
            }
        }
        let fallback = req.sequence.iter().all(|id| !self.known.contains(id));
        let items = self
            .ranking
            .top_k(req.k, |id| !excluded.contains(&id))
            .into_iter()
            .map(|(movie_id, count)| ScoredMovie {
                movie_id,
                score: count as f32,
            })
            .collect();
        Recommendation {
            items,
            unknown_ids,
            fallback,
        }
    }
}

impl Scorer for PopularityScorer {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn recommend_batch(
        &self,
        requests: &[RecommendRequest],
    ) -> Result<Vec<Recommendation>, ScorerError> {
        Ok(requests.iter().map(|r| self.recommend_one(r)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_count_and_honours_exclusions_and_k() {
        let s = PopularityScorer::new(vec![(1, 10), (2, 50), (3, 30), (4, 30), (5, 1)], "t");
        let req = RecommendRequest {
            sequence: vec![2, 99],
            avoided: vec![3],
            k: 2,
        };
        let rec = &s.recommend_batch(std::slice::from_ref(&req)).unwrap()[0];
        let ids: Vec<i64> = rec.items.iter().map(|m| m.movie_id).collect();
        assert_eq!(ids, vec![4, 1]);
        assert_eq!(rec.items[0].score, 30.0);
        assert_eq!(rec.unknown_ids, vec![99]);
        assert!(!rec.fallback);
        let cold = RecommendRequest {
            sequence: vec![77],
            avoided: vec![],
            k: 10,
        };
        let rec = &s.recommend_batch(&[cold]).unwrap()[0];
        assert!(rec.fallback);
        assert_eq!(rec.items.len(), 5);
        assert_eq!(s.info().items, 5);
        assert_eq!(s.info().architecture, "popularity");
    }
}

//! The mapping between MovieLens ids and the model's contiguous item indices.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Movies in index order: movie `movie_ids[i]` is item `i`. Padding and [MASK] are the indices
/// right after the last movie (see [`ModelConfig`](super::ModelConfig)), so movie id 1 is an
/// ordinary item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<i64>", into = "Vec<i64>")]
pub struct ItemVocab {
    movie_ids: Vec<i64>,
    index: HashMap<i64, u32>,
}

impl From<Vec<i64>> for ItemVocab {
    fn from(movie_ids: Vec<i64>) -> Self {
        let index = movie_ids
            .iter()
            .enumerate()
            .map(|(i, &m)| (m, i as u32))
            .collect();
        Self { movie_ids, index }
    }
}

impl From<ItemVocab> for Vec<i64> {
    fn from(v: ItemVocab) -> Self {
        v.movie_ids
    }
}

impl ItemVocab {
    /// A vocabulary of the given movies, sorted ascending and deduplicated.
    pub fn new(mut movie_ids: Vec<i64>) -> Self {
        movie_ids.sort_unstable();
        movie_ids.dedup();
        Self::from(movie_ids)
    }

    /// Number of movies.
    pub fn len(&self) -> usize {
        self.movie_ids.len()
    }

    /// Whether there are no movies.
    pub fn is_empty(&self) -> bool {
        self.movie_ids.is_empty()
    }

    /// The item index of a MovieLens id, if the model knows it.
    pub fn index_of(&self, movie_id: i64) -> Option<u32> {
        self.index.get(&movie_id).copied()
    }

    /// The MovieLens id of an item index.
    pub fn movie_id(&self, index: u32) -> Option<i64> {
        self.movie_ids.get(index as usize).copied()
    }

    /// All movie ids, in index order.
    pub fn movie_ids(&self) -> &[i64] {
        &self.movie_ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_both_ways_and_survive_json() {
        let v = ItemVocab::new(vec![50, 1, 7, 1]);
        assert_eq!(v.len(), 3);
        assert_eq!(v.index_of(1), Some(0));
        assert_eq!(v.index_of(50), Some(2));
        assert_eq!(v.index_of(2), None);
        assert_eq!(v.movie_id(1), Some(7));
        let back: ItemVocab = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.index_of(7), Some(1));
    }
}

//! Popularity: items ranked by how often they were rated, most first, ties by key. The one
//! ranking behind the popularity model and a checkpoint's fallback for unknown histories.

/// Items ranked by count (descending), then by key (ascending). The key is whatever the caller
/// ranks: a MovieLens id, or a model's item index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Popularity<K> {
    ranked: Vec<(K, u64)>,
}

impl<K: Copy + Ord> Popularity<K> {
    /// Ranks `(key, count)` pairs given in any order.
    pub fn new(counts: impl IntoIterator<Item = (K, u64)>) -> Self {
        let mut ranked: Vec<(K, u64)> = counts.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Self { ranked }
    }

    /// Number of ranked items.
    pub fn len(&self) -> usize {
        self.ranked.len()
    }

    /// Whether nothing is ranked.
    pub fn is_empty(&self) -> bool {
        self.ranked.is_empty()
    }

    /// The `k` most popular items that `allowed` lets through, most popular first, with their
    /// counts. Reads the ranking only as far as it must.
    pub fn top_k(&self, k: usize, mut allowed: impl FnMut(K) -> bool) -> Vec<(K, u64)> {
        self.ranked
            .iter()
            .filter(|(key, _)| allowed(*key))
            .take(k)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_counted_first_ties_by_key_and_exclusions_skipped() {
        let p = Popularity::new([(1i64, 10), (2, 50), (3, 30), (4, 30), (5, 1)]);
        assert_eq!(p.len(), 5);
        assert_eq!(p.top_k(3, |_| true), vec![(2, 50), (3, 30), (4, 30)]);
        assert_eq!(p.top_k(2, |id| id != 2 && id != 3), vec![(4, 30), (1, 10)]);
        assert_eq!(p.top_k(10, |id| id > 3).len(), 2);
        assert!(p.top_k(0, |_| true).is_empty());
    }
}

//! Ranking metrics of leave-one-out evaluation: the rank of the held-out item among all items
//! (full ranking, the input history excluded) or among sampled negatives.

use serde::{Deserialize, Serialize};

/// Hit rates, NDCG and MRR averaged over users. A rank of 0 is the top.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RankingMetrics {
    pub users: usize,
    pub hr_1: f64,
    pub hr_5: f64,
    pub hr_10: f64,
    pub hr_20: f64,
    pub ndcg_5: f64,
    pub ndcg_10: f64,
    pub ndcg_20: f64,
    pub mrr: f64,
}

impl RankingMetrics {
    /// Metrics of a list of ranks (0-based).
    pub fn from_ranks(ranks: &[usize]) -> Self {
        let n = ranks.len().max(1) as f64;
        let hr = |k: usize| ranks.iter().filter(|&&r| r < k).count() as f64 / n;
        let ndcg = |k: usize| {
            ranks
                .iter()
                .filter(|&&r| r < k)
                .map(|&r| 1.0 / ((r + 2) as f64).log2())
                .sum::<f64>()
                / n
        };
        Self {
            users: ranks.len(),
            hr_1: hr(1),
            hr_5: hr(5),
            hr_10: hr(10),
            hr_20: hr(20),
            ndcg_5: ndcg(5),
            ndcg_10: ndcg(10),
            ndcg_20: ndcg(20),
            mrr: ranks.iter().map(|&r| 1.0 / (r + 1) as f64).sum::<f64>() / n,
        }
    }
}

/// Whether item `j` (score `s`) ranks before the target `(t, st)`: a higher score, or an equal
/// score and a smaller index (ties break deterministically).
fn before(j: usize, s: f32, t: usize, st: f32) -> bool {
    s > st || (s == st && j < t)
}

/// The 0-based rank of `target` among all items, not counting the `excluded` ones (the input
/// history; duplicates and the target itself are ignored).
pub fn full_rank(scores: &[f32], target: u32, excluded: &[u32]) -> usize {
    let t = target as usize;
    let st = scores[t];
    let mut rank = scores
        .iter()
        .enumerate()
        .filter(|&(j, &s)| before(j, s, t, st))
        .count();
    let mut ex: Vec<u32> = excluded.iter().copied().filter(|&e| e != target).collect();
    ex.sort_unstable();
    ex.dedup();
    for e in ex {
        let j = e as usize;
        if j < scores.len() && before(j, scores[j], t, st) {
            rank -= 1;
        }
    }
    rank
}

/// The 0-based rank of `target` among itself and `negatives`.
pub fn sampled_rank(scores: &[f32], target: u32, negatives: &[u32]) -> usize {
    let t = target as usize;
    let st = scores[t];
    negatives
        .iter()
        .filter(|&&j| before(j as usize, scores[j as usize], t, st))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_rank_skips_history_and_breaks_ties_by_index() {
        let scores = [0.9, 0.5, 0.7, 0.5, 0.1];
        assert_eq!(full_rank(&scores, 1, &[]), 2);
        assert_eq!(full_rank(&scores, 1, &[0]), 1);
        assert_eq!(full_rank(&scores, 1, &[0, 0, 1, 4]), 1);
        assert_eq!(full_rank(&scores, 3, &[]), 3);
        assert_eq!(sampled_rank(&scores, 3, &[1, 4]), 1);
    }

    #[test]
    fn metrics_of_known_ranks() {
        let m = RankingMetrics::from_ranks(&[0, 1, 9, 30]);
        assert_eq!(m.users, 4);
        assert!((m.hr_1 - 0.25).abs() < 1e-12);
        assert!((m.hr_10 - 0.75).abs() < 1e-12);
        assert!((m.hr_20 - 0.75).abs() < 1e-12);
        let ndcg10 = (1.0 + 1.0 / 3f64.log2() + 1.0 / 11f64.log2()) / 4.0;
        assert!((m.ndcg_10 - ndcg10).abs() < 1e-12);
        let mrr = (1.0 + 0.5 + 0.1 + 1.0 / 31.0) / 4.0;
        assert!((m.mrr - mrr).abs() < 1e-12);
    }
}

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
    /// Standard errors of the means over users (sample standard deviation / √users): what a
    /// difference between two models must exceed before it means anything.
    #[serde(default)]
    pub hr_10_se: f64,
    #[serde(default)]
    pub ndcg_10_se: f64,
    #[serde(default)]
    pub mrr_se: f64,
}

impl RankingMetrics {
    /// Metrics of a list of ranks (0-based).
    pub fn from_ranks(ranks: &[usize]) -> Self {
        let n = ranks.len().max(1) as f64;
        let hr = |k: usize| ranks.iter().map(|&r| hr_gain(r, k)).sum::<f64>() / n;
        let ndcg = |k: usize| ranks.iter().map(|&r| ndcg_gain(r, k)).sum::<f64>() / n;
        let se = |gain: fn(usize) -> f64| mean_and_se(ranks.iter().map(|&r| gain(r))).1;
        Self {
            hr_10_se: se(|r| hr_gain(r, 10)),
            ndcg_10_se: se(|r| ndcg_gain(r, 10)),
            mrr_se: se(reciprocal_rank),
            users: ranks.len(),
            hr_1: hr(1),
            hr_5: hr(5),
            hr_10: hr(10),
            hr_20: hr(20),
            ndcg_5: ndcg(5),
            ndcg_10: ndcg(10),
            ndcg_20: ndcg(20),
            mrr: ranks.iter().map(|&r| reciprocal_rank(r)).sum::<f64>() / n,
        }
    }
}

/// A user's HR@k: 1 when the held-out item ranks in the top `k`.
fn hr_gain(rank: usize, k: usize) -> f64 {
    if rank < k { 1.0 } else { 0.0 }
}

/// A user's NDCG@k with one relevant item: `1 / log2(rank + 2)` inside the top `k`.
fn ndcg_gain(rank: usize, k: usize) -> f64 {
    if rank < k {
        1.0 / ((rank + 2) as f64).log2()
    } else {
        0.0
    }
}

/// A user's reciprocal rank.
fn reciprocal_rank(rank: usize) -> f64 {
    1.0 / (rank + 1) as f64
}

/// The mean of `values` and its standard error (sample standard deviation / √n; 0 for fewer
/// than two values).
fn mean_and_se(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let values: Vec<f64> = values.collect();
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, (var / n as f64).sqrt())
}

/// How much better model A does than model B on the same cases, user by user: the mean of the
/// per-user differences and its standard error. Pairing by user removes the spread of how hard
/// each user is, so this error is smaller than either model's own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    pub hr_10: f64,
    pub hr_10_se: f64,
    pub ndcg_10: f64,
    pub ndcg_10_se: f64,
    pub mrr: f64,
    pub mrr_se: f64,
}

impl PairedDifference {
    /// A − B from the two models' ranks of the same cases, in the same order; `None` when the
    /// lists differ in length.
    pub fn of(a: &[usize], b: &[usize]) -> Option<Self> {
        if a.len() != b.len() {
            return None;
        }
        let diff = |gain: &dyn Fn(usize) -> f64| {
            mean_and_se(a.iter().zip(b).map(|(&ra, &rb)| gain(ra) - gain(rb)))
        };
        let (hr_10, hr_10_se) = diff(&|r| hr_gain(r, 10));
        let (ndcg_10, ndcg_10_se) = diff(&|r| ndcg_gain(r, 10));
        let (mrr, mrr_se) = diff(&reciprocal_rank);
        Some(Self {
            hr_10,
            hr_10_se,
            ndcg_10,
            ndcg_10_se,
            mrr,
            mrr_se,
        })
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
        // HR@10 gains 1, 1, 1, 0: mean 0.75, sample variance 0.25, standard error 0.25.
        assert!((m.hr_10_se - 0.25).abs() < 1e-12);
        let gains = [1.0, 1.0 / 3f64.log2(), 1.0 / 11f64.log2(), 0.0];
        let var = gains.iter().map(|g| (g - ndcg10).powi(2)).sum::<f64>() / 3.0;
        assert!((m.ndcg_10_se - (var / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!(RankingMetrics::from_ranks(&[3]).ndcg_10_se, 0.0);
    }

    #[test]
    fn paired_differences_are_per_user() {
        // A finds every item at the top; B at rank 0, 1, 20, 0.
        let d = PairedDifference::of(&[0, 0, 0, 0], &[0, 1, 20, 0]).unwrap();
        // HR@10 differences 0, 0, 1, 0: mean 0.25, standard error 0.25.
        assert!((d.hr_10 - 0.25).abs() < 1e-12);
        assert!((d.hr_10_se - 0.25).abs() < 1e-12);
        let diffs = [0.0, 1.0 - 1.0 / 3f64.log2(), 1.0, 0.0];
        let mean = diffs.iter().sum::<f64>() / 4.0;
        let var = diffs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0;
        assert!((d.ndcg_10 - mean).abs() < 1e-12);
        assert!((d.ndcg_10_se - (var / 4.0).sqrt()).abs() < 1e-12);
        assert!((d.mrr - (0.5 + (1.0 - 1.0 / 21.0)) / 4.0).abs() < 1e-12);
        // The same model against itself: no difference and no error.
        let same = PairedDifference::of(&[4, 0, 12], &[4, 0, 12]).unwrap();
        assert_eq!((same.ndcg_10, same.ndcg_10_se), (0.0, 0.0));
        assert!(PairedDifference::of(&[0], &[0, 1]).is_none());
    }
}

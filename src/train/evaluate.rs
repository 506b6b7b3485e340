//! Leave-one-out evaluation of a model or the popularity baseline: full ranking over all items
//! with the input history excluded, and the paper's sampled protocol (100 negatives drawn by
//! training popularity), reported separately.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::data::SplitUser;
use super::metrics::{RankingMetrics, full_rank, sampled_rank};
use super::progress::ScoringProgress;
use crate::model::SeqModel;

/// Which held-out item is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Input: training items; target: the validation item.
    Valid,
    /// Input: training items and the validation item; target: the test item.
    Test,
}

/// One prediction to score: the input history and the held-out item.
#[derive(Debug, Clone)]
pub struct EvalCase {
    pub history: Vec<u32>,
    pub target: u32,
}

/// The cases of every user for `stage`.
pub fn cases(split: &[SplitUser], stage: Stage) -> Vec<EvalCase> {
    split
        .iter()
        .map(|u| match stage {
            Stage::Valid => EvalCase {
                history: u.valid_history().to_vec(),
                target: u.valid,
            },
            Stage::Test => EvalCase {
                history: u.test_history(),
                target: u.test,
            },
        })
        .collect()
}

/// `n` negatives per case, drawn without replacement in proportion to `popularity`, never from
/// the case's history nor its target. Items with zero popularity are never drawn.
pub fn sample_negatives(
    cases: &[EvalCase],
    popularity: &[u32],
    n: usize,
    seed: u64,
) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cumulative = Vec::with_capacity(popularity.len());
    let mut total = 0u64;
    for &p in popularity {
        total += u64::from(p);
        cumulative.push(total);
    }
    cases
        .iter()
        .map(|case| {
            let mut taken: std::collections::HashSet<u32> = case.history.iter().copied().collect();
            taken.insert(case.target);
            let available = popularity
                .iter()
                .enumerate()
                .filter(|&(i, &p)| p > 0 && !taken.contains(&(i as u32)))
                .count();
            let want = n.min(available);
            let mut negs = Vec::with_capacity(want);
            while negs.len() < want && total > 0 {
                let r = rng.random_range(0..total);
                let item = cumulative.partition_point(|&c| c <= r) as u32;
                if taken.insert(item) {
                    negs.push(item);
                }
            }
            negs
        })
        .collect()
}

/// Full and sampled ranks from one score row per case.
fn ranks_from_rows(
    rows: &[Vec<f32>],
    cases: &[EvalCase],
    negatives: Option<&[Vec<u32>]>,
    full: &mut Vec<usize>,
    sampled: &mut Vec<usize>,
    offset: usize,
) {
    for (i, row) in rows.iter().enumerate() {
        let case = &cases[offset + i];
        full.push(full_rank(row, case.target, &case.history));
        if let Some(negs) = negatives {
            sampled.push(sampled_rank(row, case.target, &negs[offset + i]));
        }
    }
}

/// Ranks of the model, in batches of `batch_size`: `(full, sampled)`; `sampled` is empty
/// without negatives.
pub fn model_ranks(
    model: &SeqModel,
    cases: &[EvalCase],
    negatives: Option<&[Vec<u32>]>,
    batch_size: usize,
) -> candle_core::Result<(Vec<usize>, Vec<usize>)> {
    let mut full = Vec::with_capacity(cases.len());
    let mut sampled = Vec::new();
    let output = model.output_matrix()?;
    let mut progress = ScoringProgress::new(cases.len());
    for (b, chunk) in cases.chunks(batch_size.max(1)).enumerate() {
        let histories: Vec<&[u32]> = chunk.iter().map(|c| c.history.as_slice()).collect();
        let rows = model
            .score_histories_against(&histories, &output)?
            .to_vec2::<f32>()?;
        ranks_from_rows(
            &rows,
            cases,
            negatives,
            &mut full,
            &mut sampled,
            b * batch_size.max(1),
        );
        progress.scored(full.len());
    }
    Ok((full, sampled))
}

/// Ranks of any scoring function over `items` items, cases scored in parallel: `(full,
/// sampled)`; `sampled` is empty without negatives. `score(history, row)` fills `row`.
pub fn ranks_with<F>(
    items: usize,
    cases: &[EvalCase],
    negatives: Option<&[Vec<u32>]>,
    score: F,
) -> (Vec<usize>, Vec<usize>)
where
    F: Fn(&[u32], &mut [f32]) + Sync,
{
    use rayon::prelude::*;
    let ranks: Vec<(usize, Option<usize>)> = cases
        .par_iter()
        .enumerate()
        .map_init(
            || vec![0f32; items],
            |row, (i, case)| {
                score(&case.history, row);
                let full = full_rank(row, case.target, &case.history);
                let sampled = negatives.map(|n| sampled_rank(row, case.target, &n[i]));
                (full, sampled)
            },
        )
        .collect();
    let full = ranks.iter().map(|r| r.0).collect();
    let sampled = ranks.iter().filter_map(|r| r.1).collect();
    (full, sampled)
}

/// Ranks of any [`ItemScores`](crate::recommend::ItemScores) model, in batches of
/// `batch_size`: `(full, sampled)`.
pub fn item_scores_ranks(
    model: &dyn crate::recommend::ItemScores,
    cases: &[EvalCase],
    negatives: Option<&[Vec<u32>]>,
    batch_size: usize,
) -> Result<(Vec<usize>, Vec<usize>), crate::recommend::ScoreError> {
    let mut full = Vec::with_capacity(cases.len());
    let mut sampled = Vec::new();
    let batch = batch_size.max(1);
    let mut progress = ScoringProgress::new(cases.len());
    for (b, chunk) in cases.chunks(batch).enumerate() {
        let histories: Vec<&[u32]> = chunk.iter().map(|c| c.history.as_slice()).collect();
        let rows = model.score_rows(&histories)?;
        ranks_from_rows(&rows, cases, negatives, &mut full, &mut sampled, b * batch);
        progress.scored(full.len());
    }
    Ok((full, sampled))
}

/// Ranks of a fitted EASE model: `(full, sampled)`; `sampled` is empty without negatives.
pub fn ease_ranks(
    ease: &crate::baseline::Ease,
    cases: &[EvalCase],
    negatives: Option<&[Vec<u32>]>,
) -> (Vec<usize>, Vec<usize>) {
    let mut full = Vec::with_capacity(cases.len());
    let mut sampled = Vec::new();
    let mut row = vec![0f32; ease.items()];
    let mut history = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        history.clear();
        history.extend(case.history.iter().map(|&h| h as usize));
        ease.score_into(&history, &mut row);
        full.push(full_rank(&row, case.target, &case.history));
        if let Some(negs) = negatives {
            sampled.push(sampled_rank(&row, case.target, &negs[i]));
        }
    }
    (full, sampled)
}

/// Ranks of the popularity baseline: `(full, sampled)`.
pub fn popularity_ranks(
    popularity: &[u32],
    cases: &[EvalCase],
    negatives: Option<&[Vec<u32>]>,
) -> (Vec<usize>, Vec<usize>) {
    let row: Vec<f32> = popularity.iter().map(|&p| p as f32).collect();
    let mut full = Vec::with_capacity(cases.len());
    let mut sampled = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        full.push(full_rank(&row, case.target, &case.history));
        if let Some(negs) = negatives {
            sampled.push(sampled_rank(&row, case.target, &negs[i]));
        }
    }
    (full, sampled)
}

/// Full-ranking metrics of the model on `cases`.
pub fn model_metrics(
    model: &SeqModel,
    cases: &[EvalCase],
    batch_size: usize,
) -> candle_core::Result<RankingMetrics> {
    let (full, _) = model_ranks(model, cases, None, batch_size)?;
    Ok(RankingMetrics::from_ranks(&full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negatives_avoid_history_and_target_and_unpopular_items() {
        let popularity = vec![5, 0, 3, 3, 1, 9];
        let cases = vec![EvalCase {
            history: vec![0],
            target: 2,
        }];
        let negs = sample_negatives(&cases, &popularity, 100, 7);
        let mut got = negs[0].clone();
        got.sort_unstable();
        assert_eq!(got, vec![3, 4, 5]);
        let two = sample_negatives(&cases, &popularity, 2, 7);
        assert_eq!(two[0].len(), 2);
        assert!(two[0].iter().all(|i| [3, 4, 5].contains(i)));
    }
}

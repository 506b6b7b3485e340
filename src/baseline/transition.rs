//! The transition model: which movies follow which.
//!
//! Every pair of items `a` then `b` at distance `d ≤ window` in a training sequence adds
//! `d^(−distance_decay)` to `count(a → b)` (and, with `both_directions`, to `count(b → a)`).
//! A history is scored from its last `history` items `h_0` (the most recent), `h_1`, … as
//! `Σ_k (k + 1)^(−recency_decay) · count(h_k → b)`. On ml-latest-small the next movie follows
//! mostly from the few rated just before it (docs/experiments.md), which this reads directly.
//!
//! Items are 0-based contiguous indices. The counts are stored as sparse rows (CSR).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Why a transition model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// A setting is outside its range.
    #[error("transition setting {name} = {value} is out of range ({range})")]
    BadSetting {
        name: &'static str,
        value: String,
        range: &'static str,
    },
    /// An item index is outside `0..items`.
    #[error("item index {index} out of range for {items} items")]
    ItemOutOfRange { index: usize, items: usize },
    /// The stored rows do not fit together.
    #[error("stored transition rows are inconsistent: {0}")]
    Corrupt(String),
}

/// The settings of a transition model; tuned on validation by [`tune`](super::tune).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransitionParams {
    /// Largest distance between two items that counts.
    pub window: usize,
    /// A pair at distance `d` adds `d^(−distance_decay)`.
    pub distance_decay: f32,
    /// Whether `b` before `a` counts for `a → b` as well.
    pub both_directions: bool,
    /// How many of the most recent items score.
    pub history: usize,
    /// The `k`-th most recent item (0-based) weighs `(k + 1)^(−recency_decay)`.
    pub recency_decay: f32,
}

impl Default for TransitionParams {
    /// The settings of the first measurement (docs/experiments.md): three steps, both
    /// directions, the last five movies, weights one over the distance and the age.
    fn default() -> Self {
        Self {
            window: 3,
            distance_decay: 1.0,
            both_directions: true,
            history: 5,
            recency_decay: 1.0,
        }
    }
}

impl TransitionParams {
    /// Checks every setting is in range.
    pub fn validate(&self) -> Result<(), TransitionError> {
        let bad =
            |name, value: String, range| Err(TransitionError::BadSetting { name, value, range });
        if !(1..=50).contains(&self.window) {
            return bad("window", self.window.to_string(), "1..=50");
        }
        if !(1..=200).contains(&self.history) {
            return bad("history", self.history.to_string(), "1..=200");
        }
        for (name, v) in [
            ("distance_decay", self.distance_decay),
            ("recency_decay", self.recency_decay),
        ] {
            if !(0.0..=8.0).contains(&v) {
                return bad(name, v.to_string(), "0..=8");
            }
        }
        Ok(())
    }
}

/// Fitted transition counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    params: TransitionParams,
    /// Row `a` is `cols[row_start[a]..row_start[a + 1]]`, sorted by column.
    row_start: Vec<u32>,
    cols: Vec<u32>,
    weights: Vec<f32>,
    /// A tiny popularity term per item, so that equal counts (and an empty row) rank the more
    /// popular movie first; far below the smallest count a pair can add.
    tie_break: Vec<f32>,
}

/// The tie-break term of the most popular item: below any count one pair can add at the
/// default settings (1/3 · 1/5), and summed counts differ by more than this in practice.
const TIE_BREAK: f32 = 1e-4;

fn tie_break(popularity: &[u32]) -> Vec<f32> {
    let max = popularity.iter().copied().max().unwrap_or(0).max(1) as f32;
    popularity
        .iter()
        .map(|&p| TIE_BREAK * p as f32 / max)
        .collect()
}

impl Transition {
    /// Counts the transitions of `sequences` (each a user's items, oldest first) over `items`
    /// items; `popularity` (one count per item) breaks ties.
    pub fn fit(
        sequences: &[&[u32]],
        popularity: &[u32],
        params: TransitionParams,
    ) -> Result<Self, TransitionError> {
        params.validate()?;
        let items = popularity.len();
        // Where each item occurs: (sequence, position), so each row is built on its own.
        let mut occurrences: Vec<Vec<(u32, u32)>> = vec![Vec::new(); items];
        for (s, seq) in sequences.iter().enumerate() {
            for (p, &item) in seq.iter().enumerate() {
                let slot =
                    occurrences
                        .get_mut(item as usize)
                        .ok_or(TransitionError::ItemOutOfRange {
                            index: item as usize,
                            items,
                        })?;
                slot.push((s as u32, p as u32));
            }
        }
        let distance_weight: Vec<f32> = (0..=params.window)
            .map(|d| (d.max(1) as f32).powf(-params.distance_decay))
            .collect();
        let rows: Vec<Vec<(u32, f32)>> = occurrences
            .par_iter()
            .map_init(
                || (vec![0f32; items], Vec::new()),
                |(acc, touched), occ| {
                    for &(s, p) in occ {
                        let seq = sequences[s as usize];
                        let p = p as usize;
                        let mut add = |q: usize, d: usize| {
                            let b = seq[q] as usize;
                            if acc[b] == 0.0 {
                                touched.push(b as u32);
                            }
                            acc[b] += distance_weight[d];
                        };
                        for d in 1..=params.window {
                            if p + d < seq.len() {
                                add(p + d, d);
                            }
                            if params.both_directions && p >= d {
                                add(p - d, d);
                            }
                        }
                    }
                    touched.sort_unstable();
                    touched
                        .drain(..)
                        .map(|b| (b, std::mem::take(&mut acc[b as usize])))
                        .collect()
                },
            )
            .collect();
        let mut row_start = Vec::with_capacity(items + 1);
        let mut cols = Vec::new();
        let mut weights = Vec::new();
        row_start.push(0);
        for row in rows {
            for (b, w) in row {
                cols.push(b);
                weights.push(w);
            }
            let end = u32::try_from(cols.len()).map_err(|_| {
                TransitionError::Corrupt(format!("{} transitions exceed u32", cols.len()))
            })?;
            row_start.push(end);
        }
        Ok(Self {
            params,
            row_start,
            cols,
            weights,
            tie_break: tie_break(popularity),
        })
    }

    /// Rebuilds a model from its stored parts, checking that they fit together.
    pub fn from_parts(
        params: TransitionParams,
        row_start: Vec<u32>,
        cols: Vec<u32>,
        weights: Vec<f32>,
        popularity: &[u32],
    ) -> Result<Self, TransitionError> {
        params.validate()?;
        let items = popularity.len();
        let corrupt = |m: String| Err(TransitionError::Corrupt(m));
        if row_start.len() != items + 1 || row_start.first() != Some(&0) {
            return corrupt(format!("{} row starts for {items} items", row_start.len()));
        }
        if row_start.windows(2).any(|w| w[0] > w[1])
            || row_start.last().map(|&e| e as usize) != Some(cols.len())
            || cols.len() != weights.len()
        {
            return corrupt("row starts, columns and weights disagree".into());
        }
        if let Some(&c) = cols.iter().find(|&&c| c as usize >= items) {
            return Err(TransitionError::ItemOutOfRange {
                index: c as usize,
                items,
            });
        }
        Ok(Self {
            params,
            row_start,
            cols,
            weights,
            tie_break: tie_break(popularity),
        })
    }

    /// The settings it was fitted with.
    pub fn params(&self) -> TransitionParams {
        self.params
    }

    /// Number of items scored.
    pub fn items(&self) -> usize {
        self.tie_break.len()
    }

    /// The stored parts: row starts, columns, weights (for the checkpoint).
    pub fn parts(&self) -> (&[u32], &[u32], &[f32]) {
        (&self.row_start, &self.cols, &self.weights)
    }

    /// The count `a → b`.
    pub fn count(&self, a: u32, b: u32) -> f32 {
        let (cols, weights) = self.row(a);
        cols.binary_search(&b).map_or(0.0, |i| weights[i])
    }

    fn row(&self, a: u32) -> (&[u32], &[f32]) {
        let a = a as usize;
        match (self.row_start.get(a), self.row_start.get(a + 1)) {
            (Some(&s), Some(&e)) => (
                &self.cols[s as usize..e as usize],
                &self.weights[s as usize..e as usize],
            ),
            _ => (&[], &[]),
        }
    }

    /// Writes the score of every item for `history` (oldest first) into `out` (length
    /// `items`), scored with `params`' history length and recency decay (the counts are
    /// those of the fit). Indices out of range are ignored.
    pub fn score_with(&self, history: &[u32], history_len: usize, recency: f32, out: &mut [f32]) {
        out.copy_from_slice(&self.tie_break);
        for (k, &a) in history.iter().rev().take(history_len).enumerate() {
            let w = ((k + 1) as f32).powf(-recency);
            let (cols, weights) = self.row(a);
            for (&b, &c) in cols.iter().zip(weights) {
                out[b as usize] += w * c;
            }
        }
    }

    /// Writes the score of every item for `history` (oldest first) into `out`.
    pub fn score_into(&self, history: &[u32], out: &mut [f32]) {
        self.score_with(history, self.params.history, self.params.recency_decay, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(window: usize, both: bool) -> TransitionParams {
        TransitionParams {
            window,
            distance_decay: 1.0,
            both_directions: both,
            history: 5,
            recency_decay: 1.0,
        }
    }

    /// Sequences [0,1,2] and [1,2,3], window 2, forward only:
    /// 0→1 (d1) 1, 0→2 (d2) ½, 1→2 (d1) 1 + 1 = 2, 1→3 (d2) ½, 2→3 (d1) 1.
    #[test]
    fn counts_pairs_by_one_over_the_distance() {
        let seqs: Vec<&[u32]> = vec![&[0, 1, 2], &[1, 2, 3]];
        let t = Transition::fit(&seqs, &[1, 2, 2, 1], params(2, false)).unwrap();
        let want = [
            (0, 1, 1.0),
            (0, 2, 0.5),
            (1, 2, 2.0),
            (1, 3, 0.5),
            (2, 3, 1.0),
            (2, 1, 0.0),
            (3, 0, 0.0),
        ];
        for (a, b, c) in want {
            assert_eq!(t.count(a, b), c, "count({a} → {b})");
        }
        // Both directions add the mirrored pairs.
        let t = Transition::fit(&seqs, &[1, 2, 2, 1], params(2, true)).unwrap();
        assert_eq!(t.count(2, 1), 2.0);
        assert_eq!(t.count(2, 0), 0.5);
        assert_eq!(t.count(1, 2), 2.0);
    }

    /// History [0, 1] (1 most recent): score(b) = count(1 → b) + ½ count(0 → b) + tie-break.
    #[test]
    fn scores_from_the_most_recent_items_with_recency_weights() {
        let seqs: Vec<&[u32]> = vec![&[0, 1, 2], &[1, 2, 3]];
        let t = Transition::fit(&seqs, &[1, 2, 2, 1], params(2, false)).unwrap();
        let mut out = vec![0.0; 4];
        t.score_into(&[0, 1], &mut out);
        let tie = |p: f32| TIE_BREAK * p / 2.0;
        let want = [
            tie(1.0),
            0.5 * 1.0 + tie(2.0),
            2.0 + 0.5 * 0.5 + tie(2.0),
            0.5 + tie(1.0),
        ];
        for (got, want) in out.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{out:?} against {want:?}");
        }
        // Only the last item counts with history 1.
        t.score_with(&[0, 1], 1, 1.0, &mut out);
        assert!((out[1] - tie(2.0)).abs() < 1e-6);
        // Equal counts: the more popular movie first.
        t.score_into(&[], &mut out);
        assert!(out[1] > out[0] && out[2] > out[3]);
    }

    #[test]
    fn refuses_bad_settings_and_items_and_round_trips_its_parts() {
        let seqs: Vec<&[u32]> = vec![&[0, 5]];
        assert!(matches!(
            Transition::fit(&seqs, &[1, 1], params(2, false)),
            Err(TransitionError::ItemOutOfRange { index: 5, items: 2 })
        ));
        assert!(matches!(
            Transition::fit(&[], &[1], params(0, false)),
            Err(TransitionError::BadSetting { name: "window", .. })
        ));
        let seqs: Vec<&[u32]> = vec![&[0, 1, 2, 0]];
        let pop = [2, 1, 1];
        let t = Transition::fit(&seqs, &pop, params(3, true)).unwrap();
        let (r, c, w) = t.parts();
        let back =
            Transition::from_parts(t.params(), r.to_vec(), c.to_vec(), w.to_vec(), &pop).unwrap();
        assert_eq!(back, t);
        assert!(
            Transition::from_parts(t.params(), r.to_vec(), c.to_vec(), w.to_vec(), &pop[..2])
                .is_err()
        );
        let mut bad_cols = c.to_vec();
        bad_cols[0] = 9;
        assert!(
            Transition::from_parts(t.params(), r.to_vec(), bad_cols, w.to_vec(), &pop).is_err()
        );
    }
}

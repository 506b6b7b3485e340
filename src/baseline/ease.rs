//! EASE (Steck, WWW 2019): a closed-form linear item-item model.
//!
//! With `X` the user × item interaction matrix, `G = XᵀX + λI` and `P = G⁻¹`, the weights are
//! `B = I − P · diag(1 / diag(P))` with a zero diagonal, i.e. `B_ij = −P_ij / P_jj` (i ≠ j).
//! A user's scores are `x_u · B`: the sum of the rows of `B` of the items in their history.
//!
//! Items are 0-based contiguous indices; the caller maps its own vocabulary onto them.

use faer::{Mat, Side, linalg::solvers::DenseSolveCore};

/// Why EASE could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum EaseError {
    /// The catalogue is larger than the configured cap: the dense `n × n` solve would not fit.
    #[error("EASE skipped: {items} items exceed the cap of {cap} (an {items}×{items} solve)")]
    TooManyItems { items: usize, cap: usize },
    /// An item index is outside `0..items`.
    #[error("item index {index} out of range for {items} items")]
    ItemOutOfRange { index: usize, items: usize },
    /// λ must be positive for `XᵀX + λI` to be positive definite.
    #[error("EASE needs a positive lambda, got {0}")]
    BadLambda(f64),
    /// The Cholesky factorisation failed (not positive definite).
    #[error("EASE solve failed: the Gram matrix is not positive definite")]
    NotPositiveDefinite,
}

/// The Gram matrix `XᵀX` of binary user histories, kept so that several λ can be tried cheaply.
pub struct Gram {
    items: usize,
    gram: Mat<f64>,
}

impl Gram {
    /// Counts co-occurrences over `histories` (each a user's items; duplicates count once).
    pub fn new<'a, I>(histories: I, items: usize, cap: usize) -> Result<Self, EaseError>
    where
        I: IntoIterator<Item = &'a [usize]>,
    {
        if items > cap {
            return Err(EaseError::TooManyItems { items, cap });
        }
        let mut gram = Mat::<f64>::zeros(items, items);
        let mut seen = Vec::new();
        for history in histories {
            seen.clear();
            seen.extend_from_slice(history);
            seen.sort_unstable();
            seen.dedup();
            if let Some(&last) = seen.last()
                && last >= items
            {
                return Err(EaseError::ItemOutOfRange { index: last, items });
            }
            // Upper triangle only; mirrored once at the end.
            for (a, &i) in seen.iter().enumerate() {
                for &j in &seen[a..] {
                    gram[(i, j)] += 1.0;
                }
            }
        }
        for j in 0..items {
            for i in 0..j {
                gram[(j, i)] = gram[(i, j)];
            }
        }
        Ok(Self { items, gram })
    }

    /// Number of items.
    pub fn items(&self) -> usize {
        self.items
    }

    /// Solves for the EASE weights with regularisation `lambda`.
    pub fn fit(&self, lambda: f64) -> Result<Ease, EaseError> {
        if !(lambda > 0.0 && lambda.is_finite()) {
            return Err(EaseError::BadLambda(lambda));
        }
        let n = self.items;
        let mut g = self.gram.clone();
        for i in 0..n {
            g[(i, i)] += lambda;
        }
        let p = g
            .llt(Side::Lower)
            .map_err(|_| EaseError::NotPositiveDefinite)?
            .inverse();
        drop(g);
        // B_ij = -P_ij / P_jj, zero diagonal; stored row-major as f32 for scoring.
        let mut weights = vec![0f32; n * n];
        for i in 0..n {
            let row = &mut weights[i * n..(i + 1) * n];
            for (j, w) in row.iter_mut().enumerate() {
                if i != j {
                    *w = (-p[(i, j)] / p[(j, j)]) as f32;
                }
            }
        }
        Ok(Ease {
            items: n,
            lambda,
            weights,
        })
    }
}

/// Fitted EASE weights.
pub struct Ease {
    items: usize,
    lambda: f64,
    weights: Vec<f32>,
}

impl Ease {
    /// Number of items scored.
    pub fn items(&self) -> usize {
        self.items
    }

    /// The regularisation the weights were fitted with.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Rebuilds fitted weights (row-major `items × items`, as [`weights`](Self::weights) gives
    /// them); `None` when the length does not match.
    pub fn from_parts(items: usize, lambda: f64, weights: Vec<f32>) -> Option<Self> {
        (items.checked_mul(items) == Some(weights.len())).then_some(Self {
            items,
            lambda,
            weights,
        })
    }

    /// The weights, row-major `items × items`.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// The weight `B[from, to]`.
    pub fn weight(&self, from: usize, to: usize) -> f32 {
        self.weights[from * self.items + to]
    }

    /// Writes the score of every item for a user with this `history` into `out` (length
    /// `items`). Indices out of range are ignored; duplicates count once, as in fitting.
    pub fn score_into(&self, history: &[usize], out: &mut [f32]) {
        out.fill(0.0);
        let n = self.items;
        let mut seen = history.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for &i in seen.iter().filter(|&&i| i < n) {
            let row = &self.weights[i * n..(i + 1) * n];
            for (o, w) in out.iter_mut().zip(row) {
                *o += w;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 users × 3 items: X = [[1,1,0],[0,1,1],[1,1,1]].
    /// G = XᵀX = [[2,2,1],[2,3,2],[1,2,2]]; with λ = 1, G + I = [[3,2,1],[2,4,2],[1,2,3]].
    /// Its inverse (det = 3(12−4) − 2(6−2) + 1(4−4) = 16) is
    /// P = 1/16 · [[8,−4,0],[−4,8,−4],[0,−4,8]], so B_ij = −P_ij / P_jj gives
    /// B = [[0, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0]].
    #[test]
    fn matches_a_hand_computed_solution() {
        let histories: Vec<Vec<usize>> = vec![vec![0, 1], vec![1, 2], vec![0, 1, 2]];
        let gram = Gram::new(histories.iter().map(Vec::as_slice), 3, 10).unwrap();
        let ease = gram.fit(1.0).unwrap();
        let expected = [[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]];
        for (i, row) in expected.iter().enumerate() {
            for (j, &want) in row.iter().enumerate() {
                assert!(
                    (ease.weight(i, j) - want).abs() < 1e-6,
                    "B[{i},{j}] = {} (want {want})",
                    ease.weight(i, j)
                );
            }
        }
        // A user who watched item 0 gets score 0.5 for item 1 and 0 for item 2.
        let mut scores = vec![0.0; 3];
        ease.score_into(&[0, 0], &mut scores);
        assert_eq!(scores, vec![0.0, 0.5, 0.0]);
    }

    #[test]
    fn refuses_catalogues_over_the_cap_and_bad_input() {
        let h: Vec<Vec<usize>> = vec![vec![0, 5]];
        assert!(matches!(
            Gram::new(h.iter().map(Vec::as_slice), 10, 5),
            Err(EaseError::TooManyItems { items: 10, cap: 5 })
        ));
        assert!(matches!(
            Gram::new(h.iter().map(Vec::as_slice), 3, 5),
            Err(EaseError::ItemOutOfRange { index: 5, items: 3 })
        ));
        let g = Gram::new(std::iter::empty(), 2, 5).unwrap();
        assert!(matches!(g.fit(0.0), Err(EaseError::BadLambda(_))));
        assert!(g.fit(1.0).is_ok());
    }
}

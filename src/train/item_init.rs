//! Item embeddings drawn from the training sequences instead of at random: the leading
//! eigenvectors of the items' sequential co-occurrence counts, so that at the first step two
//! movies watched close together already have embeddings that point the same way.
//!
//! The counts take every pair of training items at most [`MAX_DISTANCE`] apart in a user's
//! sequence, weighted by one over their distance, in both directions. Only the training part of
//! each user's split is read, so neither the validation nor the test item is seen.

use faer::sparse::linalg::matmul::sparse_dense_matmul;
use faer::sparse::{SparseColMat, Triplet};
use faer::{Accum, Mat, Par, Side};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::TrainError;
use super::data::SplitUser;
use crate::model::standard_normal;

/// Two items further apart than this in a sequence do not count as co-occurring.
const MAX_DISTANCE: usize = 3;
/// Extra random directions of the range finder beyond the embedding width.
const OVERSAMPLING: usize = 16;
/// Power iterations of the range finder.
const POWER_ITERATIONS: usize = 4;
/// The standard deviation the embeddings are scaled to: the random initialisation's.
const INIT_STD: f64 = 0.02;

/// Where the item embeddings start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ItemInit {
    /// A truncated normal with standard deviation 0.02, like every other matrix.
    Random,
    /// The leading eigenvectors of the training sequences' co-occurrence counts, scaled by the
    /// square roots of their eigenvalues and then to standard deviation 0.02.
    Cooccurrence,
}

/// The symmetric co-occurrence counts of the training sequences, `items × items`.
pub fn cooccurrence_counts(
    split: &[SplitUser],
    items: usize,
) -> Result<SparseColMat<usize, f64>, TrainError> {
    let mut pairs: Vec<(u32, u32, f64)> = Vec::new();
    for user in split {
        let s = &user.train;
        for (i, &a) in s.iter().enumerate() {
            for d in 1..=MAX_DISTANCE {
                let Some(&b) = s.get(i + d) else { break };
                if a != b {
                    let w = 1.0 / d as f64;
                    pairs.push((a, b, w));
                    pairs.push((b, a, w));
                }
            }
        }
    }
    pairs.sort_unstable_by_key(|&(a, b, _)| (b, a));
    let mut triplets: Vec<Triplet<usize, usize, f64>> = Vec::new();
    for (a, b, w) in pairs {
        let (row, col) = (a as usize, b as usize);
        if row >= items || col >= items {
            return Err(TrainError::Invalid(format!(
                "item index {} outside the {items} items",
                row.max(col)
            )));
        }
        match triplets.last_mut() {
            Some(t) if t.row == row && t.col == col => t.val += w,
            _ => triplets.push(Triplet::new(row, col, w)),
        }
    }
    SparseColMat::try_new_from_triplets(items, items, &triplets)
        .map_err(|e| TrainError::Invalid(format!("co-occurrence counts: {e:?}")))
}

/// Item embeddings `items × hidden` (row-major) from the co-occurrence counts of `split`:
/// `Q V √Λ` for the `hidden` largest eigenvalues `Λ` (negative ones count as zero) of the counts,
/// found by a randomized range finder seeded with `seed`, then scaled to standard deviation
/// [`INIT_STD`]. Items that co-occur with nothing get zero rows; the caller keeps their random
/// initialisation.
pub fn cooccurrence_embeddings(
    split: &[SplitUser],
    items: usize,
    hidden: usize,
    seed: u64,
) -> Result<Vec<f32>, TrainError> {
    let counts = cooccurrence_counts(split, items)?;
    // Fewer items than columns: the columns past the items' count stay zero.
    let width = (hidden + OVERSAMPLING).min(items);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut range = Mat::<f64>::from_fn(items, width, |_, _| standard_normal(&mut rng));
    for _ in 0..POWER_ITERATIONS {
        let basis = range.qr().compute_thin_Q();
        sparse_dense_matmul(
            range.as_mut(),
            Accum::Replace,
            counts.as_ref(),
            basis.as_ref(),
            1.0,
            Par::Seq,
        );
    }
    let basis = range.qr().compute_thin_Q();
    let mut projected = Mat::<f64>::zeros(items, width);
    sparse_dense_matmul(
        projected.as_mut(),
        Accum::Replace,
        counts.as_ref(),
        basis.as_ref(),
        1.0,
        Par::Seq,
    );
    let small = basis.transpose() * &projected;
    let small = Mat::<f64>::from_fn(width, width, |i, j| 0.5 * (small[(i, j)] + small[(j, i)]));
    let eigen = small
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| TrainError::Invalid(format!("co-occurrence eigendecomposition: {e:?}")))?;
    // Eigenvalues come in nondecreasing order: the leading ones are the last columns.
    let values = eigen.S().column_vector();
    let vectors = eigen.U();
    let leading = Mat::<f64>::from_fn(width, hidden, |i, j| {
        if j >= width {
            return 0.0;
        }
        let col = width - 1 - j;
        vectors[(i, col)] * values[col].max(0.0).sqrt()
    });
    let embeddings = &basis * &leading;
    let n = (items * hidden) as f64;
    let sum_sq: f64 = (0..items)
        .flat_map(|i| (0..hidden).map(move |j| (i, j)))
        .map(|(i, j)| embeddings[(i, j)].powi(2))
        .sum();
    let rms = (sum_sq / n).sqrt();
    if !rms.is_finite() || rms == 0.0 {
        return Err(TrainError::Invalid(
            "the training sequences hold no co-occurring items".into(),
        ));
    }
    let scale = INIT_STD / rms;
    Ok((0..items)
        .flat_map(|i| (0..hidden).map(move |j| (i, j)))
        .map(|(i, j)| (embeddings[(i, j)] * scale) as f32)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(train: &[u32]) -> SplitUser {
        SplitUser {
            user_id: 1,
            train: train.to_vec(),
            valid: 0,
            test: 0,
        }
    }

    #[test]
    fn counts_weigh_pairs_by_distance_in_both_directions() -> Result<(), TrainError> {
        let counts = cooccurrence_counts(&[user(&[0, 1, 2, 3, 4]), user(&[1, 0])], 5)?;
        let dense = counts.to_dense();
        // 0 then 1 at distance 1 in the first user, 1 then 0 in the second.
        assert!((dense[(0, 1)] - 2.0).abs() < 1e-12);
        assert!((dense[(1, 0)] - 2.0).abs() < 1e-12);
        assert!((dense[(0, 2)] - 0.5).abs() < 1e-12);
        assert!((dense[(0, 3)] - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(dense[(0, 4)], 0.0, "distance 4 is too far");
        assert_eq!(dense[(2, 2)], 0.0);
        Ok(())
    }

    #[test]
    fn embeddings_of_items_watched_together_point_the_same_way() -> Result<(), TrainError> {
        // Two groups of items that only ever follow each other within their group.
        let split: Vec<SplitUser> = (0..40)
            .map(|u| {
                let base = if u % 2 == 0 { 0 } else { 6 };
                user(&(0..6).map(|k| base + (k + u) % 6).collect::<Vec<u32>>())
            })
            .collect();
        let (items, hidden) = (12, 4);
        let e = cooccurrence_embeddings(&split, items, hidden, 3)?;
        assert_eq!(e.len(), items * hidden);
        let row = |i: usize| &e[i * hidden..(i + 1) * hidden];
        let cos = |a: &[f32], b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            dot / (na * nb)
        };
        assert!(cos(row(0), row(3)) > 0.5, "same group");
        assert!(cos(row(0), row(9)).abs() < 0.1, "other group");
        let rms = (e.iter().map(|x| x * x).sum::<f32>() / e.len() as f32).sqrt();
        assert!((rms - INIT_STD as f32).abs() < 1e-4);
        Ok(())
    }

    #[test]
    fn fewer_items_than_columns_leave_the_extra_columns_zero() -> Result<(), TrainError> {
        let e = cooccurrence_embeddings(&[user(&[0, 1, 2, 0, 1, 2])], 3, 5, 1)?;
        assert_eq!(e.len(), 15);
        for row in e.chunks(5) {
            assert_eq!(row[3..], [0.0, 0.0]);
            assert!(row[..3].iter().any(|&x| x != 0.0));
        }
        Ok(())
    }

    #[test]
    fn sequences_without_pairs_are_refused() {
        let message = match cooccurrence_embeddings(&[user(&[4])], 5, 2, 1) {
            Err(e) => e.to_string(),
            Ok(_) => String::from("accepted"),
        };
        assert!(message.contains("no co-occurring items"), "{message}");
    }
}

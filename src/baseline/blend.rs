//! A blend: several models over the same items served as one. Each member's row is put on a
//! common scale (its z-score over all items: scores of different models are not comparable,
//! their spread within a row is), then the rows are summed with weights chosen on validation.

use rayon::prelude::*;

use crate::recommend::{ItemScores, ScoreError};

/// Members and their weights.
pub struct Blend {
    members: Vec<Box<dyn ItemScores>>,
    weights: Vec<f32>,
}

/// Why a blend cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BlendError {
    #[error("a blend needs two or more members, got {0}")]
    TooFewMembers(usize),
    #[error("{members} members but {weights} weights")]
    WeightCount { members: usize, weights: usize },
    #[error("member {index} scores {items} items, the first {first}")]
    ItemsDiffer {
        index: usize,
        items: usize,
        first: usize,
    },
    #[error("weights must be finite, at least 0 and not all 0: {0:?}")]
    BadWeights(Vec<f32>),
}

impl Blend {
    /// Members over the same items, one weight each.
    pub fn new(members: Vec<Box<dyn ItemScores>>, weights: Vec<f32>) -> Result<Self, BlendError> {
        if members.len() < 2 {
            return Err(BlendError::TooFewMembers(members.len()));
        }
        if weights.len() != members.len() {
            return Err(BlendError::WeightCount {
                members: members.len(),
                weights: weights.len(),
            });
        }
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().all(|&w| w == 0.0) {
            return Err(BlendError::BadWeights(weights));
        }
        let first = members[0].items();
        if let Some((index, m)) = members.iter().enumerate().find(|(_, m)| m.items() != first) {
            return Err(BlendError::ItemsDiffer {
                index,
                items: m.items(),
                first,
            });
        }
        Ok(Self { members, weights })
    }

    /// The weights, in member order.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }
}

/// Puts a row on a common scale in place: minus its mean, over its standard deviation (a
/// constant row becomes zeros).
pub fn standardise(row: &mut [f32]) {
    let n = row.len().max(1) as f64;
    let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let scale = if var > 0.0 { 1.0 / var.sqrt() } else { 0.0 };
    for v in row.iter_mut() {
        *v = ((f64::from(*v) - mean) * scale) as f32;
    }
}

/// `Σ_m weights[m] · rows[m]` into `out`, the rows already standardised.
pub fn combine(rows: &[&[f32]], weights: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for (row, &w) in rows.iter().zip(weights) {
        if w == 0.0 {
            continue;
        }
        for (o, &v) in out.iter_mut().zip(row.iter()) {
            *o += w * v;
        }
    }
}

impl ItemScores for Blend {
    fn items(&self) -> usize {
        self.members[0].items()
    }

    fn score_rows(&self, histories: &[&[u32]]) -> Result<Vec<Vec<f32>>, ScoreError> {
        // The members score the batch side by side, each row standardised where it was made.
        let per_member = self
            .members
            .par_iter()
            .map(|m| {
                let mut rows = m.score_rows(histories)?;
                rows.iter_mut().for_each(|r| standardise(r));
                Ok(rows)
            })
            .collect::<Result<Vec<_>, ScoreError>>()?;
        Ok((0..histories.len())
            .map(|i| {
                let rows: Vec<&[f32]> = per_member.iter().map(|m| m[i].as_slice()).collect();
                let mut out = vec![0f32; self.items()];
                combine(&rows, &self.weights, &mut out);
                out
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member that scores every history with the same row.
    struct Fixed(Vec<f32>);

    impl ItemScores for Fixed {
        fn items(&self) -> usize {
            self.0.len()
        }
        fn score_rows(&self, h: &[&[u32]]) -> Result<Vec<Vec<f32>>, ScoreError> {
            Ok(vec![self.0.clone(); h.len()])
        }
    }

    #[test]
    fn rows_are_standardised_then_weighted() {
        // [1, 2, 3]: mean 2, population sd √(2/3) → [−1.2247, 0, 1.2247].
        let mut row = vec![1.0, 2.0, 3.0];
        standardise(&mut row);
        let z = (1.5f32).sqrt();
        assert!((row[0] + z).abs() < 1e-6 && row[1].abs() < 1e-6 && (row[2] - z).abs() < 1e-6);
        // A member on a 100× scale counts the same once standardised.
        let blend = Blend::new(
            vec![
                Box::new(Fixed(vec![1.0, 2.0, 3.0])),
                Box::new(Fixed(vec![300.0, 200.0, 100.0])),
            ],
            vec![0.75, 0.25],
        )
        .unwrap();
        let out = blend.score_rows(&[&[0]]).unwrap().remove(0);
        let want = [-0.5 * z, 0.0, 0.5 * z];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_blended() {
        let one = || -> Box<dyn ItemScores> { Box::new(Fixed(vec![1.0, 2.0])) };
        assert!(matches!(
            Blend::new(vec![one()], vec![1.0]),
            Err(BlendError::TooFewMembers(1))
        ));
        assert!(matches!(
            Blend::new(vec![one(), one()], vec![1.0]),
            Err(BlendError::WeightCount { .. })
        ));
        assert!(matches!(
            Blend::new(vec![one(), one()], vec![0.0, 0.0]),
            Err(BlendError::BadWeights(_))
        ));
        assert!(matches!(
            Blend::new(vec![one(), Box::new(Fixed(vec![1.0]))], vec![1.0, 1.0]),
            Err(BlendError::ItemsDiffer { index: 1, .. })
        ));
    }
}

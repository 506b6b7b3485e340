//! Training sequences and batches: the cloze objective of BERT4Rec and the next-item objective
//! of SASRec.

use candle_core::{Device, Tensor};
use rand::{Rng, RngExt};

use super::data::SplitUser;
use crate::model::{Architecture, ModelConfig, pad_left};

/// A training batch: left-padded inputs, the flat positions (`row * T + column`) where a loss
/// is taken, and the target item at each.
pub struct Batch {
    pub ids: Tensor,
    pub positions: Tensor,
    pub targets: Tensor,
    /// Number of loss positions.
    pub count: usize,
}

/// The training sequences: per user, the most recent window of training items (`max_len`
/// items for BERT4Rec, `max_len + 1` for SASRec, whose inputs are shifted by one), plus, when
/// `sliding_step > 0`, older windows ending every `sliding_step` items further back.
pub fn training_sequences(
    split: &[SplitUser],
    cfg: &ModelConfig,
    sliding_step: usize,
) -> Vec<Vec<u32>> {
    let window = match cfg.architecture {
        Architecture::Bert4Rec => cfg.max_len,
        Architecture::SasRec => cfg.max_len + 1,
    };
    let min_len = match cfg.architecture {
        Architecture::Bert4Rec => 1,
        Architecture::SasRec => 2,
    };
    let mut out = Vec::new();
    for u in split {
        let s = &u.train;
        let mut end = s.len();
        loop {
            let start = end.saturating_sub(window);
            if end - start >= min_len {
                out.push(s[start..end].to_vec());
            }
            if sliding_step == 0 || start == 0 || end <= sliding_step {
                break;
            }
            end -= sliding_step;
            if end < window {
                // An older window would only repeat a prefix of the one just taken.
                break;
            }
        }
    }
    out
}

/// How a cloze batch masks its sequences (BERT4Rec).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cloze {
    /// Probability that an item is replaced by [MASK].
    pub mask_prob: f64,
    /// Fraction of sequences that must predict their last item.
    pub last_item_prob: f64,
    /// Whether those sequences are first cut at a random length (so that the last item is a
    /// different one each time) and keep their random masks; otherwise only their last item
    /// is masked.
    pub last_item_cut: bool,
}

/// Which items of a [`ClozeSample`] are masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masking {
    /// Each item with probability `mask_prob`.
    Random,
    /// The last item only.
    LastOnly,
    /// Each item with probability `mask_prob`, and the last item always.
    RandomAndLast,
}

/// One training sequence of a cloze epoch: its items (possibly cut) and how it is masked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClozeSample<'a> {
    pub items: &'a [u32],
    pub masking: Masking,
}

/// Draws an epoch's cloze samples, one per sequence. A fraction `last_item_prob` of the
/// sequences must predict their last item, which trains next-item prediction directly: either
/// only that item is masked, or (`last_item_cut`) the sequence is cut at a random length and
/// its new last item is masked besides the random masks. Drawn before batching, so that cut
/// sequences are batched with others of their new length (less padding).
pub fn cloze_samples<'a, R: Rng>(
    seqs: &'a [Vec<u32>],
    cloze: &Cloze,
    rng: &mut R,
) -> Vec<ClozeSample<'a>> {
    let last_item_prob = cloze.last_item_prob.clamp(0.0, 1.0);
    seqs.iter()
        .map(|s| {
            let last = !s.is_empty() && rng.random_bool(last_item_prob);
            match (last, cloze.last_item_cut) {
                (false, _) => ClozeSample {
                    items: s,
                    masking: Masking::Random,
                },
                (true, false) => ClozeSample {
                    items: s,
                    masking: Masking::LastOnly,
                },
                (true, true) => ClozeSample {
                    items: &s[..rng.random_range(1..=s.len())],
                    masking: Masking::RandomAndLast,
                },
            }
        })
        .collect()
}

/// A cloze batch: the items of each sample (drawn by [`cloze_samples`] with the same `cloze`)
/// are replaced by [MASK] as its [`Masking`] says, random masks with probability
/// `cloze.mask_prob`, with at least one masked item per sequence.
pub fn cloze_batch<R: Rng>(
    samples: &[ClozeSample],
    cfg: &ModelConfig,
    cloze: &Cloze,
    rng: &mut R,
) -> candle_core::Result<Batch> {
    let mask_prob = cloze.mask_prob.clamp(0.0, 1.0);
    let mut chosen: Vec<(&[u32], Vec<usize>)> = Vec::with_capacity(samples.len());
    for sample in samples {
        let s = sample.items;
        if s.is_empty() {
            candle_core::bail!("a cloze batch got an empty sequence");
        }
        let end = s.len() - 1;
        let mut masked: Vec<usize> = match sample.masking {
            Masking::LastOnly => vec![end],
            Masking::Random => (0..s.len())
                .filter(|_| rng.random_bool(mask_prob))
                .collect(),
            Masking::RandomAndLast => (0..s.len())
                .filter(|&j| rng.random_bool(mask_prob) || j == end)
                .collect(),
        };
        if masked.is_empty() {
            masked.push(rng.random_range(0..s.len()));
        }
        chosen.push((s, masked));
    }
    let t = chosen.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let mut inputs = Vec::with_capacity(chosen.len());
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for (row, (s, masked)) in chosen.into_iter().enumerate() {
        let offset = row * t + (t - s.len());
        let mut input = s.to_vec();
        for j in masked {
            targets.push(s[j]);
            positions.push((offset + j) as u32);
            input[j] = cfg.mask();
        }
        inputs.push(input);
    }
    finish(&inputs, positions, targets, cfg)
}

/// A next-item batch: inputs are each sequence without its last item, and every input position
/// predicts the item that follows it.
pub fn next_item_batch(seqs: &[&[u32]], cfg: &ModelConfig) -> candle_core::Result<Batch> {
    let inputs: Vec<Vec<u32>> = seqs.iter().map(|s| s[..s.len() - 1].to_vec()).collect();
    let t = inputs.iter().map(Vec::len).max().unwrap_or(0);
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for (row, s) in seqs.iter().enumerate() {
        let n = s.len() - 1;
        let offset = row * t + (t - n);
        for j in 0..n {
            positions.push((offset + j) as u32);
            targets.push(s[j + 1]);
        }
    }
    finish(&inputs, positions, targets, cfg)
}

fn finish(
    inputs: &[Vec<u32>],
    positions: Vec<u32>,
    targets: Vec<u32>,
    cfg: &ModelConfig,
) -> candle_core::Result<Batch> {
    let count = positions.len();
    let device = Device::Cpu;
    Ok(Batch {
        ids: pad_left(inputs, cfg.pad(), &device)?,
        positions: Tensor::from_vec(positions, count, &device)?,
        targets: Tensor::from_vec(targets, count, &device)?,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn cfg(architecture: Architecture, max_len: usize) -> ModelConfig {
        ModelConfig {
            architecture,
            items: 10,
            hidden: 8,
            layers: 1,
            heads: 2,
            max_len,
            dropout: 0.0,
        }
    }

    #[test]
    fn windows_keep_the_most_recent_items() {
        let split = vec![SplitUser {
            user_id: 1,
            train: (0..10).collect(),
            valid: 0,
            test: 0,
        }];
        let c = cfg(Architecture::Bert4Rec, 4);
        assert_eq!(training_sequences(&split, &c, 0), vec![vec![6, 7, 8, 9]]);
        assert_eq!(
            training_sequences(&split, &c, 3),
            vec![vec![6, 7, 8, 9], vec![3, 4, 5, 6], vec![0, 1, 2, 3]]
        );
        let s = cfg(Architecture::SasRec, 4);
        assert_eq!(training_sequences(&split, &s, 0), vec![vec![5, 6, 7, 8, 9]]);
    }

    fn random(items: &[u32]) -> ClozeSample<'_> {
        ClozeSample {
            items,
            masking: Masking::Random,
        }
    }

    #[test]
    fn cloze_masks_at_least_one_and_targets_the_original() {
        let c = cfg(Architecture::Bert4Rec, 8);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let a = [1u32, 2, 3];
        let b = [4u32, 5, 6, 7, 8];
        let plain = Cloze {
            mask_prob: 0.0,
            last_item_prob: 0.0,
            last_item_cut: false,
        };
        let batch = cloze_batch(&[random(&a), random(&b)], &c, &plain, &mut rng).unwrap();
        assert_eq!(batch.count, 2);
        let ids = batch.ids.to_vec2::<u32>().unwrap();
        let pos = batch.positions.to_vec1::<u32>().unwrap();
        let tgt = batch.targets.to_vec1::<u32>().unwrap();
        for (p, t) in pos.iter().zip(&tgt) {
            let (r, col) = (*p as usize / 5, *p as usize % 5);
            assert_eq!(ids[r][col], c.mask());
            let orig: &[u32] = if r == 0 { &a } else { &b };
            assert_eq!(orig[col + orig.len() - 5], *t);
        }
        assert_eq!(&ids[0][..2], &[c.pad(), c.pad()]);

        let last_only = ClozeSample {
            items: &a,
            masking: Masking::LastOnly,
        };
        let half = Cloze {
            mask_prob: 0.5,
            ..plain
        };
        let last = cloze_batch(&[last_only], &c, &half, &mut rng).unwrap();
        assert_eq!(
            last.ids.to_vec2::<u32>().unwrap(),
            vec![vec![1, 2, c.mask()]]
        );
        assert_eq!(last.targets.to_vec1::<u32>().unwrap(), vec![3]);
    }

    #[test]
    fn samples_follow_the_last_item_share_and_the_cut() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let seqs: Vec<Vec<u32>> = (0..2000).map(|_| (0..30).collect()).collect();
        let plain = Cloze {
            mask_prob: 0.2,
            last_item_prob: 0.25,
            last_item_cut: false,
        };
        let drawn = cloze_samples(&seqs, &plain, &mut rng);
        let last = drawn
            .iter()
            .filter(|s| s.masking == Masking::LastOnly)
            .count();
        assert!((400..600).contains(&last), "{last} of 2000 at share 0.25");
        assert!(drawn.iter().all(|s| s.items.len() == 30));
        let cut = Cloze {
            last_item_cut: true,
            ..plain
        };
        let drawn = cloze_samples(&seqs, &cut, &mut rng);
        for s in &drawn {
            match s.masking {
                Masking::Random => assert_eq!(s.items.len(), 30),
                Masking::RandomAndLast => assert!((1..=30).contains(&s.items.len())),
                Masking::LastOnly => panic!("a cut sample keeps its random masks"),
            }
        }
        let cut_lengths: std::collections::BTreeSet<usize> = drawn
            .iter()
            .filter(|s| s.masking == Masking::RandomAndLast)
            .map(|s| s.items.len())
            .collect();
        assert!(cut_lengths.len() > 20, "cuts vary: {cut_lengths:?}");
    }

    #[test]
    fn cut_sequences_end_at_a_masked_item_of_varying_position() {
        let c = cfg(Architecture::Bert4Rec, 20);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let seqs = vec![(0..20).collect::<Vec<u32>>()];
        let cut = Cloze {
            mask_prob: 0.2,
            last_item_prob: 1.0,
            last_item_cut: true,
        };
        let mut ends = std::collections::BTreeSet::new();
        let mut most_targets = 0;
        for _ in 0..50 {
            let samples = cloze_samples(&seqs, &cut, &mut rng);
            let batch = cloze_batch(&samples, &c, &cut, &mut rng).unwrap();
            let ids = batch.ids.to_vec2::<u32>().unwrap().remove(0);
            let pos = batch.positions.to_vec1::<u32>().unwrap();
            let tgt = batch.targets.to_vec1::<u32>().unwrap();
            // The cut keeps a prefix, whose last item is always a target.
            let len = ids.len();
            assert_eq!(ids[len - 1], c.mask());
            assert!(pos.contains(&(len as u32 - 1)));
            for (p, t) in pos.iter().zip(&tgt) {
                assert_eq!(ids[*p as usize], c.mask());
                assert_eq!(
                    seqs[0][*p as usize], *t,
                    "targets are the prefix's own items"
                );
            }
            ends.insert(len);
            most_targets = most_targets.max(tgt.len());
        }
        assert!(ends.len() > 10, "cuts vary: {ends:?}");
        assert!(
            most_targets > 2,
            "the random masks are kept besides the last item"
        );
    }

    #[test]
    fn next_item_targets_are_shifted_inputs() {
        let c = cfg(Architecture::SasRec, 8);
        let a = [1u32, 2, 3];
        let b = [4u32, 5];
        let batch = next_item_batch(&[&a, &b], &c).unwrap();
        assert_eq!(
            batch.ids.to_vec2::<u32>().unwrap(),
            vec![vec![1, 2], vec![c.pad(), 4]]
        );
        assert_eq!(batch.positions.to_vec1::<u32>().unwrap(), vec![0, 1, 3]);
        assert_eq!(batch.targets.to_vec1::<u32>().unwrap(), vec![2, 3, 5]);
    }
}

//! An epoch's batches: the training sequences, drawn in a new order each epoch, in batches of
//! similar lengths, each split into the shards of one step.

use rand::seq::SliceRandom;

use super::batch::{Batch, Cloze, ClozeSample, cloze_batch, cloze_samples, next_item_batch};
use super::settings::TrainSettings;
use super::step::SHARDS;
use crate::model::{Architecture, ModelConfig};

/// Batches per length-sorting pool in [`length_bucketed_batches`].
const BUCKET_POOL: usize = 50;

/// Draws each epoch's batches from the run's training sequences.
pub(super) struct Sampler {
    cfg: ModelConfig,
    samples: Vec<Vec<u32>>,
    cloze: Cloze,
    batch_size: usize,
}

/// One epoch's draw: BERT4Rec's cloze samples (cut and masked as drawn) and the batches, as
/// indices into the samples.
pub(super) struct Epoch<'s> {
    cloze: Vec<ClozeSample<'s>>,
    pub batches: Vec<Vec<usize>>,
}

impl Sampler {
    /// A sampler over `samples` (the training sequences) for a model of `cfg`.
    pub(super) fn new(samples: Vec<Vec<u32>>, cfg: &ModelConfig, settings: &TrainSettings) -> Self {
        let objective = &settings.objective;
        Self {
            cfg: cfg.clone(),
            samples,
            cloze: Cloze {
                mask_prob: objective.mask_prob,
                last_item_prob: objective.last_item_prob,
                last_item_cut: objective.last_item_cut,
            },
            batch_size: settings.optimiser.batch_size,
        }
    }

    /// Training sequences in an epoch.
    pub(super) fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there is nothing to train on.
    pub(super) fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Steps in an epoch.
    pub(super) fn steps_per_epoch(&self) -> usize {
        self.samples.len().div_ceil(self.batch_size)
    }

    /// Draws an epoch. BERT4Rec draws its cuts first, so that cut sequences are batched by
    /// their new length.
    pub(super) fn epoch<R: rand::Rng>(&self, rng: &mut R) -> Epoch<'_> {
        let (cloze, lengths): (Vec<ClozeSample>, Vec<usize>) = match self.cfg.architecture {
            Architecture::Bert4Rec => {
                let drawn = cloze_samples(&self.samples, &self.cloze, rng);
                let lengths = drawn.iter().map(|s| s.items.len()).collect();
                (drawn, lengths)
            }
            Architecture::SasRec => (Vec::new(), self.samples.iter().map(Vec::len).collect()),
        };
        let batches = length_bucketed_batches(&lengths, self.batch_size, rng);
        Epoch { cloze, batches }
    }

    /// The shards of the batch `batch` of `epoch` (BERT4Rec masks them here).
    pub(super) fn shards<R: rand::Rng>(
        &self,
        epoch: &Epoch,
        batch: &[usize],
        rng: &mut R,
    ) -> candle_core::Result<Vec<Batch>> {
        let mut shards = Vec::with_capacity(SHARDS);
        for part in batch.chunks(batch.len().div_ceil(SHARDS).max(1)) {
            shards.push(match self.cfg.architecture {
                Architecture::Bert4Rec => {
                    let part: Vec<ClozeSample> = part.iter().map(|&i| epoch.cloze[i]).collect();
                    cloze_batch(&part, &self.cfg, &self.cloze, rng)?
                }
                Architecture::SasRec => {
                    let seqs: Vec<&[u32]> =
                        part.iter().map(|&i| self.samples[i].as_slice()).collect();
                    next_item_batch(&seqs, &self.cfg)?
                }
            });
        }
        Ok(shards)
    }
}

/// Shuffled batches of sample indices (samples of the given `lengths`), each drawn from a run of
/// similar lengths: the samples are shuffled, cut into pools of [`BUCKET_POOL`] batches, sorted
/// by length inside each pool and cut into batches, and the batches are shuffled. Padding (and
/// the quadratic attention over it) shrinks to a few items per batch, while every epoch still
/// sees a new order.
fn length_bucketed_batches<R: rand::Rng>(
    lengths: &[usize],
    batch_size: usize,
    rng: &mut R,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(batch_size));
    for pool in order.chunks_mut(batch_size * BUCKET_POOL) {
        pool.sort_by_key(|&i| lengths[i]);
        batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::length_bucketed_batches;

    #[test]
    fn bucketed_batches_cover_every_sample_once_with_similar_lengths() {
        use rand::SeedableRng;
        let lengths: Vec<usize> = (0..1000).map(|i| 1 + (i * 37) % 200).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let batches = length_bucketed_batches(&lengths, 64, &mut rng);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 64));
        // Padding: every batch is padded to its longest member; sorting keeps that close to
        // the real lengths (a random split would pad nearly everything to ~200).
        let padded: usize = batches
            .iter()
            .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap_or(0))
            .sum();
        let real: usize = lengths.iter().sum();
        assert!(padded < real + real / 5, "padded {padded} vs real {real}");
        let again = length_bucketed_batches(&lengths, 64, &mut rng);
        assert_ne!(batches, again, "each epoch gets a new order");
    }
}

//! What a training run is told, and what it reports back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::MovieLensVersion;
use crate::model::Architecture;
use crate::model::checkpoint::DataSettings;
use crate::train::TrainError;
use crate::train::item_init::ItemInit;

/// Settings of one training run. [`TrainOptions::tuned`] gives the defaults that scored best on
/// validation for a model and dataset (see the README); [`Default`] is BERT4Rec's on ml-100k.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    pub dataset: MovieLensVersion,
    /// Folder of the catalogues (`<root>/<version>.db`).
    pub database_root: PathBuf,
    /// Folder under which the run's checkpoint directory is created.
    pub checkpoint_root: PathBuf,
    pub architecture: Architecture,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_len: usize,
    pub dropout: f32,
    /// Probability that an item is masked (BERT4Rec).
    pub mask_prob: f64,
    /// Fraction of training sequences that must predict their last item (BERT4Rec).
    pub last_item_prob: f64,
    /// Cut those sequences at a random length and keep their random masks, instead of masking
    /// only their last item (BERT4Rec).
    #[serde(default)]
    pub last_item_cut: bool,
    pub lr: f64,
    pub weight_decay: f64,
    /// AdamW's first-moment decay (beta1).
    #[serde(default = "default_adam_beta1")]
    pub adam_beta1: f64,
    /// AdamW's second-moment decay (beta2).
    #[serde(default = "default_adam_beta2")]
    pub adam_beta2: f64,
    /// Linear warm-up steps, then linear decay to 0 at the last epoch.
    pub warmup_steps: usize,
    /// Global gradient-norm clip.
    pub clip_norm: f64,
    pub batch_size: usize,
    pub epochs: usize,
    /// Evaluate on validation every this many epochs.
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement.
    pub patience: usize,
    pub seed: u64,
    /// Sampled softmax: each batch scores its targets against this many uniformly drawn
    /// negatives instead of the full vocabulary (0: full softmax). Bounds memory on large
    /// catalogues.
    #[serde(default)]
    pub negatives: usize,
    /// Older windows every this many items of long histories (0: only the most recent).
    pub sliding_step: usize,
    /// Label smoothing of the full-softmax cross-entropy, in `[0, 1)` (0: none).
    #[serde(default)]
    pub label_smoothing: f32,
    /// How the loss positions of one step weigh against those of another.
    #[serde(default = "LossWeighting::before_the_option")]
    pub loss_weighting: LossWeighting,
    /// Where the item embeddings start.
    #[serde(default = "ItemInit::before_the_option")]
    pub item_init: ItemInit,
    /// The item embeddings' learning rate as a multiple of `lr`.
    #[serde(default = "default_item_lr_scale")]
    pub item_lr_scale: f64,
    /// Wall-clock budget in seconds; training stops (keeping the best checkpoint) when spent.
    pub time_budget_secs: Option<u64>,
    /// Continue from this checkpoint's weights and epoch.
    pub resume: Option<PathBuf>,
    pub data: DataSettings,
    /// Show an indicatif progress bar.
    pub progress: bool,
}

/// The item table learns at `lr`, also what runs recorded before the option trained with.
fn default_item_lr_scale() -> f64 {
    1.0
}

/// AdamW's usual beta1, also what runs recorded before the option trained with.
fn default_adam_beta1() -> f64 {
    0.9
}

/// AdamW's usual beta2, also what runs recorded before the option trained with.
fn default_adam_beta2() -> f64 {
    0.999
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            dataset: MovieLensVersion::Ml100k,
            database_root: PathBuf::from("resources/db"),
            checkpoint_root: PathBuf::from("resources/checkpoints"),
            architecture: Architecture::Bert4Rec,
            hidden: 64,
            layers: 2,
            heads: 2,
            max_len: 200,
            dropout: 0.1,
            mask_prob: 0.2,
            last_item_prob: 0.5,
            last_item_cut: true,
            lr: 1e-3,
            weight_decay: 0.01,
            adam_beta1: default_adam_beta1(),
            adam_beta2: default_adam_beta2(),
            warmup_steps: 100,
            clip_norm: 5.0,
            batch_size: 16,
            epochs: 200,
            eval_every: 5,
            patience: 5,
            seed: 42,
            negatives: 0,
            sliding_step: 0,
            label_smoothing: 0.0,
            loss_weighting: LossWeighting::Batch,
            item_init: ItemInit::Random,
            item_lr_scale: default_item_lr_scale(),
            time_budget_secs: None,
            resume: None,
            data: DataSettings::default(),
            progress: false,
        }
    }
}

impl TrainOptions {
    /// Rejects settings no run can train with, naming the setting.
    pub fn check(&self) -> Result<(), TrainError> {
        if self.epochs == 0 || self.batch_size == 0 || self.eval_every == 0 {
            return Err(TrainError::Invalid(
                "epochs, batch size and eval-every must be positive".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(TrainError::Invalid(format!(
                "label smoothing must be in [0, 1), not {}",
                self.label_smoothing
            )));
        }
        for (name, beta) in [("beta1", self.adam_beta1), ("beta2", self.adam_beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(TrainError::Invalid(format!(
                    "adam {name} must be in [0, 1), not {beta}"
                )));
            }
        }
        if !(self.item_lr_scale > 0.0 && self.item_lr_scale.is_finite()) {
            return Err(TrainError::Invalid(format!(
                "item lr scale must be positive, not {}",
                self.item_lr_scale
            )));
        }
        if self.label_smoothing > 0.0 && self.negatives > 0 {
            return Err(TrainError::Invalid(
                "label smoothing applies to the full softmax only: drop --negatives or --label-smoothing"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The defaults for `architecture` on `dataset`: [`Default`]'s settings, except where
    /// another value scored better on validation (README, "Defaults"). SASRec on ml-100k
    /// overfits with dropout 0.1 and gains from the older windows of long histories: dropout
    /// 0.3 and `sliding_step` 200. On ml-100k both models score higher with every loss
    /// position weighing the same ([`LossWeighting::Token`]). BERT4Rec on ml-latest-small starts
    /// its item embeddings from the training sequences' co-occurrences ([`ItemInit`]) and moves
    /// them at a tenth of the learning rate, so that training keeps more of that start.
    pub fn tuned(architecture: Architecture, dataset: MovieLensVersion) -> Self {
        let mut opts = Self {
            architecture,
            dataset,
            ..Self::default()
        };
        if dataset == MovieLensVersion::Ml100k {
            opts.loss_weighting = LossWeighting::Token;
        }
        if (architecture, dataset) == (Architecture::Bert4Rec, MovieLensVersion::LatestSmall) {
            opts.item_init = ItemInit::Cooccurrence;
            opts.item_lr_scale = 0.1;
        }
        if (architecture, dataset) == (Architecture::SasRec, MovieLensVersion::Ml100k) {
            opts.dropout = 0.3;
            opts.sliding_step = 200;
        }
        opts
    }
}

/// How the loss positions of one training step weigh against those of another. Batches are
/// drawn by length (`length_bucketed_batches`), so the number of loss positions per step varies
/// several-fold between a batch of short sequences and one of long sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossWeighting {
    /// Every loss position weighs the same over the run: a step's mean loss is scaled by its
    /// positions over the running mean of positions per step.
    Token,
    /// Every step's mean loss weighs the same, so a position in a batch of short sequences
    /// weighs more than one in a batch of long sequences.
    Batch,
}

impl LossWeighting {
    /// What runs saved before the option existed used.
    pub fn before_the_option() -> Self {
        Self::Batch
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The checkpoint directory holding the best weights.
    pub checkpoint: PathBuf,
    pub best_epoch: usize,
    pub best_valid_ndcg10: f64,
    pub best_valid_hr10: f64,
    /// Epochs run in this call.
    pub epochs_run: usize,
    pub seconds: f64,
    /// Whether the time budget ended the run.
    pub stopped_by_budget: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasrec_on_ml100k_has_its_own_defaults_and_the_rest_keep_the_common_ones() {
        let sasrec = TrainOptions::tuned(Architecture::SasRec, MovieLensVersion::Ml100k);
        assert_eq!(sasrec.architecture, Architecture::SasRec);
        assert_eq!(sasrec.dataset, MovieLensVersion::Ml100k);
        assert_eq!((sasrec.dropout, sasrec.sliding_step), (0.3, 200));
        assert_eq!(sasrec.loss_weighting, LossWeighting::Token);
        let bert = TrainOptions::tuned(Architecture::Bert4Rec, MovieLensVersion::Ml100k);
        assert_eq!((bert.dropout, bert.sliding_step), (0.1, 0));
        assert_eq!(bert.loss_weighting, LossWeighting::Token);
        let common = TrainOptions::default();
        assert_eq!((common.dropout, common.sliding_step), (0.1, 0));
        for (arch, version) in [
            (Architecture::Bert4Rec, MovieLensVersion::LatestSmall),
            (Architecture::SasRec, MovieLensVersion::LatestSmall),
        ] {
            let opts = TrainOptions::tuned(arch, version);
            assert_eq!((opts.architecture, opts.dataset), (arch, version));
            assert_eq!(
                (opts.dropout, opts.sliding_step),
                (0.1, 0),
                "{arch} {version}"
            );
            assert_eq!(opts.hidden, common.hidden);
            assert_eq!(opts.mask_prob, common.mask_prob);
            assert_eq!(opts.loss_weighting, LossWeighting::Batch);
        }
        assert_eq!(bert.item_init, ItemInit::Random);
        assert_eq!(sasrec.item_init, ItemInit::Random);
        let small = |arch| TrainOptions::tuned(arch, MovieLensVersion::LatestSmall);
        let (bert_small, sasrec_small) =
            (small(Architecture::Bert4Rec), small(Architecture::SasRec));
        assert_eq!(bert_small.item_init, ItemInit::Cooccurrence);
        assert_eq!(sasrec_small.item_init, ItemInit::Random);
        assert_eq!(bert_small.item_lr_scale, 0.1);
        for others in [&bert, &sasrec, &sasrec_small] {
            assert_eq!(others.item_lr_scale, 1.0);
        }
    }

    /// Checkpoints saved before `loss_weighting` existed were trained with batch weighting and
    /// say so when read back; the field round-trips by name.
    #[test]
    fn options_without_a_loss_weighting_read_back_as_batch_weighting() {
        let tuned = TrainOptions::tuned(Architecture::SasRec, MovieLensVersion::Ml100k);
        let mut saved = serde_json::to_value(tuned).unwrap();
        assert_eq!(saved["loss_weighting"], "token");
        if let Some(fields) = saved.as_object_mut() {
            fields.remove("loss_weighting");
        }
        let old: TrainOptions = serde_json::from_value(saved).unwrap();
        assert_eq!(old.loss_weighting, LossWeighting::Batch);
    }

    /// Checkpoints saved before `item_init` existed started from random item embeddings and say
    /// so when read back; the field round-trips by name.
    #[test]
    fn options_without_an_item_init_read_back_as_random() {
        let tuned = TrainOptions::tuned(Architecture::Bert4Rec, MovieLensVersion::LatestSmall);
        let mut saved = serde_json::to_value(tuned).unwrap();
        assert_eq!(saved["item_init"], "cooccurrence");
        let back: TrainOptions = serde_json::from_value(saved.clone()).unwrap();
        assert_eq!(back.item_init, ItemInit::Cooccurrence);
        if let Some(fields) = saved.as_object_mut() {
            fields.remove("item_init");
        }
        let old: TrainOptions = serde_json::from_value(saved).unwrap();
        assert_eq!(old.item_init, ItemInit::Random);
    }

    /// Settings no run can use are refused with the setting's name; runs saved before
    /// `adam_beta1` and `adam_beta2` existed read back with AdamW's usual 0.9 and 0.999.
    #[test]
    fn unusable_settings_are_refused_by_name_and_old_runs_read_back_the_betas() {
        assert!(TrainOptions::default().check().is_ok());
        let refused = |opts: TrainOptions| match opts.check() {
            Err(e) => e.to_string(),
            Ok(()) => String::from("accepted"),
        };
        for bad in [1.0, -0.1, f64::NAN] {
            let message = refused(TrainOptions {
                adam_beta2: bad,
                ..TrainOptions::default()
            });
            assert!(message.contains("adam beta2"), "{bad}: {message}");
            let message = refused(TrainOptions {
                adam_beta1: bad,
                ..TrainOptions::default()
            });
            assert!(message.contains("adam beta1"), "{bad}: {message}");
        }
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let message = refused(TrainOptions {
                item_lr_scale: bad,
                ..TrainOptions::default()
            });
            assert!(message.contains("item lr scale"), "{bad}: {message}");
        }
        let message = refused(TrainOptions {
            batch_size: 0,
            ..TrainOptions::default()
        });
        assert!(message.contains("batch size"), "{message}");

        let mut saved = serde_json::to_value(TrainOptions {
            adam_beta1: 0.8,
            adam_beta2: 0.98,
            ..TrainOptions::default()
        })
        .unwrap();
        assert_eq!(
            (&saved["adam_beta1"], &saved["adam_beta2"]),
            (&0.8.into(), &0.98.into())
        );
        if let Some(fields) = saved.as_object_mut() {
            fields.remove("adam_beta1");
            fields.remove("adam_beta2");
        }
        let old: TrainOptions = serde_json::from_value(saved).unwrap();
        assert_eq!((old.adam_beta1, old.adam_beta2), (0.9, 0.999));
    }

    /// Runs saved before the item table's learning-rate scale existed trained it at the common
    /// rate: they read back that way; the field round-trips by name.
    #[test]
    fn options_without_an_item_lr_scale_read_back_as_one() {
        let mut saved = serde_json::to_value(TrainOptions {
            item_lr_scale: 0.3,
            ..TrainOptions::default()
        })
        .unwrap();
        let back: TrainOptions = serde_json::from_value(saved.clone()).unwrap();
        assert_eq!(back.item_lr_scale, 0.3);
        if let Some(fields) = saved.as_object_mut() {
            fields.remove("item_lr_scale");
        }
        let old: TrainOptions = serde_json::from_value(saved).unwrap();
        assert_eq!(old.item_lr_scale, 1.0);
    }
}

//! The settings of a training recipe, in five groups. Each group's [`Default`] is the one source
//! of its defaults; a preset (`resources/presets/`), a `--config` file and the command line each
//! override some of them (see [`super::presets`]). Every field is also a flag of `movierec
//! train`: the field's doc comment is its help.

use serde::{Deserialize, Serialize};

use crate::model::checkpoint::DataSettings;
use crate::train::TrainError;
use crate::train::item_init::ItemInit;

/// Everything a run trains with, apart from where its data and checkpoints live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSettings {
    /// Random seed (initialisation, masking, dropout, order).
    #[arg(long)]
    pub seed: u64,
    #[command(flatten, next_help_heading = "Model")]
    pub model: ModelOptions,
    #[command(flatten, next_help_heading = "Objective")]
    pub objective: ObjectiveOptions,
    #[command(flatten, next_help_heading = "Optimiser")]
    pub optimiser: OptimiserOptions,
    #[command(flatten, next_help_heading = "Schedule")]
    pub schedule: ScheduleOptions,
    #[command(flatten, next_help_heading = "Data")]
    pub data: DataOptions,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            seed: 42,
            model: ModelOptions::default(),
            objective: ObjectiveOptions::default(),
            optimiser: OptimiserOptions::default(),
            schedule: ScheduleOptions::default(),
            data: DataOptions::default(),
        }
    }
}

/// The network's shape and where its item embeddings start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct ModelOptions {
    /// Hidden size.
    #[arg(long)]
    pub hidden: usize,
    /// Transformer blocks.
    #[arg(long)]
    pub layers: usize,
    /// Attention heads.
    #[arg(long)]
    pub heads: usize,
    /// Longest input sequence ([MASK] included).
    #[arg(long)]
    pub max_len: usize,
    /// Dropout probability.
    #[arg(long)]
    pub dropout: f32,
    /// Where the item embeddings start: `random`, or `cooccurrence` (the leading eigenvectors of
    /// the training sequences' co-occurrence counts of items at most three apart).
    #[arg(long, value_enum)]
    pub item_init: ItemInit,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            hidden: 64,
            layers: 2,
            heads: 2,
            max_len: 200,
            dropout: 0.1,
            item_init: ItemInit::Random,
        }
    }
}

/// What the loss asks of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectiveOptions {
    /// Probability that an item is masked (BERT4Rec).
    #[arg(long)]
    pub mask_prob: f64,
    /// Fraction of sequences that must predict their last item (BERT4Rec).
    #[arg(long)]
    pub last_item_prob: f64,
    /// Cut those sequences at a random length and keep their random masks (true), or mask only
    /// their last item (false) (BERT4Rec).
    #[arg(long, action = clap::ArgAction::Set)]
    pub last_item_cut: bool,
    /// Sampled softmax over N uniformly drawn negatives per batch instead of all items (0: full
    /// softmax); bounds training memory on large catalogues (ml-25m scale).
    #[arg(long)]
    pub negatives: usize,
    /// How the loss positions of one step weigh against another's: `token` (every position the
    /// same over the run) or `batch` (every step's mean the same).
    #[arg(long, value_enum)]
    pub loss_weighting: LossWeighting,
}

impl Default for ObjectiveOptions {
    fn default() -> Self {
        Self {
            mask_prob: 0.2,
            last_item_prob: 0.5,
            last_item_cut: true,
            negatives: 0,
            loss_weighting: LossWeighting::Batch,
        }
    }
}

/// AdamW and its parameter groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct OptimiserOptions {
    /// Peak learning rate (AdamW).
    #[arg(long)]
    pub lr: f64,
    /// AdamW weight decay (matrices and the item table only).
    #[arg(long)]
    pub weight_decay: f64,
    /// The item embeddings' learning rate as a multiple of `--lr`.
    #[arg(long)]
    pub item_lr_scale: f64,
    /// Global gradient-norm clip (0: none).
    #[arg(long)]
    pub clip_norm: f64,
    /// Sequences per batch.
    #[arg(long)]
    pub batch_size: usize,
}

impl Default for OptimiserOptions {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            weight_decay: 0.01,
            item_lr_scale: 1.0,
            clip_norm: 5.0,
            batch_size: 16,
        }
    }
}

/// How long a run trains, how the learning rate moves, and when it is checked. The learning
/// rate depends on the step alone, so a machine twice as fast trains the same schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleOptions {
    /// Epochs: the learning rate warms up linearly, then decays linearly to the end of the last.
    #[arg(long)]
    pub epochs: usize,
    /// Linear warm-up steps.
    #[arg(long)]
    pub warmup_steps: usize,
    /// Evaluate on validation every N epochs (and after the last).
    #[arg(long)]
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement.
    #[arg(long)]
    pub patience: usize,
    /// Cut the run short after this many seconds of wall-clock time, keeping the best
    /// checkpoint; the schedule stays the one of `--epochs`, and the run records the cut.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_budget_secs: Option<u64>,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        Self {
            epochs: 200,
            warmup_steps: 100,
            eval_every: 3,
            patience: 100,
            time_budget_secs: None,
        }
    }
}

/// Which ratings train, and how long histories become training sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct DataOptions {
    /// Keep only ratings at or above this value (default: all).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_rating: Option<f32>,
    /// Drop users with fewer interactions.
    #[arg(long)]
    pub min_seq_len: usize,
    /// Drop movies with fewer interactions (done first).
    #[arg(long)]
    pub min_item_count: usize,
    /// Also train on older windows of long histories, every N items (0: off).
    #[arg(long)]
    pub sliding_step: usize,
}

impl Default for DataOptions {
    fn default() -> Self {
        let filters = DataSettings::default();
        Self {
            min_rating: filters.min_rating,
            min_seq_len: filters.min_seq_len,
            min_item_count: filters.min_item_count,
            sliding_step: 0,
        }
    }
}

impl DataOptions {
    /// The filters a checkpoint records, so that evaluation rebuilds the same split.
    pub fn filters(&self) -> DataSettings {
        DataSettings {
            min_rating: self.min_rating,
            min_seq_len: self.min_seq_len,
            min_item_count: self.min_item_count,
        }
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

impl TrainSettings {
    /// Rejects settings no run can train with, naming the setting.
    pub fn check(&self) -> Result<(), TrainError> {
        let positive = [
            ("epochs", self.schedule.epochs),
            ("batch size", self.optimiser.batch_size),
            ("eval-every", self.schedule.eval_every),
            ("hidden", self.model.hidden),
            ("layers", self.model.layers),
            ("heads", self.model.heads),
            ("max len", self.model.max_len),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(TrainError::Invalid(format!("{name} must be positive")));
            }
        }
        if !self.model.hidden.is_multiple_of(self.model.heads) {
            return Err(TrainError::Invalid(format!(
                "hidden ({}) must be a multiple of heads ({})",
                self.model.hidden, self.model.heads
            )));
        }
        let unit = [
            ("dropout", f64::from(self.model.dropout)),
            ("mask prob", self.objective.mask_prob),
            ("last item prob", self.objective.last_item_prob),
        ];
        for (name, value) in unit {
            if !(0.0..=1.0).contains(&value) {
                return Err(TrainError::Invalid(format!(
                    "{name} must be in [0, 1], not {value}"
                )));
            }
        }
        let rate = &self.optimiser;
        for (name, value) in [("lr", rate.lr), ("item lr scale", rate.item_lr_scale)] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(TrainError::Invalid(format!(
                    "{name} must be positive, not {value}"
                )));
            }
        }
        for (name, value) in [
            ("weight decay", rate.weight_decay),
            ("clip norm", rate.clip_norm),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(TrainError::Invalid(format!(
                    "{name} must be zero or positive, not {value}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(settings: &TrainSettings) -> String {
        match settings.check() {
            Err(e) => e.to_string(),
            Ok(()) => String::from("accepted"),
        }
    }

    #[test]
    fn the_defaults_are_usable() {
        assert_eq!(refused(&TrainSettings::default()), "accepted");
    }

    /// Settings no run can use are refused with the setting's name.
    #[test]
    fn unusable_settings_are_refused_by_name() {
        let mut s = TrainSettings::default();
        s.optimiser.batch_size = 0;
        assert!(refused(&s).contains("batch size"), "{}", refused(&s));
        let mut s = TrainSettings::default();
        s.schedule.epochs = 0;
        assert!(refused(&s).contains("epochs"), "{}", refused(&s));
        let mut s = TrainSettings::default();
        s.model.heads = 3;
        assert!(refused(&s).contains("multiple of heads"), "{}", refused(&s));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut s = TrainSettings::default();
            s.optimiser.item_lr_scale = bad;
            assert!(
                refused(&s).contains("item lr scale"),
                "{bad}: {}",
                refused(&s)
            );
            let mut s = TrainSettings::default();
            s.optimiser.lr = bad;
            assert!(refused(&s).starts_with("lr must"), "{bad}: {}", refused(&s));
        }
        for bad in [-0.1, 1.5, f64::NAN] {
            let mut s = TrainSettings::default();
            s.objective.mask_prob = bad;
            assert!(refused(&s).contains("mask prob"), "{bad}: {}", refused(&s));
        }
        let mut s = TrainSettings::default();
        s.optimiser.weight_decay = -0.01;
        assert!(refused(&s).contains("weight decay"), "{}", refused(&s));
    }

    /// The data group records exactly the filters evaluation needs to rebuild the split.
    #[test]
    fn the_data_group_records_its_filters() {
        let data = DataOptions {
            min_rating: Some(3.5),
            min_seq_len: 7,
            min_item_count: 2,
            sliding_step: 200,
        };
        assert_eq!(
            data.filters(),
            DataSettings {
                min_rating: Some(3.5),
                min_seq_len: 7,
                min_item_count: 2,
            }
        );
        assert_eq!(DataOptions::default().filters(), DataSettings::default());
    }
}

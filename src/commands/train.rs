//! `movierec train`.

use std::io::IsTerminal;
use std::path::PathBuf;

use movierec::config::{CatalogueSettings, CheckpointSettings};
use movierec::model::Architecture;
use movierec::model::checkpoint::DataSettings;
use movierec::train::{ItemInit, LossWeighting, TrainOptions, train};

/// Arguments of `movierec train`. Defaults are the tuned ones (see the README); those that
/// depend on the model and dataset are options, filled in by [`TrainOptions::tuned`].
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub catalogue: CatalogueSettings,
    #[command(flatten)]
    pub checkpoints: CheckpointSettings,
    /// Model type.
    #[arg(long, value_enum, default_value = "bert4rec")]
    pub model: Architecture,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Hidden size.
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 2)]
    pub heads: usize,
    /// Longest input sequence ([MASK] included).
    #[arg(long, default_value_t = 200)]
    pub max_len: usize,
    /// Dropout probability [default: 0.1; SASRec on ml-100k: 0.3].
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Probability that an item is masked (BERT4Rec).
    #[arg(long, default_value_t = 0.2)]
    pub mask_prob: f64,
    /// Fraction of sequences that must predict their last item (BERT4Rec).
    #[arg(long, default_value_t = 0.5)]
    pub last_item_prob: f64,
    /// Cut those sequences at a random length and keep their random masks (true), or mask
    /// only their last item (false) (BERT4Rec).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub last_item_cut: bool,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// AdamW weight decay (matrices only).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// AdamW's first-moment decay (beta1).
    #[arg(long, default_value_t = 0.9)]
    pub adam_beta1: f64,
    /// AdamW's second-moment decay (beta2).
    #[arg(long, default_value_t = 0.999)]
    pub adam_beta2: f64,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 100)]
    pub warmup_steps: usize,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 5.0)]
    pub clip_norm: f64,
    /// Sequences per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Evaluate on validation every N epochs.
    #[arg(long, default_value_t = 5)]
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement.
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// Random seed (initialisation, masking, dropout, order).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Sampled softmax over N uniformly drawn negatives per batch instead of all items (0: full
    /// softmax); bounds training memory on large catalogues (ml-25m scale).
    #[arg(long, default_value_t = 0)]
    pub negatives: usize,
    /// Also train on older windows of long histories, every N items (0: off) [default: 0;
    /// SASRec on ml-100k: 200].
    #[arg(long)]
    pub sliding_step: Option<usize>,
    /// Label smoothing of the cross-entropy (full softmax only), in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f32,
    /// How the loss positions of one step weigh against another's: `token` (every position
    /// the same over the run) or `batch` (every step's mean the same) [default: batch;
    /// ml-100k: token].
    #[arg(long, value_enum)]
    pub loss_weighting: Option<LossWeighting>,
    /// Where the item embeddings start: `random`, or `cooccurrence` (the leading eigenvectors
    /// of the training sequences' co-occurrence counts of items at most three apart) [default:
    /// random; BERT4Rec on ml-latest-small: cooccurrence].
    #[arg(long, value_enum)]
    pub item_init: Option<ItemInit>,
    /// The item embeddings' learning rate as a multiple of `--lr` [default: 1; BERT4Rec on
    /// ml-latest-small: 0.1].
    #[arg(long)]
    pub item_lr_scale: Option<f64>,
    /// Stop after this many seconds of wall-clock time, keeping the best checkpoint.
    #[arg(long)]
    pub time_budget_secs: Option<u64>,
    /// Continue from this checkpoint directory.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Keep only ratings at or above this value (default: all).
    #[arg(long)]
    pub min_rating: Option<f32>,
    /// Drop users with fewer interactions.
    #[arg(long, default_value_t = 5)]
    pub min_seq_len: usize,
    /// Drop movies with fewer interactions (done first).
    #[arg(long, default_value_t = 1)]
    pub min_item_count: usize,
}

impl TrainArgs {
    /// The run's settings: the flags given, and the model's and dataset's tuned values for the
    /// others.
    pub fn options(self) -> TrainOptions {
        let tuned = TrainOptions::tuned(self.model, self.catalogue.version);
        TrainOptions {
            dataset: self.catalogue.version,
            database_root: self.catalogue.database_root,
            checkpoint_root: self.checkpoints.checkpoint_root,
            architecture: self.model,
            hidden: self.hidden,
            layers: self.layers,
            heads: self.heads,
            max_len: self.max_len,
            dropout: self.dropout.unwrap_or(tuned.dropout),
            mask_prob: self.mask_prob,
            last_item_prob: self.last_item_prob,
            last_item_cut: self.last_item_cut,
            lr: self.lr,
            weight_decay: self.weight_decay,
            adam_beta1: self.adam_beta1,
            adam_beta2: self.adam_beta2,
            warmup_steps: self.warmup_steps,
            clip_norm: self.clip_norm,
            batch_size: self.batch_size,
            epochs: self.epochs,
            eval_every: self.eval_every,
            patience: self.patience,
            seed: self.seed,
            negatives: self.negatives,
            sliding_step: self.sliding_step.unwrap_or(tuned.sliding_step),
            label_smoothing: self.label_smoothing,
            loss_weighting: self.loss_weighting.unwrap_or(tuned.loss_weighting),
            item_init: self.item_init.unwrap_or(tuned.item_init),
            item_lr_scale: self.item_lr_scale.unwrap_or(tuned.item_lr_scale),
            time_budget_secs: self.time_budget_secs,
            resume: self.resume,
            data: DataSettings {
                min_rating: self.min_rating,
                min_seq_len: self.min_seq_len,
                min_item_count: self.min_item_count,
            },
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// Runs `movierec train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let opts = args.options();
    tracing::info!(
        model = %opts.architecture,
        dropout = %opts.dropout,
        sliding_step = opts.sliding_step,
        loss_weighting = ?opts.loss_weighting,
        item_init = ?opts.item_init,
        item_lr_scale = opts.item_lr_scale,
        "training settings"
    );
    let report = train(&opts)?;
    println!(
        "checkpoint {}\nbest epoch {} valid NDCG@10 {:.4} HR@10 {:.4}, {} epochs in {:.1} s{}",
        report.checkpoint.display(),
        report.best_epoch,
        report.best_valid_ndcg10,
        report.best_valid_hr10,
        report.epochs_run,
        report.seconds,
        if report.stopped_by_budget {
            " (time budget reached)"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{ItemInit, LossWeighting, TrainArgs};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn options(flags: &[&str]) -> movierec::train::TrainOptions {
        let argv = std::iter::once("train").chain(flags.iter().copied());
        Cli::parse_from(argv).args.options()
    }

    #[test]
    fn unset_flags_take_the_model_and_dataset_defaults_and_given_flags_win() {
        let sasrec = options(&["--model", "sasrec", "--version", "ml-100k"]);
        assert_eq!((sasrec.dropout, sasrec.sliding_step), (0.3, 200));
        let bert = options(&["--model", "bert4rec", "--version", "ml-100k"]);
        assert_eq!((bert.dropout, bert.sliding_step), (0.1, 0));
        assert_eq!(bert.loss_weighting, LossWeighting::Token);
        let given = options(&[
            "--model",
            "sasrec",
            "--version",
            "ml-100k",
            "--dropout",
            "0.2",
            "--sliding-step",
            "0",
        ]);
        assert_eq!((given.dropout, given.sliding_step), (0.2, 0));
        assert_eq!(given.seed, 42);
        assert_eq!(given.loss_weighting, LossWeighting::Token);
        let batch = options(&["--version", "ml-100k", "--loss-weighting", "batch"]);
        assert_eq!(batch.loss_weighting, LossWeighting::Batch);
        let small = options(&["--version", "ml-latest-small"]);
        assert_eq!(small.loss_weighting, LossWeighting::Batch);
        assert_eq!(small.item_init, ItemInit::Cooccurrence);
        assert_eq!(bert.item_init, ItemInit::Random);
        let sasrec_small = options(&["--model", "sasrec", "--version", "ml-latest-small"]);
        assert_eq!(sasrec_small.item_init, ItemInit::Random);
        let random = options(&["--version", "ml-latest-small", "--item-init", "random"]);
        assert_eq!(random.item_init, ItemInit::Random);
        assert_eq!(small.item_lr_scale, 0.1);
        assert_eq!((bert.item_lr_scale, sasrec_small.item_lr_scale), (1.0, 1.0));
        let scaled = options(&["--version", "ml-latest-small", "--item-lr-scale", "1"]);
        assert_eq!(scaled.item_lr_scale, 1.0);
    }
}

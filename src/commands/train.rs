//! `movierec train`.

use std::io::IsTerminal;
use std::path::PathBuf;

use movierec::config::{CatalogueSettings, CheckpointSettings};
use movierec::model::Architecture;
use movierec::model::checkpoint::DataSettings;
use movierec::train::{TrainOptions, train};

/// Arguments of `movierec train`. Defaults are the tuned ones (see the README).
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
    /// Dropout probability.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f32,
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
    /// Also train on older windows of long histories, every N items (0: off).
    #[arg(long, default_value_t = 0)]
    pub sliding_step: usize,
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

/// Runs `movierec train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let opts = TrainOptions {
        dataset: args.catalogue.version,
        database_root: args.catalogue.database_root,
        checkpoint_root: args.checkpoints.checkpoint_root,
        architecture: args.model,
        hidden: args.hidden,
        layers: args.layers,
        heads: args.heads,
        max_len: args.max_len,
        dropout: args.dropout,
        mask_prob: args.mask_prob,
        last_item_prob: args.last_item_prob,
        last_item_cut: args.last_item_cut,
        lr: args.lr,
        weight_decay: args.weight_decay,
        warmup_steps: args.warmup_steps,
        clip_norm: args.clip_norm,
        batch_size: args.batch_size,
        epochs: args.epochs,
        eval_every: args.eval_every,
        patience: args.patience,
        seed: args.seed,
        negatives: args.negatives,
        sliding_step: args.sliding_step,
        time_budget_secs: args.time_budget_secs,
        resume: args.resume,
        data: DataSettings {
            min_rating: args.min_rating,
            min_seq_len: args.min_seq_len,
            min_item_count: args.min_item_count,
        },
        progress: std::io::stderr().is_terminal(),
    };
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

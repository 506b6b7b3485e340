//! `movierec train`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgMatches, Args, FromArgMatches};
use movierec::baseline::stored::BaselineKind;
use movierec::config::{CatalogueSettings, CheckpointSettings};
use movierec::model::Architecture;
use movierec::train::baselines::{BaselineTrainOptions, TransitionGrid, train_baseline};
use movierec::train::presets::{Layer, layered, to_toml};
use movierec::train::report::EaseSettings;
use movierec::train::{StopReason, TrainOptions, TrainSettings, train};

/// Arguments of `movierec train`. The recipe's settings are layered: flags over `--config`,
/// over the shipped preset of the model and release, over the built-in defaults.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Settings not given as flags come from --config FILE.toml, then from the \
    preset shipped for the model and release (resources/presets/<model>-<release>.toml), then \
    from the built-in defaults; --print-config shows what a run would use."
)]
pub struct TrainArgs {
    #[command(flatten)]
    pub catalogue: CatalogueSettings,
    #[command(flatten)]
    pub checkpoints: CheckpointSettings,
    /// Model type: a network (bert4rec, sasrec), or a model fitted in seconds with its
    /// settings chosen on validation (transition, ease).
    #[arg(long, value_enum, default_value = "bert4rec")]
    pub model: ModelType,
    /// A TOML file of settings (the groups of `--print-config`), over the preset.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Print the settings the run would use, as TOML, and exit without training.
    #[arg(long)]
    pub print_config: bool,
    /// Continue from this checkpoint directory.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// A member of `--model blend`: a checkpoint directory of the same release; repeat it.
    #[arg(long = "member", value_name = "CHECKPOINT")]
    pub members: Vec<PathBuf>,
    #[command(flatten)]
    pub flags: SettingFlags,
}

/// What `train` can fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelType {
    /// BERT4Rec (bidirectional attention, masked items).
    Bert4rec,
    /// SASRec (causal attention, next item).
    Sasrec,
    /// Which movies follow which, scored from the last few (fitted in seconds).
    Transition,
    /// EASE's closed-form item × item weights.
    Ease,
    /// Two or more checkpoints (`--member`) served as one, weights chosen on validation.
    Blend,
}

impl ModelType {
    /// The network, for the two trained by gradient descent.
    fn network(self) -> Option<Architecture> {
        match self {
            Self::Bert4rec => Some(Architecture::Bert4Rec),
            Self::Sasrec => Some(Architecture::SasRec),
            Self::Transition | Self::Ease | Self::Blend => None,
        }
    }

    /// The non-neural kind, for the others.
    fn baseline(self) -> Option<BaselineKind> {
        match self {
            Self::Transition => Some(BaselineKind::Transition),
            Self::Ease => Some(BaselineKind::Ease),
            Self::Blend => Some(BaselineKind::Blend),
            Self::Bert4rec | Self::Sasrec => None,
        }
    }
}

/// The settings given on the command line: every field of [`TrainSettings`] as an optional
/// flag, applied over the lower layers with clap's own update (only flags actually given).
#[derive(Debug, Clone)]
pub struct SettingFlags(ArgMatches);

impl Args for SettingFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        TrainSettings::augment_args_for_update(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        TrainSettings::augment_args_for_update(cmd)
    }
}

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self(matches.clone()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0 = matches.clone();
        Ok(())
    }
}

impl SettingFlags {
    /// `settings` with the flags given on the command line put over them.
    fn apply(&self, mut settings: TrainSettings) -> Result<TrainSettings, clap::Error> {
        settings.update_from_arg_matches(&self.0)?;
        Ok(settings)
    }
}

impl TrainArgs {
    /// The run's options: the settings layered from the preset, `--config` and the flags.
    pub fn options(&self) -> anyhow::Result<TrainOptions> {
        let dataset = self.catalogue.version;
        let Some(architecture) = self.model.network() else {
            anyhow::bail!(
                "{:?} is not a network: it has no training settings",
                self.model
            );
        };
        let mut layers = Vec::new();
        match Layer::preset(architecture, dataset) {
            Some(preset) => layers.push(preset),
            None => tracing::info!(
                model = %architecture,
                dataset = %dataset,
                "no preset for this model and release: the built-in defaults"
            ),
        }
        if let Some(path) = &self.config {
            layers.push(Layer::file(path)?);
        }
        let settings = self
            .flags
            .apply(layered(&layers)?)
            .context("applying the command line's settings")?;
        Ok(TrainOptions {
            dataset,
            database_root: self.catalogue.database_root.clone(),
            checkpoint_root: self.checkpoints.checkpoint_root.clone(),
            architecture,
            resume: self.resume.clone(),
            progress: std::io::stderr().is_terminal(),
            settings,
        })
    }
}

/// Fits a transition or EASE checkpoint, settings chosen on validation.
fn run_baseline(args: &TrainArgs, kind: BaselineKind) -> anyhow::Result<()> {
    if args.print_config || args.resume.is_some() || args.config.is_some() {
        anyhow::bail!(
            "--print-config, --config and --resume are for the networks; {} takes no settings \
             (they are tuned on validation)",
            kind.name()
        );
    }
    if (kind == BaselineKind::Blend) == args.members.is_empty() {
        anyhow::bail!("--member is for --model blend, which needs two or more of them");
    }
    let data = args
        .flags
        .apply(TrainSettings::default())
        .context("applying the command line's settings")?
        .data;
    let opts = BaselineTrainOptions {
        kind,
        dataset: args.catalogue.version,
        database_root: args.catalogue.database_root.clone(),
        checkpoint_root: args.checkpoints.checkpoint_root.clone(),
        data: data.filters(),
        transition_grid: TransitionGrid::default(),
        ease: EaseSettings::default(),
        members: args.members.clone(),
    };
    let report = train_baseline(&opts)?;
    println!(
        "checkpoint {}\nsettings {}\nvalid NDCG@10 {:.4} HR@10 {:.4}; test NDCG@10 {:.4} HR@10 {:.4}; {:.1} s",
        report.checkpoint.display(),
        report.settings,
        report.valid.ndcg_10,
        report.valid.hr_10,
        report.test.ndcg_10,
        report.test.hr_10,
        report.seconds,
    );
    Ok(())
}

/// Runs `movierec train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    if let Some(kind) = args.model.baseline() {
        return run_baseline(&args, kind);
    }
    let opts = args.options()?;
    if args.print_config {
        print!("{}", to_toml(&opts.settings)?);
        return Ok(());
    }
    opts.settings.check()?;
    tracing::info!(
        model = %opts.architecture,
        dataset = %opts.dataset,
        epochs = opts.settings.schedule.epochs,
        settings = %serde_json::to_string(&opts.settings).unwrap_or_default(),
        "training settings"
    );
    let report = train(&opts)?;
    let ending = match report.stopped_by {
        StopReason::Schedule => String::new(),
        StopReason::EarlyStop => " (early stop)".into(),
        StopReason::TimeBudget => format!(
            " (time budget reached: the schedule of {} epochs was cut short)",
            report.epochs_planned
        ),
    };
    println!(
        "checkpoint {}\nbest epoch {} valid NDCG@10 {:.4} HR@10 {:.4}, {} epochs in {:.1} s{ending}",
        report.checkpoint.display(),
        report.best_epoch,
        report.best_valid_ndcg10,
        report.best_valid_hr10,
        report.epochs_run,
        report.seconds,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use movierec::train::{ItemInit, LossWeighting, TrainOptions};

    use super::TrainArgs;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn options(flags: &[&str]) -> anyhow::Result<TrainOptions> {
        let argv = std::iter::once("train").chain(flags.iter().copied());
        Cli::try_parse_from(argv)?.args.options()
    }

    /// Flags win over the preset, which wins over the defaults; a flag not given leaves the
    /// preset's value.
    #[test]
    fn flags_over_the_preset_over_the_defaults() -> anyhow::Result<()> {
        let sasrec = options(&["--model", "sasrec", "--version", "ml-100k"])?.settings;
        assert_eq!((sasrec.model.dropout, sasrec.data.sliding_step), (0.3, 200));
        assert_eq!(sasrec.schedule.epochs, 160);
        let given = options(&[
            "--model",
            "sasrec",
            "--version",
            "ml-100k",
            "--dropout",
            "0.2",
            "--sliding-step",
            "0",
            "--time-budget-secs",
            "60",
            "--min-rating",
            "3.5",
        ])?
        .settings;
        assert_eq!((given.model.dropout, given.data.sliding_step), (0.2, 0));
        assert_eq!(given.objective.loss_weighting, LossWeighting::Token);
        assert_eq!(given.schedule.epochs, 160);
        assert_eq!(given.schedule.time_budget_secs, Some(60));
        assert_eq!(given.data.min_rating, Some(3.5));
        assert_eq!(given.seed, 42);
        let small = options(&["--version", "ml-latest-small"])?.settings;
        assert_eq!(small.model.item_init, ItemInit::Cooccurrence);
        assert_eq!(small.optimiser.item_lr_scale, 0.1);
        let random = options(&["--version", "ml-latest-small", "--item-init", "random"])?;
        assert_eq!(random.settings.model.item_init, ItemInit::Random);
        assert_eq!(random.settings.optimiser.item_lr_scale, 0.1);
        let uncut = options(&["--last-item-cut", "false", "--loss-weighting", "batch"])?;
        assert!(!uncut.settings.objective.last_item_cut);
        assert_eq!(
            uncut.settings.objective.loss_weighting,
            LossWeighting::Batch
        );
        Ok(())
    }

    /// `--config` sits between the preset and the flags.
    #[test]
    fn a_config_file_sits_between_the_preset_and_the_flags() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, "seed = 7\n[model]\ndropout = 0.25\nhidden = 32\n")?;
        let file = path.to_string_lossy().into_owned();
        let argv = [
            "--model",
            "sasrec",
            "--version",
            "ml-100k",
            "--config",
            file.as_str(),
        ];
        let from_file = options(&argv)?.settings;
        assert_eq!((from_file.seed, from_file.model.hidden), (7, 32));
        assert_eq!(from_file.model.dropout, 0.25);
        assert_eq!(from_file.data.sliding_step, 200, "the preset's");
        let mut with_flag = argv.to_vec();
        with_flag.extend(["--hidden", "16"]);
        assert_eq!(options(&with_flag)?.settings.model.hidden, 16);
        Ok(())
    }

    /// Flags that lost their measurements are gone.
    #[test]
    fn removed_flags_are_refused() {
        for flag in ["--adam-beta1", "--adam-beta2", "--label-smoothing"] {
            assert!(options(&[flag, "0.5"]).is_err(), "{flag}");
        }
    }
}

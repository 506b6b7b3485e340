//! `movierec evaluate`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use movierec::catalogue::DEFAULT_DATABASE_ROOT;
use movierec::config::MovieLensVersion;
use movierec::model::{Precision, PrecisionChoice, checkpoint};
use movierec::train::baselines::TransitionGrid;
use movierec::train::report::{EaseSettings, evaluate_checkpoints, render};

/// Arguments of `movierec evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Checkpoint directory to evaluate; repeat to compare several in one report.
    #[arg(long = "checkpoint", required_unless_present = "versions")]
    pub checkpoints: Vec<PathBuf>,
    /// Also report the baselines (popularity, EASE, transition) of this release, with or without a
    /// checkpoint of it; repeatable. `--version` is its old name, accepted until the next
    /// release.
    #[arg(long = "dataset", alias = "version", value_name = "DATASET")]
    pub versions: Vec<MovieLensVersion>,
    /// EASE regularisation values to try; the best on validation NDCG@10 is reported.
    #[arg(long, value_delimiter = ',', default_values_t = EaseSettings::default().lambdas)]
    pub ease_lambdas: Vec<f64>,
    /// Skip EASE when the catalogue has more items than this (dense items² solve).
    #[arg(long, default_value_t = EaseSettings::default().max_items)]
    pub ease_max_items: usize,
    /// Folder of the SQLite catalogues, one `<dataset>.db` per release.
    #[arg(long, env = "DATABASE_ROOT", default_value = DEFAULT_DATABASE_ROOT)]
    pub database_root: PathBuf,
    /// Where to write the JSON report (default: `evaluation.json` in the first checkpoint, or
    /// in the working directory without one).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Do not record the metrics in each checkpoint's `config.json` (by default they are, so
    /// `movierec models list` and `GET /models` show them).
    #[arg(long)]
    pub no_record: bool,
    /// What the networks' dense layers compute in; a list (`f32,bf16`) gives each checkpoint a
    /// row per precision and compares them user by user. Only f32 rows are recorded.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32")]
    pub precision: Vec<PrecisionChoice>,
}

/// Runs `movierec evaluate`.
pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let ease = EaseSettings {
        lambdas: args.ease_lambdas,
        max_items: args.ease_max_items,
    };
    let precisions = PrecisionChoice::resolve_all(&args.precision)?;
    let report = evaluate_checkpoints(
        &args.checkpoints,
        &args.versions,
        &args.database_root,
        &ease,
        &TransitionGrid::default(),
        &precisions,
    )?;
    print!("{}", render(&report));
    let output = args
        .output
        .unwrap_or_else(|| match args.checkpoints.first() {
            Some(dir) => dir.join("evaluation.json"),
            None => PathBuf::from("evaluation.json"),
        });
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&output, json).with_context(|| format!("writing {}", output.display()))?;
    println!("\nreport written to {}", output.display());
    if !args.no_record {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let rows = report
            .datasets
            .iter()
            .flat_map(|d| &d.rows)
            .filter(|r| r.precision == Precision::F32);
        for row in rows {
            if let Some(dir) = &row.checkpoint {
                checkpoint::record_evaluation(dir, &row.valid, &row.test, now)
                    .with_context(|| format!("recording the metrics in {}", dir.display()))?;
            }
        }
        println!("metrics recorded in each checkpoint's config.json");
    }
    Ok(())
}

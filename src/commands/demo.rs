//! `movierec demo`: the one command a newcomer runs. It dumps ml-latest-small when no catalogue
//! exists, trains a model within a time budget when no checkpoint exists, then serves the page
//! and the API (in-process worker and queue, or Redis with `--redis`) and prints the URL.
//! A second run reuses the catalogue and the checkpoint.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use movierec::catalogue::dump::{DumpOptions, dump};
use movierec::config::DownloadSettings;
use movierec::model::Architecture;
use movierec::setup::find_checkpoint;
use movierec::train::{TrainOptions, train};

use super::child::KillOnDrop;
use super::serve::ServeArgs;

/// Arguments of `movierec demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub download: DownloadSettings,
    /// Local zip or folder of the release, instead of downloading it (first run only).
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Model type the first run trains (SASRec: the better of the two on ml-latest-small's
    /// validation split within the demo's 150 s budget; see the README).
    #[arg(long, value_enum, env = "DEMO_MODEL", default_value = "sasrec")]
    pub model: Architecture,
    /// Sequences per training batch (16: more steps fit in the demo's short budget).
    #[arg(long, default_value_t = 16)]
    pub train_batch_size: usize,
    /// Wall-clock seconds the first run may spend training (the best epoch so far is kept).
    #[arg(long, env = "DEMO_TRAIN_SECS", default_value_t = 150)]
    pub train_secs: u64,
    /// Use the Redis at `REDIS_URL` and start one `movierec worker` beside the API, instead of
    /// the in-process queue. Implied when `REDIS_URL` is set in the environment or `.env`.
    #[arg(long)]
    pub redis: bool,
    /// Dump and train when missing, then exit without serving (the compose `init` service).
    #[arg(long)]
    pub prepare_only: bool,
}

/// Runs `movierec demo`.
pub fn run(mut args: DemoArgs) -> anyhow::Result<()> {
    let catalogue = &args.serve.catalogue;
    let db = catalogue.database_path();
    if db.is_file() {
        println!("catalogue: reusing {}", db.display());
    } else {
        println!(
            "catalogue: none at {}, dumping {}",
            db.display(),
            catalogue.version
        );
        let report = dump(&DumpOptions {
            version: catalogue.version,
            source: args.source.clone(),
            database_root: catalogue.database_root.clone(),
            dataset_root: args.download.dataset_root.clone(),
            base_url: args.download.movielens_base_url.clone(),
        })
        .context("dumping the catalogue")?;
        println!(
            "catalogue: {} movies, {} ratings in {:.1} s",
            report.counts.movies, report.counts.ratings, report.seconds
        );
    }

    let root = args.serve.model.checkpoints.checkpoint_root.clone();
    match find_checkpoint(catalogue.version, &args.serve.model)? {
        Some(dir) => println!("model: reusing {}", dir.display()),
        None => {
            println!(
                "model: no checkpoint under {}, training for at most {} s",
                root.display(),
                args.train_secs
            );
            let mut opts = TrainOptions {
                database_root: catalogue.database_root.clone(),
                checkpoint_root: root.clone(),
                progress: std::io::stderr().is_terminal(),
                ..TrainOptions::preset(args.model, catalogue.version)?
            };
            opts.settings.optimiser.batch_size = args.train_batch_size;
            opts.settings.schedule.eval_every = 2;
            opts.settings.schedule.time_budget_secs = Some(args.train_secs);
            let report = train(&opts).context("training the demo model")?;
            println!(
                "model: {} (best epoch {}, validation NDCG@10 {:.4}, HR@10 {:.4}, {:.0} s)",
                report.checkpoint.display(),
                report.best_epoch,
                report.best_valid_ndcg10,
                report.best_valid_hr10,
                report.seconds
            );
        }
    }
    if args.prepare_only {
        return Ok(());
    }

    let host = match args.serve.server.host.as_str() {
        "0.0.0.0" | "::" => "127.0.0.1",
        other => other,
    }
    .to_owned();
    println!(
        "open http://{host}:{}/ (Ctrl-C stops)",
        args.serve.server.port
    );
    // `REDIS_URL` in the environment (or `.env`) means the operator runs a Redis: use it.
    if args.redis || std::env::var_os("REDIS_URL").is_some() {
        let _worker = spawn_worker()?;
        args.serve.embedded = false;
        super::serve::run(args.serve)
    } else {
        args.serve.embedded = true;
        super::serve::run(args.serve)
    }
}

/// Starts a `movierec worker` child process, stopped when the demo exits.
fn spawn_worker() -> anyhow::Result<KillOnDrop> {
    let exe = std::env::current_exe().context("locating the movierec binary")?;
    // The child inherits the environment, so it reads the same settings.
    let child = Command::new(exe)
        .arg("worker")
        .spawn()
        .context("starting `movierec worker`")?;
    Ok(KillOnDrop(child))
}

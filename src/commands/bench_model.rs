//! `movierec bench model`: training throughput on ml-100k and recommend latency/throughput.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use movierec::config::MovieLensVersion;
use movierec::model::checkpoint::{CheckpointConfig, DataSettings};
use movierec::model::{Architecture, ItemVocab, ModelConfig, SeqModel, reinitialise};
use movierec::recommend::{RecommendRequest, Recommender};
use movierec::train::data::build_dataset;
use movierec::train::{TrainOptions, train_on_dataset};

use super::stats::{median, percentile};

/// Arguments of `movierec bench model`.
#[derive(Debug, clap::Args)]
pub struct ModelBenchArgs {
    /// Folder of the catalogues; training is measured on `<root>/ml-100k.db` when present.
    #[arg(long, env = "DATABASE_ROOT", default_value = "resources/db")]
    pub database_root: PathBuf,
    /// Training epochs measured per architecture.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Training batch size (default: the training default).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Single-sequence calls timed per case.
    #[arg(long, default_value_t = 200)]
    pub calls: usize,
    /// Skip the training measurement.
    #[arg(long)]
    pub skip_training: bool,
}

fn random_recommender(arch: Architecture, items: usize) -> anyhow::Result<Recommender> {
    let cfg = ModelConfig {
        architecture: arch,
        items,
        hidden: 64,
        layers: 2,
        heads: 2,
        max_len: 200,
        dropout: 0.1,
    };
    let varmap = VarMap::new();
    let model = SeqModel::load(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &cfg,
    )?;
    reinitialise(&varmap, 1)?;
    let ck = CheckpointConfig {
        format: movierec::model::checkpoint::FORMAT,
        dataset: MovieLensVersion::Ml100k,
        model: cfg,
        vocab: ItemVocab::new((1..=items as i64).collect()),
        popularity: vec![1; items],
        data: DataSettings::default(),
        training: serde_json::Value::Null,
        best_epoch: 0,
        metrics: serde_json::Value::Null,
        created_at: 0,
        commit: None,
    };
    Ok(Recommender::from_parts(ck, model, &PathBuf::from("bench"))?)
}

fn request(len: usize, items: usize, salt: usize) -> RecommendRequest {
    RecommendRequest {
        sequence: (0..len)
            .map(|i| ((i * 7919 + salt * 104_729) % items) as i64 + 1)
            .collect(),
        avoided: Vec::new(),
        k: 10,
    }
}

fn bench_recommend(arch: Architecture, calls: usize) -> anyhow::Result<()> {
    for (len, items) in [(50, 1682), (200, 1682), (200, 9724)] {
        let rec = random_recommender(arch, items)?;
        // BERT4Rec appends [MASK]: a history of len-1 gives an input of `len`.
        let hist = if arch == Architecture::Bert4Rec {
            len - 1
        } else {
            len
        };
        for s in 0..5 {
            rec.recommend(&request(hist, items, s))?;
        }
        let mut times = Vec::with_capacity(calls);
        for s in 0..calls {
            let req = request(hist, items, s);
            let t = Instant::now();
            rec.recommend(&req)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{arch:<8} 1 sequence, length {len:>3}, {items:>4} items: p50 {:.3} ms  p99 {:.3} ms",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    for (len, items) in [(50, 1682), (200, 9724)] {
        let rec = random_recommender(arch, items)?;
        let hist = if arch == Architecture::Bert4Rec {
            len - 1
        } else {
            len
        };
        let batch: Vec<RecommendRequest> = (0..64).map(|s| request(hist, items, s)).collect();
        rec.recommend_batch(&batch)?;
        let mut rates = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            rec.recommend_batch(&batch)?;
            rates.push(64.0 / t.elapsed().as_secs_f64());
        }
        println!(
            "{arch:<8} batch 64, length {len:>3}, {items:>4} items: {:.0} seq/s (median of 5)",
            median(&mut rates)
        );
    }
    Ok(())
}

fn bench_training(args: &ModelBenchArgs, arch: Architecture) -> anyhow::Result<()> {
    let path = args.database_root.join("ml-100k.db");
    let catalogue = movierec::catalogue::Catalogue::open(&path)?;
    let dataset = build_dataset(&catalogue.interactions(None)?, &DataSettings::default());
    let dir = tempfile::tempdir()?;
    let mut opts = TrainOptions {
        checkpoint_root: dir.path().to_path_buf(),
        architecture: arch,
        ..TrainOptions::default()
    };
    opts.settings.schedule.epochs = args.epochs;
    opts.settings.schedule.eval_every = usize::MAX;
    if let Some(batch_size) = args.batch_size {
        opts.settings.optimiser.batch_size = batch_size;
    }
    let mut rates = Vec::new();
    let mut secs = Vec::new();
    let mut last = 0.0;
    train_on_dataset(&opts, &dataset, &mut |r| {
        rates.push(r.seq_per_sec);
        // The last epoch also evaluates; time training only.
        let users = dataset.users.len() as f64;
        secs.push(users / r.seq_per_sec);
        last = r.seconds;
    })?;
    println!(
        "{arch:<8} training ml-100k, hidden 64, 2 layers, length 200, batch {}: {:.0} seq/s, {:.2} s/epoch (median of {} epochs; {:.1} s total incl. one validation)",
        opts.settings.optimiser.batch_size,
        median(&mut rates),
        median(&mut secs),
        args.epochs,
        last
    );
    Ok(())
}

/// Runs the model benchmarks and prints the figures.
pub fn run(args: ModelBenchArgs) -> anyhow::Result<()> {
    println!(
        "threads: RAYON_NUM_THREADS={}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    for arch in [Architecture::Bert4Rec, Architecture::SasRec] {
        if !args.skip_training {
            bench_training(&args, arch)?;
        }
        bench_recommend(arch, args.calls)?;
    }
    Ok(())
}

//! `movierec bench model`: training throughput on ml-100k and recommend latency/throughput.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use movierec::catalogue::dump::locate;
use movierec::config::MovieLensVersion;
use movierec::model::checkpoint::{CheckpointConfig, DataSettings};
use movierec::model::{
    Architecture, ItemVocab, ModelConfig, Precision, PrecisionChoice, SeqModel, reinitialise,
};
use movierec::recommend::{RecommendRequest, Recommender};
use movierec::train::data::build_dataset;
use movierec::train::{TrainOptions, train_on_dataset};

use super::cpu_peak;
use super::stats::{median, percentile};
use super::torch_peer::{self, PeerCase, TorchPeer};
use anyhow::bail;

/// Arguments of `movierec bench model`.
#[derive(Debug, clap::Args)]
pub struct ModelBenchArgs {
    /// Folder of the catalogues; training is measured on `<root>/ml-100k.db` when present.
    #[arg(long, env = "DATABASE_ROOT", default_value = "resources/db")]
    pub database_root: PathBuf,
    /// Training epochs measured per architecture.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Training batch size (default: the training default; with `--compare-torch`, the peer's
    /// 128).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Single-sequence calls timed per case.
    #[arg(long, default_value_t = 200)]
    pub calls: usize,
    /// Skip the training measurement.
    #[arg(long)]
    pub skip_training: bool,
    /// Also run the PyTorch peers' inference benchmark in this run and print both side by side
    /// with the ratio (SASRec with the peer's one head; needs torch, see `--torch-python`);
    /// unless `--skip-training`, also the peers' SASRec-CE training epoch on ml-100k (batch 128).
    #[arg(long)]
    pub compare_torch: bool,
    /// With `--compare-torch`: the folder of the PyTorch peers (`bench_infer.py`); default:
    /// the shared folder beside the checkout.
    #[arg(long, env = "MOVIEREC_TORCH_PEER")]
    pub torch_peer: Option<PathBuf>,
    /// With `--compare-torch`: rounds of both benchmarks, taken in turns; each cell is the
    /// median of its rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub compare_rounds: u64,
    /// With `--compare-torch`: a Python with torch installed.
    #[arg(long, env = "MOVIEREC_TORCH_PYTHON", default_value = "python3")]
    pub torch_python: PathBuf,
    /// What inference's dense layers compute in; a list (`f32,bf16`) measures each in turn.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32,auto")]
    pub precision: Vec<PrecisionChoice>,
}

/// The inference cases: one sequence `(length, items)`, timed call by call. The last has the
/// items of the generated 25M-rating release (`bench catalogue`); the peers do not measure it.
const SINGLE_CASES: [(usize, usize); 4] = [(50, 1682), (200, 1682), (200, 9724), (200, 62_423)];
/// The single cases the peers measure too.
const COMPARED_SINGLE: usize = 3;
/// The inference cases: a batch of 64 sequences `(length, items)`.
const BATCH_CASES: [(usize, usize); 2] = [(50, 1682), (200, 9724)];
/// Sequences in a batch case.
const BATCH: usize = 64;

/// What one architecture measured: p50 ms of the single cases, seq/s of the batch cases.
struct Measured {
    single_p50_ms: Vec<f64>,
    batch_seq_per_s: Vec<f64>,
}

impl Measured {
    /// The median of each case over `rounds`.
    fn median(rounds: &[&Measured]) -> Measured {
        let each = |pick: fn(&Measured) -> &Vec<f64>| -> Vec<f64> {
            let cases = rounds.first().map_or(0, |m| pick(m).len());
            (0..cases)
                .map(|i| median(&mut rounds.iter().map(|m| pick(m)[i]).collect::<Vec<_>>()))
                .collect()
        };
        Measured {
            single_p50_ms: each(|m| &m.single_p50_ms),
            batch_seq_per_s: each(|m| &m.batch_seq_per_s),
        }
    }
}

fn random_recommender(
    arch: Architecture,
    items: usize,
    heads: usize,
    precision: Precision,
) -> anyhow::Result<Recommender> {
    let cfg = ModelConfig {
        architecture: arch,
        items,
        hidden: HIDDEN,
        layers: LAYERS,
        heads,
        max_len: 200,
        dropout: 0.1,
    };
    let varmap = VarMap::new();
    let mut model = SeqModel::load(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &cfg,
    )?;
    reinitialise(&varmap, 1)?;
    model.set_precision(precision)?;
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

fn bench_recommend(
    arch: Architecture,
    heads: usize,
    calls: usize,
    precision: Precision,
) -> anyhow::Result<Measured> {
    let mut measured = Measured {
        single_p50_ms: Vec::new(),
        batch_seq_per_s: Vec::new(),
    };
    for (len, items) in SINGLE_CASES {
        let rec = random_recommender(arch, items, heads, precision)?;
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
        let p50 = percentile(&times, 0.5);
        println!(
            "{arch:<8} {precision:<4} 1 sequence, length {len:>3}, {items:>4} items: p50 {p50:.3} ms  p99 {:.3} ms",
            percentile(&times, 0.99)
        );
        measured.single_p50_ms.push(p50);
    }
    for (len, items) in BATCH_CASES {
        let rec = random_recommender(arch, items, heads, precision)?;
        let hist = if arch == Architecture::Bert4Rec {
            len - 1
        } else {
            len
        };
        let batch: Vec<RecommendRequest> = (0..BATCH).map(|s| request(hist, items, s)).collect();
        rec.recommend_batch(&batch)?;
        let mut rates = Vec::new();
        for _ in 0..BATCH_RUNS {
            let t = Instant::now();
            rec.recommend_batch(&batch)?;
            rates.push(BATCH as f64 / t.elapsed().as_secs_f64());
        }
        let rate = median(&mut rates);
        println!(
            "{arch:<8} {precision:<4} batch {BATCH}, length {len:>3}, {items:>4} items: {rate:.0} seq/s (median of {BATCH_RUNS})"
        );
        measured.batch_seq_per_s.push(rate);
    }
    Ok(measured)
}

/// Timed runs of a batch case (the peers time 30).
const BATCH_RUNS: usize = 30;

/// Trains `arch` on ml-100k for `--epochs` and returns the median seconds per epoch (training
/// only).
fn bench_training(
    args: &ModelBenchArgs,
    arch: Architecture,
    heads: usize,
    batch_size: Option<usize>,
) -> anyhow::Result<f64> {
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
    opts.settings.model.heads = heads;
    if let Some(batch_size) = batch_size {
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
    let seconds = median(&mut secs);
    println!(
        "{arch:<8} training ml-100k, hidden 64, 2 layers, {heads} head(s), length 200, batch {}: {:.0} seq/s, {seconds:.2} s/epoch (median of {} epochs; {:.1} s total incl. one validation)",
        opts.settings.optimiser.batch_size,
        median(&mut rates),
        args.epochs,
        last
    );
    Ok(seconds)
}

/// Runs the model benchmarks and prints the figures; with `--compare-torch`, the peers' first,
/// then the side-by-side table.
pub fn run(args: ModelBenchArgs) -> anyhow::Result<()> {
    println!(
        "threads: RAYON_NUM_THREADS={}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    let peer = args.compare_torch.then(|| TorchPeer {
        folder: args.torch_peer.clone().unwrap_or_else(locate::torch_peers),
        python: args.torch_python.clone(),
    });
    if let Some(peer) = &peer {
        println!("PyTorch: torch {}", peer.check()?);
    }
    // Compared, SASRec trains at the peer's batch size unless one is given.
    let batch_size = args
        .batch_size
        .or(peer.as_ref().map(|_| torch_peer::TRAIN_BATCH));
    // The peers' SASRec has one head; compared with it, ours has one too.
    let heads = |arch| match (arch, &peer) {
        (Architecture::SasRec, Some(_)) => 1,
        _ => 2,
    };
    let mut sasrec_epoch = None;
    if !args.skip_training {
        for arch in [Architecture::Bert4Rec, Architecture::SasRec] {
            let seconds = bench_training(&args, arch, heads(arch), batch_size)?;
            if arch == Architecture::SasRec {
                sasrec_epoch = Some(seconds);
            }
        }
    }
    // Compared, the peers and movierec take turns, so that a slow spell of a shared machine
    // falls on both; each cell is the median of its rounds.
    let rounds = if peer.is_some() {
        args.compare_rounds as usize
    } else {
        1
    };
    let precisions = PrecisionChoice::resolve_all(&args.precision)?;
    let mut theirs = Vec::new();
    // Per precision, per round: (BERT4Rec, SASRec).
    let mut ours: Vec<Vec<(Measured, Measured)>> = precisions.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        if rounds > 1 {
            println!("round {round} of {rounds}");
        }
        if let Some(peer) = &peer {
            theirs.push(peer.run_inference()?);
        }
        for (&precision, ours) in precisions.iter().zip(&mut ours) {
            let measure = |arch| bench_recommend(arch, heads(arch), args.calls, precision);
            ours.push((
                measure(Architecture::Bert4Rec)?,
                measure(Architecture::SasRec)?,
            ));
        }
    }
    let medians: Vec<(Precision, Measured, Measured)> = precisions
        .iter()
        .zip(&ours)
        .map(|(&precision, rounds)| {
            let bert: Vec<&Measured> = rounds.iter().map(|(b, _)| b).collect();
            let sasrec: Vec<&Measured> = rounds.iter().map(|(_, s)| s).collect();
            (
                precision,
                Measured::median(&bert),
                Measured::median(&sasrec),
            )
        })
        .collect();
    print_share_of_peak(&cpu_peak::measure(), &medians);
    let Some(peer) = peer else {
        return Ok(());
    };
    let theirs = torch_peer::median_cases(&theirs);
    for (precision, bert, sasrec) in &medians {
        print_side_by_side(&theirs, bert, sasrec, rounds, *precision)?;
    }
    if let Some(ours) = sasrec_epoch {
        let theirs = peer.run_sasrec_training("ml-100k", args.epochs.max(2))?;
        println!(
            "SASRec-CE training epoch, ml-100k, length 200, one head: PyTorch {theirs:.2} s (batch {}), movierec {ours:.2} s (batch {}): lead {:.2}×",
            torch_peer::TRAIN_BATCH,
            batch_size.map_or("default".to_owned(), |b| b.to_string()),
            theirs / ours
        );
    }
    Ok(())
}

/// Hidden size and blocks of the measured models.
const HIDDEN: usize = 64;
const LAYERS: usize = 2;

/// Floating-point operations (a multiply-add is two) that scoring one sequence of `len` needs:
/// every block's key and value projections for all positions, the other dense layers
/// (query, output, the 4× feed-forward) for all positions but in the last block, attention over
/// the keys each query sees (SASRec: itself and the past), BERT4Rec's head, and the scores of
/// `items`. Padding and masked keys are not counted: this is the work the answer needs.
fn flops_per_sequence(arch: Architecture, len: usize, items: usize) -> f64 {
    let (d, l) = (HIDDEN as f64, len as f64);
    let seen_keys = |query: f64| match arch {
        Architecture::SasRec => query + 1.0,
        Architecture::Bert4Rec => l,
    };
    let attention_all: f64 = (0..len).map(|q| 2.0 * d * seen_keys(q as f64)).sum();
    let full_block = l * 12.0 * d * d + attention_all;
    let last_block = l * 2.0 * d * d + 10.0 * d * d + 2.0 * d * seen_keys(l - 1.0);
    let head = match arch {
        Architecture::Bert4Rec => d * d,
        Architecture::SasRec => 0.0,
    };
    2.0 * ((LAYERS - 1) as f64 * full_block + last_block + head + items as f64 * d)
}

/// What share of the measured peak each case reaches, per precision (`ours`: per precision,
/// the median BERT4Rec and SASRec figures).
fn print_share_of_peak(peak: &cpu_peak::Peak, ours: &[(Precision, Measured, Measured)]) {
    let threads = rayon::current_num_threads();
    println!(
        "\nmeasured peak on {threads} threads: f32 {:.0} GFLOP/s ({} FMA){}",
        peak.f32,
        peak.f32_kind,
        peak.bf16.map_or(String::new(), |p| format!(
            ", bf16 {p:.0} GFLOP/s (vdpbf16ps)"
        ))
    );
    print!("\n| case |");
    for (precision, _, _) in ours {
        print!(" BERT4Rec {precision} | SASRec {precision} |");
    }
    println!();
    println!("|---|{}", "---|---|".repeat(ours.len()));
    let cell = |arch, len, items, rate_per_s: f64, precision: Precision| {
        let gflops = flops_per_sequence(arch, len, items) * rate_per_s / 1e9;
        let peak = match precision {
            Precision::F32 => Some(peak.f32),
            Precision::Bf16 => peak.bf16,
        };
        match peak {
            Some(p) => format!("{gflops:.1} GFLOP/s ({:.0} %)", 100.0 * gflops / p),
            None => format!("{gflops:.1} GFLOP/s"),
        }
    };
    // Sequences per second of a case, from what was measured.
    let row = |label: String, len, items, rate: &dyn Fn(&Measured) -> f64| {
        print!("| {label} |");
        for (precision, bert, sasrec) in ours {
            for (arch, m) in [
                (Architecture::Bert4Rec, bert),
                (Architecture::SasRec, sasrec),
            ] {
                print!(" {} |", cell(arch, len, items, rate(m), *precision));
            }
        }
        println!();
    };
    for (i, &(len, items)) in SINGLE_CASES.iter().enumerate() {
        let label = format!("1 sequence, length {len}, {items} items");
        row(label, len, items, &|m| 1e3 / m.single_p50_ms[i]);
    }
    for (i, &(len, items)) in BATCH_CASES.iter().enumerate() {
        let label = format!("batch {BATCH}, length {len}, {items} items");
        row(label, len, items, &|m| m.batch_seq_per_s[i]);
    }
}

/// The markdown table of both implementations per case, with movierec's lead (PyTorch's time
/// over ours, or our rate over PyTorch's) and the smallest lead.
fn print_side_by_side(
    peer: &[PeerCase],
    bert: &Measured,
    sasrec: &Measured,
    rounds: usize,
    precision: Precision,
) -> anyhow::Result<()> {
    println!(
        "\nmovierec in {precision} (PyTorch in f32), medians of {rounds} rounds, taken in turns:\n"
    );
    println!(
        "| case | PyTorch BERT4Rec | movierec BERT4Rec | lead | PyTorch SASRec | movierec SASRec | lead |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut smallest = f64::INFINITY;
    let mut row = |label: String, torch: (f64, f64), ours: (f64, f64), unit: &str, time: bool| {
        let lead = |t: f64, o: f64| if time { t / o } else { o / t };
        let (bl, sl) = (lead(torch.0, ours.0), lead(torch.1, ours.1));
        smallest = smallest.min(bl).min(sl);
        let fmt = |v: f64| {
            if time {
                format!("{v:.3} {unit}")
            } else {
                format!("{v:.0} {unit}")
            }
        };
        println!(
            "| {label} | {} | {} | {bl:.2}× | {} | {} | {sl:.2}× |",
            fmt(torch.0),
            fmt(ours.0),
            fmt(torch.1),
            fmt(ours.1)
        );
    };
    for (i, &(len, items)) in SINGLE_CASES[..COMPARED_SINGLE].iter().enumerate() {
        let Some(t) = torch_peer::find(peer, items, len, 1) else {
            bail!("the peers did not measure length {len}, {items} items, batch 1");
        };
        row(
            format!("1 sequence, length {len}, {items} items, p50"),
            (t.bert_last_ms, t.sasrec_last_ms),
            (bert.single_p50_ms[i], sasrec.single_p50_ms[i]),
            "ms",
            true,
        );
    }
    for (i, (len, items)) in BATCH_CASES.into_iter().enumerate() {
        let Some(t) = torch_peer::find(peer, items, len, BATCH) else {
            bail!("the peers did not measure length {len}, {items} items, batch {BATCH}");
        };
        row(
            format!("batch {BATCH}, length {len}, {items} items"),
            (t.bert_last_seq_per_s, t.sasrec_last_seq_per_s),
            (bert.batch_seq_per_s[i], sasrec.batch_seq_per_s[i]),
            "seq/s",
            false,
        );
    }
    println!("\nsmallest lead over PyTorch ({precision}): {smallest:.2}×");
    Ok(())
}

//! `movierec bench catalogue`: dump speed on ml-latest-small and on a generated ml-25m-sized
//! release (seconds, peak memory), and search latency over the generated titles.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use movierec::catalogue::Catalogue;
use movierec::catalogue::dump::locate::Locator;
use movierec::catalogue::dump::{DumpOptions, DumpReport, dump};
use movierec::catalogue::synthetic::{SyntheticSpec, generate, search_queries};
use movierec::config::MovieLensVersion;

use super::stats::{median, percentile};

/// Arguments of `movierec bench catalogue`.
#[derive(Debug, clap::Args)]
pub struct CatalogueBenchArgs {
    /// Extracted ml-latest-small folder for the small dump (default: found like the tests find
    /// it, through `catalogue::dump::locate`).
    #[arg(long)]
    pub small_source: Option<PathBuf>,
    /// Working folder: generated release (kept and reused) and benchmark catalogues.
    #[arg(long, default_value = "resources/datasets/bench")]
    pub work_dir: PathBuf,
    /// Dumps of ml-latest-small to take the median of.
    #[arg(long, default_value_t = 5)]
    pub small_runs: usize,
    /// Dumps of the generated release to take the median of.
    #[arg(long, default_value_t = 1)]
    pub large_runs: usize,
    /// Size of the generated release relative to ml-25m (1.0: 25M ratings).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Number of search queries (each is timed `--search-rounds` times).
    #[arg(long, default_value_t = 300)]
    pub queries: usize,
    /// Timed passes over the queries.
    #[arg(long, default_value_t = 5)]
    pub search_rounds: usize,
    /// Skip the generated release (and the search benchmark, which needs it).
    #[arg(long)]
    pub skip_large: bool,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: CatalogueBenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.work_dir)?;
    println!(
        "profile: {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "cpus available: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let small_db = args.work_dir.join("db-small");
    let small_source = match &args.small_source {
        Some(path) => path.clone(),
        None => Locator::from_env().release(MovieLensVersion::LatestSmall)?,
    };
    let mut secs = Vec::new();
    for _ in 0..args.small_runs.max(1) {
        let report = run_dump(MovieLensVersion::LatestSmall, &small_source, &small_db)?;
        secs.push(report.seconds);
    }
    println!(
        "dump ml-latest-small (folder {}): {} ratings, median {:.3} s over {} runs (min {:.3}, max {:.3})",
        small_source.display(),
        run_dump_count(&small_db)?,
        median(&mut secs),
        secs.len(),
        secs.first().copied().unwrap_or(0.0),
        secs.last().copied().unwrap_or(0.0),
    );
    if args.skip_large {
        return Ok(());
    }

    let spec = SyntheticSpec::ml25m_scaled(args.scale);
    let gen_dir = args.work_dir.join(format!(
        "synthetic-ml-25m-x{}-seed{}",
        args.scale, spec.seed
    ));
    let marker = gen_dir.join(".complete");
    if marker.is_file() {
        println!("generated release: reusing {}", gen_dir.display());
    } else {
        let t = Instant::now();
        generate(&spec, &gen_dir).context("generating the synthetic release")?;
        std::fs::write(&marker, format!("{spec:?}\n"))?;
        println!(
            "generated release: {} in {:.1} s",
            gen_dir.display(),
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "  spec: {} users, {} movies, {} ratings, {} tags",
        spec.users, spec.movies, spec.ratings, spec.tags
    );

    let large_db = args.work_dir.join("db-large");
    let mut secs = Vec::new();
    let mut peaks = Vec::new();
    let mut last = None;
    for _ in 0..args.large_runs.max(1) {
        let reset = reset_peak_rss();
        let report = run_dump(MovieLensVersion::Ml25m, &gen_dir, &large_db)?;
        let peak = peak_rss_kib();
        secs.push(report.seconds);
        peaks.push(peak.map_or(f64::NAN, |k| k as f64 / 1024.0));
        if !reset {
            println!("  (could not reset VmHWM: peak memory includes earlier work)");
        }
        last = Some(report);
    }
    let report = last.context("no dump ran")?;
    let size = std::fs::metadata(&report.path).map_or(0, |m| m.len());
    println!(
        "dump generated ml-25m (folder): {} ratings, {} users, {} movies, {} tags; median {:.1} s over {} runs; peak RSS (VmHWM) median {:.0} MiB; catalogue {:.0} MiB",
        report.counts.ratings,
        report.counts.users,
        report.counts.movies,
        report.counts.tags,
        median(&mut secs),
        secs.len(),
        median(&mut peaks),
        size as f64 / (1024.0 * 1024.0),
    );

    search_bench(&report.path, args.queries, args.search_rounds)
}

fn search_bench(path: &Path, n: usize, rounds: usize) -> anyhow::Result<()> {
    let catalogue = Catalogue::open_read_only(path)?;
    let titles = catalogue.titles()?;
    let queries = search_queries(&titles, n, 42);
    let mut hits = 0usize;
    for q in &queries {
        hits += catalogue.search(q, 10)?.len();
    }
    let mut micros = Vec::with_capacity(queries.len() * rounds);
    let mut per_query = vec![Vec::with_capacity(rounds.max(1)); queries.len()];
    for _ in 0..rounds.max(1) {
        for (q, times) in queries.iter().zip(&mut per_query) {
            let t = Instant::now();
            let found = catalogue.search(q, 10)?;
            let us = t.elapsed().as_secs_f64() * 1e6;
            micros.push(us);
            times.push(us);
            std::hint::black_box(found);
        }
    }
    micros.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&micros, p) / 1000.0;
    println!(
        "search over {} titles: {} queries x {} rounds (limit 10, {:.1} results/query): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        titles.len(),
        queries.len(),
        rounds.max(1),
        hits as f64 / queries.len().max(1) as f64,
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
    let mut slowest: Vec<(f64, &str)> = per_query
        .iter_mut()
        .zip(&queries)
        .map(|(times, q)| (median(times), q.as_str()))
        .collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (us, q) in slowest.iter().take(SLOWEST_SHOWN) {
        println!(
            "  slow query (median of rounds) {:>8.3} ms  {q:?}",
            us / 1000.0
        );
    }
    Ok(())
}

/// How many of the slowest search queries the benchmark names.
const SLOWEST_SHOWN: usize = 8;

fn run_dump(version: MovieLensVersion, source: &Path, db: &Path) -> anyhow::Result<DumpReport> {
    let opts = DumpOptions {
        version,
        source: Some(source.to_path_buf()),
        database_root: db.to_path_buf(),
        dataset_root: db.join("datasets"),
        base_url: String::new(),
    };
    dump(&opts).with_context(|| format!("dump of {}", source.display()))
}

fn run_dump_count(db: &Path) -> anyhow::Result<i64> {
    let cat = Catalogue::open_release_read_only(db, MovieLensVersion::LatestSmall)?;
    Ok(cat.info()?.ratings)
}

/// Resets the process's peak resident set size (Linux: `5` into `/proc/self/clear_refs`).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size (`VmHWM` of `/proc/self/status`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

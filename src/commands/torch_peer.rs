//! The PyTorch peers of `bench model --compare-torch`: runs the peers' own inference benchmark
//! (`bench_infer.py` of the peer folder, never copied into this project) in a Python that has
//! torch, on this machine and in this run, and reads its figures back.
//!
//! The script writes a results file beside itself when it ends; the peer folder may be
//! read-only, so it runs from a scratch copy of the folder's scripts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Where the peers are and which Python runs them.
#[derive(Debug, Clone)]
pub struct TorchPeer {
    /// The folder with `bench_infer.py` (and the scripts it imports).
    pub folder: PathBuf,
    /// A Python interpreter with torch installed.
    pub python: PathBuf,
}

/// One case of `bench_infer.py`: the medians of both peers at one shape.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PeerCase {
    pub n_items: usize,
    #[serde(rename = "L")]
    pub len: usize,
    pub batch: usize,
    /// The seed's BERT4Rec, scoring the last position only (the fair comparison).
    pub bert_last_ms: f64,
    pub bert_last_seq_per_s: f64,
    /// The peers' SASRec with a full-softmax head, last position.
    pub sasrec_last_ms: f64,
    pub sasrec_last_seq_per_s: f64,
}

/// The batch size `sasrec.py` trains with.
pub const TRAIN_BATCH: usize = 128;

/// What to install when the peer cannot run.
const SETUP: &str = "set it up as the peer folder's README.md says: \
     python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy tqdm pandas scipy, \
     the seed's BERT4Rec checked out at $B4R_REPO, then --torch-python /tmp/torchenv/bin/python";

impl TorchPeer {
    /// Checks that the folder holds the benchmark and that the interpreter imports torch;
    /// returns the torch version it reports.
    pub fn check(&self) -> anyhow::Result<String> {
        let script = self.folder.join("bench_infer.py");
        if !script.is_file() {
            bail!(
                "no {} (--torch-peer names the folder of the PyTorch peers)",
                script.display()
            );
        }
        let probe = Command::new(&self.python)
            .args(["-c", "import torch; print(torch.__version__)"])
            .output()
            .with_context(|| format!("running {}", self.python.display()))?;
        if !probe.status.success() {
            bail!("{} cannot import torch; {SETUP}", self.python.display());
        }
        Ok(String::from_utf8_lossy(&probe.stdout).trim().to_owned())
    }

    /// Runs the inference benchmark (2 threads, the peers' own medians) and returns its cases.
    pub fn run_inference(&self) -> anyhow::Result<Vec<PeerCase>> {
        parse_cases(&self.run_script("bench_infer.py", &[], &[])?)
    }

    /// Trains the peers' SASRec-CE (batch 128, length 200, one head) on `dataset` for `epochs`
    /// epochs, on the split of the peer folder's `../data/splits`, and returns its median
    /// seconds per epoch (training only, as the script times it).
    pub fn run_sasrec_training(&self, dataset: &str, epochs: usize) -> anyhow::Result<f64> {
        // The script runs in the scratch folder: the splits' path must not be relative.
        let folder = std::fs::canonicalize(&self.folder)
            .with_context(|| format!("finding {}", self.folder.display()))?;
        let splits = folder.join("..").join("data").join("splits");
        let epochs = epochs.to_string();
        let args = [dataset, "--epochs", &epochs, "--patience", "1000"];
        let stdout = self.run_script("sasrec.py", &args, &[("PEER_SPLITS", &splits)])?;
        print!("{stdout}");
        seconds_per_epoch(&stdout)
    }

    /// Runs one of the folder's scripts from a scratch copy of its scripts (the scripts write
    /// results beside themselves; the folder may be read-only) and returns what it printed.
    fn run_script(
        &self,
        script: &str,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> anyhow::Result<String> {
        let scratch = tempfile::tempdir()?;
        copy_scripts(&self.folder, scratch.path())?;
        std::fs::create_dir_all(scratch.path().join("results"))?;
        println!(
            "PyTorch peers: {} {} {}",
            self.python.display(),
            self.folder.join(script).display(),
            args.join(" ")
        );
        let out = Command::new(&self.python)
            .arg(scratch.path().join(script))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(scratch.path())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {script}"))?;
        if !out.status.success() {
            bail!("{script} failed ({}); {SETUP}", out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The median seconds per epoch of the script's closing line, `... (1.23s/ep, ...)`.
fn seconds_per_epoch(stdout: &str) -> anyhow::Result<f64> {
    stdout
        .lines()
        .rev()
        .find_map(|l| {
            let (head, _) = l.split_once("s/ep,")?;
            head.rsplit_once('(')?.1.trim().parse::<f64>().ok()
        })
        .context("sasrec.py printed no seconds per epoch")
}

/// Copies the folder's Python scripts (not its results or data) into `to`.
fn copy_scripts(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "py")
            && let Some(name) = path.file_name()
        {
            std::fs::copy(&path, to.join(name))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// The JSON lines of the script's output that describe an inference case; other lines are
/// skipped.
fn parse_cases(stdout: &str) -> anyhow::Result<Vec<PeerCase>> {
    let cases: Vec<PeerCase> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if cases.is_empty() {
        bail!("bench_infer.py printed no case");
    }
    Ok(cases)
}

/// Each case of the first round with every figure the median of its rounds (a case missing
/// from a round is left out of that figure's median).
pub fn median_cases(rounds: &[Vec<PeerCase>]) -> Vec<PeerCase> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|c| {
            let same: Vec<PeerCase> = rounds
                .iter()
                .filter_map(|r| find(r, c.n_items, c.len, c.batch))
                .collect();
            let mid = |pick: fn(&PeerCase) -> f64| {
                super::stats::median(&mut same.iter().map(pick).collect::<Vec<_>>())
            };
            PeerCase {
                bert_last_ms: mid(|c| c.bert_last_ms),
                bert_last_seq_per_s: mid(|c| c.bert_last_seq_per_s),
                sasrec_last_ms: mid(|c| c.sasrec_last_ms),
                sasrec_last_seq_per_s: mid(|c| c.sasrec_last_seq_per_s),
                ..*c
            }
        })
        .collect()
}

/// The case at this shape, if the peers measured it.
pub fn find(cases: &[PeerCase], n_items: usize, len: usize, batch: usize) -> Option<PeerCase> {
    cases
        .iter()
        .copied()
        .find(|c| (c.n_items, c.len, c.batch) == (n_items, len, batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_case_lines_and_skips_the_rest() {
        let out = "loading\n\
            {\"n_items\": 1682, \"L\": 50, \"batch\": 1, \"bert_full_ms\": 1.2, \"bert_last_ms\": 0.919, \
             \"sasrec_last_ms\": 0.506, \"bert_full_seq_per_s\": 800.0, \"bert_last_seq_per_s\": 1088.1, \
             \"sasrec_last_seq_per_s\": 1976.3, \"bert_full_min_ms\": 1.1}\n\
            {\"dataset\": \"ml-100k\"}\n";
        let cases = parse_cases(out).unwrap();
        assert_eq!(cases.len(), 1);
        let c = find(&cases, 1682, 50, 1).unwrap();
        assert_eq!(c.bert_last_ms, 0.919);
        assert_eq!(c.sasrec_last_seq_per_s, 1976.3);
        assert!(find(&cases, 9724, 50, 1).is_none());
        assert!(parse_cases("nothing\n").is_err());
    }

    #[test]
    fn a_case_over_rounds_is_the_median_of_each_figure() {
        let case = |ms: f64| PeerCase {
            n_items: 1682,
            len: 50,
            batch: 1,
            bert_last_ms: ms,
            bert_last_seq_per_s: 1000.0 / ms,
            sasrec_last_ms: 2.0 * ms,
            sasrec_last_seq_per_s: 500.0 / ms,
        };
        let rounds = vec![vec![case(1.0)], vec![case(4.0)], vec![case(2.0)]];
        let m = median_cases(&rounds);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].bert_last_ms, m[0].sasrec_last_ms), (2.0, 4.0));
        assert_eq!(m[0].bert_last_seq_per_s, 500.0);
        assert!(median_cases(&[]).is_empty());
    }

    #[test]
    fn reads_the_seconds_per_epoch_of_the_closing_line() {
        let out = "[run] ep 1 loss 7.1 3.9s/ep val NDCG@10 0.01 *\n\
                   [run] best ep 2 TEST NDCG@10 0.05 SE=0.0071 (3.72s/ep, 9s to best, 12s total)\n";
        assert_eq!(seconds_per_epoch(out).unwrap(), 3.72);
        assert!(seconds_per_epoch("[run] ep 1 loss 7.1 3.9s/ep\n").is_err());
    }
}

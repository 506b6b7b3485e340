//! The run folder: a new directory per run under the checkpoint root, holding the checkpoint
//! (written by [`super::keeper`]), `metrics.jsonl` (one line per evaluated epoch) and
//! `training_curve.png`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{TrainError, plot};
use crate::config::MovieLensVersion;

/// File of the evaluated epochs' records, one JSON object a line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// File of the training curve.
pub const CURVE_FILE: &str = "training_curve.png";

/// One epoch of a run, as written to `metrics.jsonl` (evaluated epochs) and plotted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean training loss of the epoch.
    pub loss: f64,
    pub valid_hr10: Option<f64>,
    pub valid_ndcg10: Option<f64>,
    /// Seconds since the run started.
    pub seconds: f64,
    /// Training sequences per second in this epoch.
    pub seq_per_sec: f64,
    pub lr: f64,
}

/// A run's own directory.
pub(super) struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `<root>/<dataset>-<architecture>-<created_at>`, with `-1`, `-2`, ... appended
    /// when another run took that name.
    pub(super) fn create(
        root: &Path,
        dataset: MovieLensVersion,
        model: &str,
        created_at: u64,
    ) -> Result<Self, TrainError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Io { path, source }
        };
        std::fs::create_dir_all(root).map_err(io(root))?;
        let base = format!("{dataset}-{model}-{created_at}");
        for n in 0.. {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let path = root.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Err(TrainError::Invalid(
            "no free checkpoint directory name".into(),
        ))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an evaluated epoch to `metrics.jsonl`.
    pub(super) fn append(&self, record: &EpochRecord) -> Result<(), TrainError> {
        let path = self.path.join(METRICS_FILE);
        let io = |source| TrainError::Io {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let line = serde_json::to_string(record).unwrap_or_default();
        writeln!(f, "{line}").map_err(io)
    }

    /// Draws the training curve; a run is not failed for want of a picture.
    pub(super) fn plot(&self, records: &[EpochRecord]) {
        if let Err(e) = plot::training_curve(records, &self.path.join(CURVE_FILE)) {
            tracing::warn!("could not draw the training curve: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_started_in_the_same_second_get_their_own_directories() -> Result<(), TrainError> {
        let root = tempfile::tempdir().map_err(|source| TrainError::Io {
            path: PathBuf::from("tempdir"),
            source,
        })?;
        let nested = root.path().join("a/b");
        let make = || RunDir::create(&nested, MovieLensVersion::Ml100k, "sasrec", 7);
        let (first, second) = (make()?, make()?);
        assert_eq!(first.path(), nested.join("ml-100k-sasrec-7"));
        assert_eq!(second.path(), nested.join("ml-100k-sasrec-7-1"));
        let record = EpochRecord {
            epoch: 3,
            loss: 1.5,
            valid_hr10: Some(0.25),
            valid_ndcg10: Some(0.125),
            seconds: 2.0,
            seq_per_sec: 10.0,
            lr: 1e-3,
        };
        first.append(&record)?;
        first.append(&EpochRecord { epoch: 6, ..record })?;
        let text = std::fs::read_to_string(first.path().join(METRICS_FILE)).unwrap_or_default();
        let epochs: Vec<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["epoch"].as_u64())
            .collect();
        assert_eq!(epochs, [3, 6]);
        Ok(())
    }
}

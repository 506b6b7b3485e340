//! The best checkpoint and early stopping: every validation that beats the best so far saves
//! the weights; `patience` validations in a row that do not, stop the run. At the end the
//! checkpoint's `config.json` records how the run ended.

use std::path::{Path, PathBuf};

use candle_nn::VarMap;
use serde::Serialize;

use super::TrainError;
use super::metrics::RankingMetrics;
use super::options::StopReason;
use crate::model::checkpoint::{self, CheckpointConfig};

/// What a validation means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The best so far: saved.
    Improved,
    /// Not better, but patience is left.
    NotBetter,
    /// Not better for `patience` validations in a row.
    Stop,
}

/// How a run ended, as recorded in its checkpoint (`metrics.run` of `config.json`).
#[derive(Debug, Clone, Serialize)]
pub(super) struct RunOutcome {
    /// The schedule's last epoch.
    pub epochs_planned: usize,
    /// The last epoch trained (the time budget may have cut it short).
    pub last_epoch: usize,
    pub stopped_by: StopReason,
    pub seconds: f64,
}

/// Keeps the best checkpoint of a run.
pub(super) struct BestKeeper {
    dir: PathBuf,
    config: CheckpointConfig,
    best: Option<RankingMetrics>,
    since_best: usize,
    patience: usize,
}

impl BestKeeper {
    /// A keeper saving into `dir` with `config` (its `best_epoch` and `metrics` are filled in).
    pub(super) fn new(dir: &Path, config: CheckpointConfig, patience: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            config,
            best: None,
            since_best: 0,
            patience,
        }
    }

    /// Judges the validation `metrics` of `epoch`, saving `varmap` if they are the best so far
    /// (by NDCG@10).
    pub(super) fn observe(
        &mut self,
        epoch: usize,
        metrics: &RankingMetrics,
        varmap: &VarMap,
    ) -> Result<Verdict, TrainError> {
        if self.best.is_none_or(|best| metrics.ndcg_10 > best.ndcg_10) {
            self.best = Some(*metrics);
            self.since_best = 0;
            self.config.best_epoch = epoch;
            self.config.metrics = serde_json::json!({ "valid": metrics });
            checkpoint::save(&self.dir, varmap, &self.config)?;
            return Ok(Verdict::Improved);
        }
        self.since_best += 1;
        Ok(if self.since_best >= self.patience {
            Verdict::Stop
        } else {
            Verdict::NotBetter
        })
    }

    /// The epoch of the saved weights (0 when none were saved).
    pub(super) fn best_epoch(&self) -> usize {
        self.config.best_epoch
    }

    /// The saved weights' validation metrics.
    pub(super) fn best(&self) -> Option<&RankingMetrics> {
        self.best.as_ref()
    }

    /// Records `outcome` in the saved checkpoint's `config.json` (nothing when none was saved).
    pub(super) fn record(&mut self, outcome: &RunOutcome) -> Result<(), TrainError> {
        if self.best.is_none() {
            return Ok(());
        }
        if let serde_json::Value::Object(fields) = &mut self.config.metrics {
            let run = serde_json::to_value(outcome).unwrap_or_default();
            fields.insert("run".into(), run);
        }
        self.config.write(&self.dir)?;
        Ok(())
    }
}

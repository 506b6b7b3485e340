//! What a training run is told, and what it reports back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::MovieLensVersion;
use crate::model::Architecture;
use crate::train::TrainError;
use crate::train::presets::preset_settings;
use crate::train::settings::TrainSettings;

/// One training run: which model on which catalogue, where its checkpoint goes, and the
/// recipe it trains with. [`Default`] is BERT4Rec on ml-100k with the built-in defaults;
/// [`TrainOptions::preset`] gives the shipped recipe of a model and release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    pub dataset: MovieLensVersion,
    /// Folder of the catalogues (`<root>/<version>.db`).
    pub database_root: PathBuf,
    /// Folder under which the run's checkpoint directory is created.
    pub checkpoint_root: PathBuf,
    pub architecture: Architecture,
    /// Continue from this checkpoint's weights and epoch.
    pub resume: Option<PathBuf>,
    /// Show a progress bar (on a terminal); otherwise a progress line is logged every 30 s.
    pub progress: bool,
    pub settings: TrainSettings,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            dataset: MovieLensVersion::Ml100k,
            database_root: PathBuf::from("resources/db"),
            checkpoint_root: PathBuf::from("resources/checkpoints"),
            architecture: Architecture::Bert4Rec,
            resume: None,
            progress: false,
            settings: TrainSettings::default(),
        }
    }
}

impl TrainOptions {
    /// `architecture` on `dataset` with its shipped preset (`resources/presets/`) over the
    /// defaults; the other fields keep [`Default`]'s.
    pub fn preset(
        architecture: Architecture,
        dataset: MovieLensVersion,
    ) -> Result<Self, TrainError> {
        Ok(Self {
            architecture,
            dataset,
            settings: preset_settings(architecture, dataset)?,
            ..Self::default()
        })
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The schedule's last epoch was trained.
    Schedule,
    /// Validation stopped improving for `patience` evaluations.
    EarlyStop,
    /// The time budget ran out before the schedule ended.
    TimeBudget,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The checkpoint directory holding the best weights.
    pub checkpoint: PathBuf,
    pub best_epoch: usize,
    pub best_valid_ndcg10: f64,
    pub best_valid_hr10: f64,
    /// Epochs run in this call.
    pub epochs_run: usize,
    /// The last epoch of the schedule.
    pub epochs_planned: usize,
    pub seconds: f64,
    pub stopped_by: StopReason,
}

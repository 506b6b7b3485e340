//! The model registry: every checkpoint directory under the checkpoint root is a model with a
//! name (its directory's name), whatever its type, with what its `config.json` records; and
//! [`specs`]: sets of them with traffic weights (`RECSYS_MODELS`, promotions); [`control`]: what
//! is live and promoting one, as the API asks it.

pub mod control;
pub mod specs;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::baseline::stored::BaselineConfig;
use crate::config::MovieLensVersion;
use crate::model::checkpoint::{CheckpointConfig, CheckpointHeader, CheckpointKind};

/// One model of the registry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelEntry {
    /// The directory's name: how requests and `RECSYS_MODELS` name it.
    pub name: String,
    pub path: PathBuf,
    /// `bert4rec`, `sasrec`, `transition`, `ease` or `blend`.
    pub architecture: String,
    pub dataset: MovieLensVersion,
    /// Seconds since the Unix epoch when it was trained.
    pub created_at: u64,
    /// Validation NDCG@10 (full ranking) recorded when it was trained.
    pub valid_ndcg10: Option<f64>,
    /// Test NDCG@10 (full ranking), where the training recorded it.
    pub test_ndcg10: Option<f64>,
}

/// Reads the registry entry of one checkpoint directory; `None` when it is not a readable
/// checkpoint of this build.
pub fn entry(dir: &Path) -> Option<ModelEntry> {
    let header = CheckpointHeader::read(dir).ok()?;
    let (architecture, metrics) = match header.kind() {
        CheckpointKind::Network => {
            let cfg = CheckpointConfig::read(dir).ok()?;
            (cfg.model.architecture.name().to_string(), cfg.metrics)
        }
        CheckpointKind::Baseline => {
            let cfg = BaselineConfig::read(dir).ok()?;
            (cfg.architecture.name().to_string(), cfg.metrics)
        }
    };
    let ndcg = |stage: &str| metrics.get(stage)?.get("ndcg_10")?.as_f64();
    Some(ModelEntry {
        name: dir.file_name()?.to_string_lossy().into_owned(),
        path: dir.to_path_buf(),
        architecture,
        dataset: header.dataset,
        created_at: header.created_at,
        valid_ndcg10: ndcg("valid"),
        test_ndcg10: ndcg("test"),
    })
}

/// Every readable checkpoint directly under `root` (of `dataset`, when given), newest first.
pub fn list(root: &Path, dataset: Option<MovieLensVersion>) -> Vec<ModelEntry> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut entries: Vec<ModelEntry> = dirs
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| entry(&p))
        .filter(|e| dataset.is_none_or(|d| e.dataset == d))
        .collect();
    entries.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.name.cmp(&a.name))
    });
    entries
}

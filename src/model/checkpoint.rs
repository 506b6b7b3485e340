//! Checkpoint directories: `model.safetensors` plus `config.json` (hyperparameters, dataset,
//! item mapping, popularity for the fallback, training settings, best epoch and metrics).
//! Serving needs nothing else.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::{Architecture, ItemVocab, ModelConfig, ModelError, SeqModel};
use crate::config::MovieLensVersion;

/// File name of the weights inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the configuration inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";

/// How the training sequences were built; evaluation rebuilds the same split from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSettings {
    pub min_rating: Option<f32>,
    pub min_seq_len: usize,
    pub min_item_count: usize,
}

impl Default for DataSettings {
    fn default() -> Self {
        Self {
            min_rating: None,
            min_seq_len: 5,
            min_item_count: 1,
        }
    }
}

/// The checkpoint format this build writes. Format 2 gave SASRec the paper's embedding scaling
/// and output layer (no projection head), so format-1 SASRec weights no longer fit it.
pub const FORMAT: u32 = 2;

/// Everything in `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointConfig {
    /// Format version of this file.
    pub format: u32,
    pub dataset: MovieLensVersion,
    pub model: ModelConfig,
    /// MovieLens ids in item-index order.
    pub vocab: ItemVocab,
    /// Training-set interaction count per item index: the fallback for empty histories.
    pub popularity: Vec<u32>,
    pub data: DataSettings,
    /// The training hyperparameters, as given (free-form, for the record).
    pub training: serde_json::Value,
    /// The epoch whose weights are stored (1-based; 0 before any training).
    pub best_epoch: usize,
    /// Validation metrics of the stored weights.
    pub metrics: serde_json::Value,
    /// Seconds since the Unix epoch when the run started.
    pub created_at: u64,
    /// The git commit of the build that trained it, when the build knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// The git commit this binary was built from (set by `build.rs` from `git rev-parse HEAD`, or
/// by the `MOVIEREC_COMMIT` environment variable of the build, e.g. in an image built without
/// `.git`).
pub const BUILD_COMMIT: Option<&str> = option_env!("MOVIEREC_COMMIT");

impl CheckpointConfig {
    /// Reads `dir/config.json`.
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        let cfg: Self = read_config_json(dir)?;
        cfg.model.validate()?;
        let stale_sasrec = cfg.format < 2 && cfg.model.architecture == Architecture::SasRec;
        if cfg.format > FORMAT || stale_sasrec {
            return Err(ModelError::Invalid(format!(
                "{}: checkpoint format {} of a {} model cannot be read by this build (format {FORMAT}); train it again",
                dir.display(),
                cfg.format,
                cfg.model.architecture,
            )));
        }
        if cfg.vocab.len() != cfg.model.items || cfg.popularity.len() != cfg.model.items {
            return Err(ModelError::Invalid(format!(
                "{}: {} items in the model, {} in the vocabulary, {} popularity counts",
                dir.display(),
                cfg.model.items,
                cfg.vocab.len(),
                cfg.popularity.len()
            )));
        }
        Ok(cfg)
    }

    /// Writes `dir/config.json` (through a temporary file, then a rename).
    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|source| ModelError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomically(&path, text.as_bytes())
    }
}

/// Parses `dir/config.json` as `T`.
fn read_config_json<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T, ModelError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ModelError::Json { path, source })
}

/// Records what `movierec evaluate` measured (full ranking) in `dir/config.json`, whatever the
/// checkpoint's kind: `metrics.valid`, `metrics.test` and `metrics.evaluated_at` (seconds since
/// the Unix epoch); the rest of the file is kept as it is. The registry (`movierec models list`,
/// `GET /models`) shows them.
pub fn record_evaluation(
    dir: &Path,
    valid: &impl serde::Serialize,
    test: &impl serde::Serialize,
    evaluated_at: u64,
) -> Result<(), ModelError> {
    let path = dir.join(CONFIG_FILE);
    let json_error = |source| ModelError::Json {
        path: path.clone(),
        source,
    };
    let mut config: serde_json::Value = read_config_json(dir)?;
    let Some(fields) = config.as_object_mut() else {
        return Err(ModelError::Invalid(format!(
            "{}: not a JSON object",
            path.display()
        )));
    };
    let metrics = fields
        .entry("metrics")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if !metrics.is_object() {
        *metrics = serde_json::Value::Object(Default::default());
    }
    if let Some(m) = metrics.as_object_mut() {
        m.insert(
            "valid".into(),
            serde_json::to_value(valid).map_err(json_error)?,
        );
        m.insert(
            "test".into(),
            serde_json::to_value(test).map_err(json_error)?,
        );
        m.insert("evaluated_at".into(), evaluated_at.into());
    }
    let text = serde_json::to_string_pretty(&config).map_err(json_error)?;
    write_atomically(&path, text.as_bytes())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees half
/// a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let tmp = path.with_extension("tmp");
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes the weights of `varmap` and the configuration into `dir` (created if missing).
pub fn save(dir: &Path, varmap: &VarMap, cfg: &CheckpointConfig) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp = dir.join("model.safetensors.tmp");
    varmap.save(&tmp)?;
    let path = dir.join(WEIGHTS_FILE);
    std::fs::rename(&tmp, &path).map_err(|source| ModelError::Io { path, source })?;
    cfg.write(dir)
}

/// Reads the weights of `dir` as named tensors.
pub fn read_weights(dir: &Path) -> Result<HashMap<String, Tensor>, ModelError> {
    let path = dir.join(WEIGHTS_FILE);
    if !path.is_file() {
        return Err(ModelError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no weights file"),
        });
    }
    Ok(candle_core::safetensors::load(&path, &Device::Cpu)?)
}

/// Loads a checkpoint for inference: its configuration and network.
pub fn load(dir: &Path) -> Result<(CheckpointConfig, SeqModel), ModelError> {
    let cfg = CheckpointConfig::read(dir)?;
    let tensors = read_weights(dir)?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = SeqModel::load(vb, &cfg.model)?;
    Ok((cfg, model))
}

/// What a checkpoint directory holds, told apart by the shape of its `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointKind {
    /// BERT4Rec or SASRec: `model` holds the network's shape ([`CheckpointConfig`]).
    Network,
    /// A non-neural model (transition, EASE): `architecture` at the top
    /// ([`BaselineConfig`](crate::baseline::stored::BaselineConfig)).
    Baseline,
}

/// The fields every checkpoint's `config.json` has, whatever its model.
#[derive(Debug, Deserialize)]
pub struct CheckpointHeader {
    pub dataset: MovieLensVersion,
    pub created_at: u64,
    /// Present in network checkpoints only.
    #[serde(default)]
    model: Option<serde_json::Value>,
}

impl CheckpointHeader {
    /// Reads the common fields of `dir/config.json`.
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        read_config_json(dir)
    }

    /// Which kind of model the checkpoint holds.
    pub fn kind(&self) -> CheckpointKind {
        if self.model.is_some() {
            CheckpointKind::Network
        } else {
            CheckpointKind::Baseline
        }
    }
}

/// Which kind of model the checkpoint directory `dir` holds.
pub fn kind(dir: &Path) -> Result<CheckpointKind, ModelError> {
    Ok(CheckpointHeader::read(dir)?.kind())
}

/// The newest checkpoint directory directly under `root` trained on `version` (by `created_at`,
/// then name), of any model type, if any.
pub fn latest_checkpoint(root: &Path, version: MovieLensVersion) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(WEIGHTS_FILE).is_file())
        .filter_map(|p| {
            let header = CheckpointHeader::read(&p).ok()?;
            let readable = match header.kind() {
                CheckpointKind::Network => CheckpointConfig::read(&p).is_ok(),
                CheckpointKind::Baseline => {
                    crate::baseline::stored::BaselineConfig::read(&p).is_ok()
                }
            };
            (readable && header.dataset == version).then_some((header.created_at, p))
        })
        .max()
        .map(|(_, p)| p)
}

//! Checkpoints of the non-neural models: `model.safetensors` (the transition counts as sparse
//! rows, or EASE's dense item × item weights) plus a `config.json` with the same common fields
//! as a network's (dataset, vocabulary, popularity, data settings, metrics, creation time), so
//! discovery, serving and evaluation treat every model alike.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::blend::{Blend, BlendError};
use super::{Ease, Transition, TransitionError, TransitionParams};
use crate::config::MovieLensVersion;
use crate::model::checkpoint::{self, CONFIG_FILE, CheckpointKind, DataSettings, WEIGHTS_FILE};
use crate::model::{ItemVocab, Precision};
use crate::recommend::ModelInfo;
use crate::recommend::{ItemScores, NetworkScores};

/// The format of a non-neural checkpoint this build writes.
pub const BASELINE_FORMAT: u32 = 1;

/// Why a non-neural checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Tensors {
        path: PathBuf,
        source: candle_core::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Transition {
        path: PathBuf,
        source: TransitionError,
    },
    #[error("{path}: {source}")]
    Blend { path: PathBuf, source: BlendError },
    /// A member of a blend could not be loaded.
    #[error("blend member {path}: {message}")]
    Member { path: PathBuf, message: String },
}

/// The non-neural model types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BaselineKind {
    /// Which movies follow which ([`Transition`]).
    Transition,
    /// EASE's closed-form item × item weights ([`Ease`]).
    Ease,
    /// Other checkpoints' standardised scores, weighted ([`Blend`]).
    Blend,
}

impl BaselineKind {
    /// The name used in `config.json`, directory names and API answers.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transition => "transition",
            Self::Ease => "ease",
            Self::Blend => "blend",
        }
    }
}

/// Everything in a non-neural checkpoint's `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineConfig {
    pub format: u32,
    pub architecture: BaselineKind,
    pub dataset: MovieLensVersion,
    /// MovieLens ids in item-index order.
    pub vocab: ItemVocab,
    /// Training-set interaction count per item index: the fallback for empty histories.
    pub popularity: Vec<u32>,
    pub data: DataSettings,
    /// The model's settings: [`TransitionParams`], or `{"lambda": λ}` for EASE.
    pub settings: serde_json::Value,
    /// Validation and test metrics measured when it was fitted, and the settings tried.
    pub metrics: serde_json::Value,
    /// Seconds since the Unix epoch when it was fitted.
    pub created_at: u64,
    /// The commit of the build that fitted it, when known.
    #[serde(default)]
    pub commit: Option<String>,
}

impl BaselineConfig {
    /// Reads and checks `dir/config.json`.
    pub fn read(dir: &Path) -> Result<Self, BaselineError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| BaselineError::Io {
            path: path.clone(),
            source,
        })?;
        let cfg: Self = serde_json::from_str(&text).map_err(|source| BaselineError::Json {
            path: path.clone(),
            source,
        })?;
        let invalid = |message: String| BaselineError::Invalid {
            path: path.clone(),
            message,
        };
        if cfg.format > BASELINE_FORMAT {
            return Err(invalid(format!(
                "format {} is newer than this build's {BASELINE_FORMAT}",
                cfg.format
            )));
        }
        if cfg.vocab.is_empty() || cfg.vocab.len() != cfg.popularity.len() {
            return Err(invalid(format!(
                "{} items in the vocabulary, {} popularity counts",
                cfg.vocab.len(),
                cfg.popularity.len()
            )));
        }
        Ok(cfg)
    }
}

/// A fitted non-neural model.
pub enum BaselineModel {
    Transition(Transition),
    Ease(Ease),
    Blend(Blend),
}

/// A blend's settings: its members (checkpoint directories, relative to the blend's parent
/// directory, or absolute) and their weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlendSettings {
    pub members: Vec<PathBuf>,
    pub weights: Vec<f32>,
}

/// A non-neural model with its configuration: what `train` writes and workers load.
pub struct StoredBaseline {
    pub config: BaselineConfig,
    pub model: BaselineModel,
}

#[derive(Deserialize)]
struct EaseSettingsJson {
    lambda: f64,
}

impl StoredBaseline {
    /// Writes `model.safetensors` and `config.json` into `dir` (created if missing); the
    /// weights go through a temporary file and a rename, the configuration last.
    pub fn save(&self, dir: &Path) -> Result<(), BaselineError> {
        std::fs::create_dir_all(dir).map_err(|source| BaselineError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let tensor_err = |source| BaselineError::Tensors {
            path: weights_path.clone(),
            source,
        };
        let mut tensors = HashMap::new();
        match &self.model {
            BaselineModel::Transition(t) => {
                let (starts, cols, weights) = t.parts();
                let cpu = &Device::Cpu;
                tensors.insert(
                    "row_start".to_string(),
                    Tensor::from_slice(starts, starts.len(), cpu).map_err(tensor_err)?,
                );
                tensors.insert(
                    "cols".to_string(),
                    Tensor::from_slice(cols, cols.len(), cpu).map_err(tensor_err)?,
                );
                tensors.insert(
                    "weights".to_string(),
                    Tensor::from_slice(weights, weights.len(), cpu).map_err(tensor_err)?,
                );
            }
            BaselineModel::Ease(e) => {
                let n = e.items();
                tensors.insert(
                    "weights".to_string(),
                    Tensor::from_slice(e.weights(), (n, n), &Device::Cpu).map_err(tensor_err)?,
                );
            }
            BaselineModel::Blend(b) => {
                let w = b.weights();
                tensors.insert(
                    "member_weights".to_string(),
                    Tensor::from_slice(w, w.len(), &Device::Cpu).map_err(tensor_err)?,
                );
            }
        }
        let tmp = dir.join("model.safetensors.tmp");
        candle_core::safetensors::save(&tensors, &tmp).map_err(tensor_err)?;
        std::fs::rename(&tmp, &weights_path).map_err(|source| BaselineError::Io {
            path: weights_path.clone(),
            source,
        })?;
        let path = dir.join(CONFIG_FILE);
        let text =
            serde_json::to_string_pretty(&self.config).map_err(|source| BaselineError::Json {
                path: path.clone(),
                source,
            })?;
        checkpoint::write_atomically(&path, text.as_bytes()).map_err(|e| BaselineError::Invalid {
            path,
            message: e.to_string(),
        })
    }

    /// Loads the checkpoint in `dir`.
    pub fn load(dir: &Path) -> Result<Self, BaselineError> {
        let config = BaselineConfig::read(dir)?;
        let path = dir.join(WEIGHTS_FILE);
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu).map_err(|source| {
            BaselineError::Tensors {
                path: path.clone(),
                source,
            }
        })?;
        let invalid = |message: String| BaselineError::Invalid {
            path: path.clone(),
            message,
        };
        let vec_of = |name: &str| -> Result<&Tensor, BaselineError> {
            tensors
                .get(name)
                .ok_or_else(|| invalid(format!("no tensor named {name}")))
        };
        let tensor_err = |source| BaselineError::Tensors {
            path: path.clone(),
            source,
        };
        let items = config.vocab.len();
        let model = match config.architecture {
            BaselineKind::Transition => {
                let params: TransitionParams = settings_of(&config, dir)?;
                let starts = vec_of("row_start")?.to_vec1::<u32>().map_err(tensor_err)?;
                let cols = vec_of("cols")?.to_vec1::<u32>().map_err(tensor_err)?;
                let weights = vec_of("weights")?.to_vec1::<f32>().map_err(tensor_err)?;
                let t = Transition::from_parts(params, starts, cols, weights, &config.popularity)
                    .map_err(|source| BaselineError::Transition {
                    path: path.clone(),
                    source,
                })?;
                BaselineModel::Transition(t)
            }
            BaselineKind::Ease => {
                let settings: EaseSettingsJson = settings_of(&config, dir)?;
                let weights = vec_of("weights")?
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(tensor_err)?;
                let ease = Ease::from_parts(items, settings.lambda, weights)
                    .ok_or_else(|| invalid(format!("EASE weights are not {items} × {items}")))?;
                BaselineModel::Ease(ease)
            }
            BaselineKind::Blend => {
                let settings: BlendSettings = settings_of(&config, dir)?;
                BaselineModel::Blend(load_blend(dir, &settings, &config.vocab)?)
            }
        };
        Ok(Self { config, model })
    }

    /// What it answers as.
    pub fn info(&self, dir: &Path) -> ModelInfo {
        info(&self.config, dir)
    }

    /// Its configuration and its scores.
    pub fn into_parts(self) -> (BaselineConfig, Box<dyn ItemScores>) {
        let scores: Box<dyn ItemScores> = match self.model {
            BaselineModel::Transition(t) => Box::new(t),
            BaselineModel::Ease(e) => Box::new(e),
            BaselineModel::Blend(b) => Box::new(b),
        };
        (self.config, scores)
    }
}

/// The model's settings in `config`, as `T`.
fn settings_of<T: serde::de::DeserializeOwned>(
    config: &BaselineConfig,
    dir: &Path,
) -> Result<T, BaselineError> {
    serde_json::from_value(config.settings.clone()).map_err(|source| BaselineError::Json {
        path: dir.join(CONFIG_FILE),
        source,
    })
}

/// Where a blend's member lives: relative paths are taken from the blend's parent directory
/// (the checkpoint root), so a root can be moved whole.
pub fn member_dir(blend_dir: &Path, member: &Path) -> PathBuf {
    if member.is_absolute() {
        member.to_path_buf()
    } else {
        blend_dir
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(member)
    }
}

fn load_blend(
    dir: &Path,
    settings: &BlendSettings,
    vocab: &ItemVocab,
) -> Result<Blend, BaselineError> {
    let mut members = Vec::with_capacity(settings.members.len());
    for member in &settings.members {
        let path = member_dir(dir, member);
        let fail = |message: String| BaselineError::Member {
            path: path.clone(),
            message,
        };
        let (scores, member_vocab) = load_member(&path).map_err(fail)?;
        if &member_vocab != vocab {
            return Err(fail("its items differ from the blend's".into()));
        }
        members.push(scores);
    }
    Blend::new(members, settings.weights.clone()).map_err(|source| BaselineError::Blend {
        path: dir.to_path_buf(),
        source,
    })
}

/// A member's scores and items; a blend cannot be a member (no nesting, so no cycles).
fn load_member(dir: &Path) -> Result<(Box<dyn ItemScores>, ItemVocab), String> {
    if checkpoint::kind(dir).map_err(|e| e.to_string())? == CheckpointKind::Baseline
        && BaselineConfig::read(dir)
            .map_err(|e| e.to_string())?
            .architecture
            == BaselineKind::Blend
    {
        return Err("a blend cannot be a member of another blend".into());
    }
    let (scores, _, vocab) = load_scores(dir, Precision::F32).map_err(|e| e.to_string())?;
    Ok((scores, vocab))
}

/// Loads the scores of a checkpoint of any kind, with its architecture's name and items; a
/// network's dense layers compute in `precision`.
pub fn load_scores(
    dir: &Path,
    precision: Precision,
) -> Result<(Box<dyn ItemScores>, String, ItemVocab), BaselineError> {
    let fail = |message: String| BaselineError::Member {
        path: dir.to_path_buf(),
        message,
    };
    match checkpoint::kind(dir).map_err(|e| fail(e.to_string()))? {
        CheckpointKind::Network => {
            let (cfg, mut model) = checkpoint::load(dir).map_err(|e| fail(e.to_string()))?;
            model
                .set_precision(precision)
                .map_err(|e| fail(e.to_string()))?;
            let scores = NetworkScores::new(model).map_err(|e| fail(e.to_string()))?;
            Ok((
                Box::new(scores),
                cfg.model.architecture.name().to_string(),
                cfg.vocab,
            ))
        }
        CheckpointKind::Baseline => {
            let stored = StoredBaseline::load(dir)?;
            let name = stored.config.architecture.name().to_string();
            let (cfg, scores) = stored.into_parts();
            Ok((scores, name, cfg.vocab))
        }
    }
}

/// What a non-neural checkpoint answers as, from its `config.json` alone.
pub fn info(config: &BaselineConfig, dir: &Path) -> ModelInfo {
    let max_len = match config.architecture {
        BaselineKind::Transition => {
            serde_json::from_value::<TransitionParams>(config.settings.clone())
                .map_or(0, |p| p.history)
        }
        BaselineKind::Ease | BaselineKind::Blend => 0,
    };
    ModelInfo {
        architecture: config.architecture.name().to_string(),
        dataset: config.dataset.name().to_string(),
        checkpoint: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        items: config.vocab.len(),
        max_len,
        precision: crate::model::Precision::F32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::ItemScores;

    fn config(architecture: BaselineKind, settings: serde_json::Value) -> BaselineConfig {
        BaselineConfig {
            format: BASELINE_FORMAT,
            architecture,
            dataset: MovieLensVersion::Ml100k,
            vocab: ItemVocab::new(vec![10, 20, 30]),
            popularity: vec![3, 2, 1],
            data: DataSettings::default(),
            settings,
            metrics: serde_json::json!({}),
            created_at: 7,
            commit: None,
        }
    }

    fn rows(scores: &dyn ItemScores) -> Vec<Vec<f32>> {
        scores.score_rows(&[&[0], &[1, 2]]).unwrap()
    }

    #[test]
    fn both_kinds_score_the_same_after_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let params = TransitionParams::default();
        let seqs: Vec<&[u32]> = vec![&[0, 1, 2], &[2, 1, 0, 1]];
        let t = Transition::fit(&seqs, &[3, 2, 1], params).unwrap();
        let want = rows(&t);
        let stored = StoredBaseline {
            config: config(
                BaselineKind::Transition,
                serde_json::to_value(params).unwrap(),
            ),
            model: BaselineModel::Transition(t),
        };
        let at = dir.path().join("t");
        stored.save(&at).unwrap();
        let back = StoredBaseline::load(&at).unwrap();
        assert_eq!(back.info(&at).architecture, "transition");
        assert_eq!(back.info(&at).max_len, params.history);
        assert_eq!(rows(back.into_parts().1.as_ref()), want);

        let ease =
            Ease::from_parts(3, 5.0, vec![0.0, 0.5, 0.1, 0.5, 0.0, 0.2, 0.1, 0.2, 0.0]).unwrap();
        let want = rows(&ease);
        let stored = StoredBaseline {
            config: config(BaselineKind::Ease, serde_json::json!({ "lambda": 5.0 })),
            model: BaselineModel::Ease(ease),
        };
        let at = dir.path().join("e");
        stored.save(&at).unwrap();
        let back = StoredBaseline::load(&at).unwrap();
        assert_eq!(rows(back.into_parts().1.as_ref()), want);
        // An EASE row is the sum of the history's weight rows: items 1 and 2.
        assert_eq!(want[1], vec![0.6, 0.2, 0.2]);
    }

    #[test]
    fn a_damaged_checkpoint_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let ease = Ease::from_parts(3, 5.0, vec![0.0; 9]).unwrap();
        let stored = StoredBaseline {
            config: config(BaselineKind::Ease, serde_json::json!({ "lambda": 5.0 })),
            model: BaselineModel::Ease(ease),
        };
        stored.save(dir.path()).unwrap();
        // A vocabulary of a different size than the weights.
        let mut cfg = stored.config.clone();
        cfg.vocab = ItemVocab::new(vec![1, 2]);
        cfg.popularity = vec![1, 1];
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            serde_json::to_string(&cfg).unwrap(),
        )
        .unwrap();
        let err = StoredBaseline::load(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("2 × 2"),
            "{err}"
        );
        // A newer format.
        cfg.format = BASELINE_FORMAT + 1;
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            serde_json::to_string(&cfg).unwrap(),
        )
        .unwrap();
        assert!(BaselineConfig::read(dir.path()).is_err());
    }
}

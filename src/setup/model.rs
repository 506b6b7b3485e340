//! Which model a process serves, and loading it. The rule is written once, here: the
//! checkpoint given (`--checkpoint`), else the newest checkpoint of the release, else popularity
//! from the catalogue. Popularity without a checkpoint is a fallback, logged as a warning and
//! reported as not ready, unless the operator allowed it (`--allow-popularity-fallback`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SetupError;
use crate::baseline::stored::{self, BaselineConfig};
use crate::catalogue::Catalogue;
use crate::config::{CatalogueSettings, ModelSettings, MovieLensVersion};
use crate::model::checkpoint::{
    self, CONFIG_FILE, CheckpointConfig, CheckpointKind, latest_checkpoint,
};
use crate::model::{ModelError, Precision};
use crate::recommend::{ModelInfo, ModelSource, Recommender, Serving, model_info};
use crate::worker::{PopularityScorer, Scorer};

/// The model a process will serve, chosen from the settings before any weights are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// This checkpoint directory: the one given, or the newest of the release.
    Checkpoint(PathBuf),
    /// Popularity from the catalogue; the source says whether it was allowed or a fallback.
    Popularity(ModelSource),
}

/// A loaded model, ready to score, and what it serves.
pub struct LoadedModel {
    pub scorer: Arc<dyn Scorer>,
    pub serving: Serving,
}

/// The checkpoint of `release` that `settings` name: the one given (which must be a
/// checkpoint), else the newest under the checkpoint root; `None` when there is none.
pub fn find_checkpoint(
    release: MovieLensVersion,
    settings: &ModelSettings,
) -> Result<Option<PathBuf>, SetupError> {
    // `RECSYS_CHECKPOINT=` (empty) means none was given.
    let given = settings
        .checkpoint
        .as_ref()
        .filter(|dir| !dir.as_os_str().is_empty());
    match given {
        Some(dir) if !dir.join(CONFIG_FILE).is_file() => {
            Err(SetupError::NotACheckpoint { dir: dir.clone() })
        }
        Some(dir) => Ok(Some(dir.clone())),
        None => Ok(latest_checkpoint(
            &settings.checkpoints.checkpoint_root,
            release,
        )),
    }
}

/// Chooses the model of `release` from `settings`. A checkpoint that was given must exist; a
/// missing one is never replaced by popularity.
pub fn choose_model(
    release: MovieLensVersion,
    settings: &ModelSettings,
) -> Result<ModelChoice, SetupError> {
    if let Some(dir) = find_checkpoint(release, settings)? {
        return Ok(ModelChoice::Checkpoint(dir));
    }
    let root = &settings.checkpoints.checkpoint_root;
    if settings.allow_popularity_fallback {
        tracing::info!(
            root = %root.display(),
            "no checkpoint of {release}: serving popularity, as --allow-popularity-fallback allows"
        );
        return Ok(ModelChoice::Popularity(ModelSource::PopularityAllowed));
    }
    tracing::warn!(
        root = %root.display(),
        "no checkpoint of {release}: serving popularity as a fallback, and readiness is false; \
         train one with `movierec train --dataset {release}`, or pass \
         --allow-popularity-fallback to serve popularity on purpose"
    );
    Ok(ModelChoice::Popularity(ModelSource::PopularityFallback))
}

/// What `choice` serves, from the checkpoint's `config.json` or the catalogue's movie count,
/// without loading weights (an API process whose workers run elsewhere).
pub fn describe_model(
    choice: &ModelChoice,
    catalogue: &CatalogueSettings,
) -> Result<Serving, SetupError> {
    match choice {
        ModelChoice::Checkpoint(dir) => {
            let config_error = |source| SetupError::CheckpointConfig {
                dir: dir.clone(),
                source,
            };
            let model = match checkpoint::kind(dir).map_err(config_error)? {
                CheckpointKind::Network => {
                    model_info(&CheckpointConfig::read(dir).map_err(config_error)?, dir)
                }
                CheckpointKind::Baseline => {
                    let cfg = BaselineConfig::read(dir)
                        .map_err(|e| config_error(ModelError::Invalid(e.to_string())))?;
                    stored::info(&cfg, dir)
                }
            };
            Ok(Serving {
                model,
                source: ModelSource::Checkpoint,
            })
        }
        ModelChoice::Popularity(source) => {
            let cat = Catalogue::open_read_only(&catalogue.database_path())?;
            let items = usize::try_from(cat.movie_count()?).unwrap_or(0);
            Ok(Serving {
                model: ModelInfo::popularity(catalogue.version.name(), items),
                source: *source,
            })
        }
    }
}

/// Loads `choice`: the checkpoint's network, or popularity from the catalogue.
pub fn load_model(
    choice: &ModelChoice,
    catalogue: &CatalogueSettings,
    precision: Precision,
) -> Result<LoadedModel, SetupError> {
    let (scorer, source): (Arc<dyn Scorer>, ModelSource) = match choice {
        ModelChoice::Checkpoint(dir) => (
            Arc::new(load_checkpoint(dir, precision)?),
            ModelSource::Checkpoint,
        ),
        ModelChoice::Popularity(source) => {
            let cat = Catalogue::open_read_only(&catalogue.database_path())?;
            let scorer = PopularityScorer::from_catalogue(&cat, catalogue.version.name())?;
            (Arc::new(scorer), *source)
        }
    };
    let serving = Serving {
        model: scorer.info(),
        source,
    };
    tracing::info!(
        architecture = %serving.model.architecture,
        dataset = %serving.model.dataset,
        checkpoint = %serving.model.checkpoint,
        movies = serving.model.items,
        ready = serving.ready(),
        "model loaded"
    );
    Ok(LoadedModel { scorer, serving })
}

/// Loads the checkpoint directory `dir` for inference in `precision` (a network's; other
/// models ignore it).
pub fn load_checkpoint(dir: &Path, precision: Precision) -> Result<Recommender, SetupError> {
    if !dir.join(CONFIG_FILE).is_file() {
        return Err(SetupError::NotACheckpoint {
            dir: dir.to_path_buf(),
        });
    }
    Recommender::load(dir, precision).map_err(|source| SetupError::Checkpoint {
        dir: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CheckpointSettings;

    fn settings(root: &Path, checkpoint: Option<PathBuf>, allow: bool) -> ModelSettings {
        ModelSettings {
            checkpoint,
            models: None,
            checkpoints: CheckpointSettings {
                checkpoint_root: root.to_path_buf(),
            },
            allow_popularity_fallback: allow,
        }
    }

    #[test]
    fn without_a_checkpoint_popularity_is_a_fallback_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let release = MovieLensVersion::Ml100k;
        assert_eq!(
            choose_model(release, &settings(dir.path(), None, false)).unwrap(),
            ModelChoice::Popularity(ModelSource::PopularityFallback)
        );
        assert_eq!(
            choose_model(release, &settings(dir.path(), None, true)).unwrap(),
            ModelChoice::Popularity(ModelSource::PopularityAllowed)
        );
        let empty = Some(PathBuf::new());
        assert_eq!(
            choose_model(release, &settings(dir.path(), empty, false)).unwrap(),
            ModelChoice::Popularity(ModelSource::PopularityFallback),
            "an empty RECSYS_CHECKPOINT is no checkpoint"
        );
    }

    /// A checkpoint directory with a config and an (unread) weights file.
    fn checkpoint(root: &Path, name: &str, dataset: MovieLensVersion, created_at: u64) -> PathBuf {
        use crate::model::checkpoint::{DataSettings, FORMAT, WEIGHTS_FILE};
        use crate::model::{Architecture, ItemVocab, ModelConfig};
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(WEIGHTS_FILE), b"").unwrap();
        CheckpointConfig {
            format: FORMAT,
            dataset,
            model: ModelConfig {
                architecture: Architecture::SasRec,
                items: 2,
                hidden: 8,
                layers: 1,
                heads: 2,
                max_len: 4,
                dropout: 0.1,
            },
            vocab: ItemVocab::new(vec![1, 2]),
            popularity: vec![3, 1],
            data: DataSettings::default(),
            training: serde_json::Value::Null,
            best_epoch: 1,
            metrics: serde_json::Value::Null,
            created_at,
            commit: None,
        }
        .write(&dir)
        .unwrap();
        dir
    }

    #[test]
    fn the_newest_checkpoint_of_the_release_is_chosen_and_a_given_one_wins() {
        let root = tempfile::tempdir().unwrap();
        let old = checkpoint(root.path(), "old", MovieLensVersion::Ml100k, 10);
        let new = checkpoint(root.path(), "new", MovieLensVersion::Ml100k, 20);
        checkpoint(root.path(), "other", MovieLensVersion::LatestSmall, 30);
        let release = MovieLensVersion::Ml100k;
        assert_eq!(
            choose_model(release, &settings(root.path(), None, false)).unwrap(),
            ModelChoice::Checkpoint(new)
        );
        assert_eq!(
            choose_model(release, &settings(root.path(), Some(old.clone()), false)).unwrap(),
            ModelChoice::Checkpoint(old.clone())
        );
        let info = describe_model(
            &ModelChoice::Checkpoint(old),
            &CatalogueSettings {
                version: release,
                database_root: root.path().to_path_buf(),
            },
        )
        .unwrap();
        assert_eq!(info.source, ModelSource::Checkpoint);
        assert_eq!(
            (
                info.model.architecture.as_str(),
                info.model.checkpoint.as_str()
            ),
            ("sasrec", "old")
        );
    }

    #[test]
    fn a_given_checkpoint_must_exist_even_when_popularity_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = choose_model(
            MovieLensVersion::Ml100k,
            &settings(dir.path(), Some(missing.clone()), true),
        )
        .unwrap_err();
        assert!(matches!(err, SetupError::NotACheckpoint { ref dir } if *dir == missing));
        assert!(err.to_string().contains("movierec train"), "{err}");
        assert!(matches!(
            load_checkpoint(&missing, Precision::F32),
            Err(SetupError::NotACheckpoint { .. })
        ));
    }
}

//! The set of models a process serves: the models `RECSYS_MODELS` names (or the one model
//! [`choose_model`](super::choose_model) picks), each loaded behind its own batcher, and rebuilt
//! on a promotion, reusing the model threads of the models that stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SetupError;
use super::model::{LoadedModel, choose_model, load_checkpoint, load_model};
use super::runner::batch_config;
use crate::config::{CatalogueSettings, ModelSettings, WorkerSettings};
use crate::model::Precision;
use crate::model::checkpoint::CONFIG_FILE;
use crate::recommend::{ModelSource, Serving};
use crate::registry::specs::{self, ModelSpec};
use crate::worker::{Arm, BatchConfig, Batcher, ModelSet, Scorer, WorkerMetrics};

/// Loads models by name from the checkpoint root and starts their model threads.
pub struct ModelLoader {
    root: PathBuf,
    batch: BatchConfig,
    metrics: Option<WorkerMetrics>,
    /// What the networks it loads compute in.
    precision: Precision,
}

impl ModelLoader {
    /// A loader over the checkpoint root `root`, batching and in the precision `settings` say;
    /// an error where the CPU cannot run that precision.
    pub fn new(
        root: &Path,
        settings: &WorkerSettings,
        metrics: Option<WorkerMetrics>,
    ) -> Result<Self, SetupError> {
        let precision = settings
            .precision
            .resolve()
            .map_err(SetupError::Precision)?;
        Ok(Self {
            root: root.to_path_buf(),
            batch: batch_config(settings),
            metrics,
            precision,
        })
    }

    /// What the networks it loads compute in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// A loader used only to check that models load (an API process whose workers run
    /// elsewhere); its batching is the default.
    pub fn for_checks(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            batch: BatchConfig::default(),
            metrics: None,
            precision: Precision::F32,
        }
    }

    /// The checkpoint directory of the model `name`; refused unless it is a checkpoint directly
    /// under the root.
    pub fn checkpoint_dir(&self, name: &str) -> Result<PathBuf, SetupError> {
        specs::check_name(name)?;
        let dir = self.root.join(name);
        if !dir.join(CONFIG_FILE).is_file() {
            return Err(SetupError::UnknownModel {
                name: name.to_owned(),
                root: self.root.clone(),
            });
        }
        Ok(dir)
    }

    fn arm(
        &self,
        name: &str,
        weight: f64,
        scorer: Arc<dyn Scorer>,
        source: ModelSource,
    ) -> Result<Arm, SetupError> {
        let batcher = Batcher::start(scorer, self.batch, self.metrics.clone(), name)
            .map_err(SetupError::ModelThread)?;
        Ok(Arm {
            name: name.to_owned(),
            weight,
            serving: Serving {
                model: batcher.info().clone(),
                source,
            },
            batcher,
        })
    }

    /// One model with all the traffic: the one [`choose_model`] picked and [`load_model`]
    /// loaded.
    pub fn single(&self, loaded: LoadedModel) -> Result<ModelSet, SetupError> {
        let name = loaded.serving.model.name().to_owned();
        let arm = self.arm(&name, 1.0, loaded.scorer, loaded.serving.source)?;
        Ok(ModelSet::new(vec![arm])?)
    }

    /// The set `specs` name. Models already in `current` keep their model threads (only their
    /// weights change); the others are loaded. Nothing of `current` changes on an error.
    pub fn load(
        &self,
        specs: &[ModelSpec],
        current: Option<&ModelSet>,
    ) -> Result<ModelSet, SetupError> {
        specs::check_set(specs)?;
        let mut arms = Vec::with_capacity(specs.len());
        for spec in specs {
            if let Some(arm) = current.and_then(|set| set.get(&spec.name)) {
                arms.push(Arm {
                    weight: spec.weight,
                    ..arm.clone()
                });
                continue;
            }
            let dir = self.checkpoint_dir(&spec.name)?;
            let scorer = Arc::new(load_checkpoint(&dir, self.precision)?);
            tracing::info!(model = %spec.name, weight = spec.weight, "model loaded");
            arms.push(self.arm(&spec.name, spec.weight, scorer, ModelSource::Checkpoint)?);
        }
        Ok(ModelSet::new(arms)?)
    }
}

/// The set a process starts with: the models of `RECSYS_MODELS` when it is set, else the one
/// model [`choose_model`] picks (a checkpoint, or popularity).
pub fn initial_set(
    settings: &ModelSettings,
    catalogue: &CatalogueSettings,
    loader: &ModelLoader,
) -> Result<ModelSet, SetupError> {
    match configured_specs(settings)? {
        Some(specs) => loader.load(&specs, None),
        None => {
            let choice = choose_model(catalogue.version, settings)?;
            loader.single(load_model(&choice, catalogue, loader.precision)?)
        }
    }
}

/// The models `RECSYS_MODELS` names, if it is set (an empty value is unset).
pub fn configured_specs(settings: &ModelSettings) -> Result<Option<Vec<ModelSpec>>, SetupError> {
    let Some(text) = settings.models.as_deref().filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    if settings
        .checkpoint
        .as_ref()
        .is_some_and(|c| !c.as_os_str().is_empty())
    {
        return Err(SetupError::ModelsAndCheckpoint);
    }
    Ok(Some(specs::parse(text)?))
}

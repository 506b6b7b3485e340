//! Where a run's settings come from, the way RecBole layers its YAML files: the command line
//! over a `--config` TOML file, over the preset shipped for the model and release
//! (`resources/presets/<model>-<release>.toml`, built into the binary), over the groups'
//! [`Default`]s. A preset names only what differs from the defaults.

use crate::config::MovieLensVersion;
use crate::model::Architecture;
use crate::train::TrainError;
use crate::train::settings::TrainSettings;

/// The shipped presets: model, release, file name and text.
const PRESETS: [(Architecture, MovieLensVersion, &str, &str); 5] = [
    (
        Architecture::SasRec,
        MovieLensVersion::Ml100k,
        "sasrec-ml-100k.toml",
        include_str!("../../resources/presets/sasrec-ml-100k.toml"),
    ),
    (
        Architecture::SasRec,
        MovieLensVersion::LatestSmall,
        "sasrec-ml-latest-small.toml",
        include_str!("../../resources/presets/sasrec-ml-latest-small.toml"),
    ),
    (
        Architecture::SasRec,
        MovieLensVersion::Ml25m,
        "sasrec-ml-25m.toml",
        include_str!("../../resources/presets/sasrec-ml-25m.toml"),
    ),
    (
        Architecture::Bert4Rec,
        MovieLensVersion::Ml100k,
        "bert4rec-ml-100k.toml",
        include_str!("../../resources/presets/bert4rec-ml-100k.toml"),
    ),
    (
        Architecture::Bert4Rec,
        MovieLensVersion::LatestSmall,
        "bert4rec-ml-latest-small.toml",
        include_str!("../../resources/presets/bert4rec-ml-latest-small.toml"),
    ),
];

/// One layer of settings: TOML text, and where it came from (named in errors).
#[derive(Debug, Clone)]
pub struct Layer {
    pub origin: String,
    pub text: String,
}

impl Layer {
    /// The preset shipped for `architecture` on `dataset`, if there is one.
    pub fn preset(architecture: Architecture, dataset: MovieLensVersion) -> Option<Self> {
        PRESETS
            .iter()
            .find(|(a, d, _, _)| (*a, *d) == (architecture, dataset))
            .map(|(_, _, name, text)| Self {
                origin: format!("preset resources/presets/{name}"),
                text: (*text).to_owned(),
            })
    }

    /// A settings file given with `--config`.
    pub fn file(path: &std::path::Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            origin: path.display().to_string(),
            text,
        })
    }
}

/// The settings of `layers`, each over the ones before it, over the defaults. Each layer must
/// be valid TOML naming known settings with values of the right type; the error names the
/// layer and the setting.
pub fn layered(layers: &[Layer]) -> Result<TrainSettings, TrainError> {
    let mut merged = toml::Table::new();
    for layer in layers {
        let invalid = |message: String| TrainError::Settings {
            origin: layer.origin.clone(),
            message,
        };
        let table = layer
            .text
            .parse::<toml::Table>()
            .map_err(|e| invalid(format!("{e}")))?;
        // Checked alone first, so that a misspelt setting is blamed on its own file.
        settings_of(table.clone()).map_err(|e| invalid(e.to_string()))?;
        merge(&mut merged, table);
    }
    settings_of(merged).map_err(|e| TrainError::Settings {
        origin: "the merged settings".into(),
        message: e.to_string(),
    })
}

/// The shipped recipe for `architecture` on `dataset`: its preset over the defaults (the
/// defaults alone where no preset is shipped).
pub fn preset_settings(
    architecture: Architecture,
    dataset: MovieLensVersion,
) -> Result<TrainSettings, TrainError> {
    let layers: Vec<Layer> = Layer::preset(architecture, dataset).into_iter().collect();
    layered(&layers)
}

/// The settings as a TOML document, every one of them spelt out.
pub fn to_toml(settings: &TrainSettings) -> Result<String, TrainError> {
    toml::to_string(settings).map_err(|e| TrainError::Settings {
        origin: "the resolved settings".into(),
        message: e.to_string(),
    })
}

/// The settings `table` names, the defaults for the others.
fn settings_of(table: toml::Table) -> Result<TrainSettings, toml::de::Error> {
    toml::Value::Table(table).try_into()
}

/// Copies `over` into `base`, table by table, so that a layer naming one setting of a group
/// keeps the group's other settings from the layers below.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => merge(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::item_init::ItemInit;
    use crate::train::settings::LossWeighting;

    fn layer(origin: &str, text: &str) -> Layer {
        Layer {
            origin: origin.into(),
            text: text.into(),
        }
    }

    /// The shipped presets resolve to the recipes measured in docs/experiments.md; every other
    /// setting keeps its default. A change of a default that would move a recipe fails here.
    #[test]
    fn presets_resolve_to_the_measured_recipes() -> Result<(), TrainError> {
        use Architecture::{Bert4Rec, SasRec};
        use MovieLensVersion::{LatestSmall, Ml100k};
        let sasrec = preset_settings(SasRec, Ml100k)?;
        assert_eq!(sasrec.model.dropout, 0.3);
        assert_eq!(sasrec.data.sliding_step, 200);
        assert_eq!(sasrec.objective.loss_weighting, LossWeighting::Token);
        assert_eq!(sasrec.schedule.epochs, 160);
        let bert = preset_settings(Bert4Rec, Ml100k)?;
        assert_eq!(bert.objective.loss_weighting, LossWeighting::Token);
        assert_eq!((bert.model.dropout, bert.data.sliding_step), (0.1, 0));
        assert_eq!(bert.schedule.epochs, 600);
        let small = preset_settings(Bert4Rec, LatestSmall)?;
        assert_eq!(small.model.item_init, ItemInit::Cooccurrence);
        assert_eq!(small.optimiser.item_lr_scale, 0.1);
        assert_eq!(small.objective.loss_weighting, LossWeighting::Batch);
        assert_eq!(small.schedule.epochs, 520);
        let sasrec_small = preset_settings(SasRec, LatestSmall)?;
        assert_eq!(sasrec_small.schedule.epochs, 55);
        assert_eq!(sasrec_small.model.item_init, ItemInit::Random);
        // What every recipe shares: the README's `--eval-every 3 --patience 100`, AdamW at 1e-3
        // with decay 0.01, 100 warm-up steps, clip 5, batch 16, width 64, two blocks of two
        // heads over 200 items, and no time budget.
        for s in [&sasrec, &bert, &small, &sasrec_small] {
            assert_eq!((s.schedule.eval_every, s.schedule.patience), (3, 100));
            assert_eq!(
                (s.schedule.warmup_steps, s.schedule.time_budget_secs),
                (100, None)
            );
            assert_eq!((s.optimiser.lr, s.optimiser.weight_decay), (1e-3, 0.01));
            assert_eq!((s.optimiser.clip_norm, s.optimiser.batch_size), (5.0, 16));
            assert_eq!((s.model.hidden, s.model.layers, s.model.heads), (64, 2, 2));
            assert_eq!(
                (s.model.max_len, s.objective.negatives, s.seed),
                (200, 0, 42)
            );
            assert_eq!(
                (s.objective.mask_prob, s.objective.last_item_prob),
                (0.2, 0.5)
            );
            assert!(s.objective.last_item_cut);
        }
        // The 25M recipe: sampled softmax in batches of 128, 100 epochs validated every 5; the
        // rest as the defaults.
        let large = preset_settings(SasRec, MovieLensVersion::Ml25m)?;
        assert_eq!(
            (large.objective.negatives, large.optimiser.batch_size),
            (1000, 128)
        );
        assert_eq!((large.schedule.epochs, large.schedule.eval_every), (100, 5));
        let mut rest = large.clone();
        rest.objective.negatives = 0;
        rest.optimiser.batch_size = 16;
        rest.schedule.epochs = 200;
        rest.schedule.eval_every = 3;
        assert_eq!(rest, TrainSettings::default());
        assert_eq!(
            preset_settings(SasRec, MovieLensVersion::Ml1m)?,
            TrainSettings::default(),
            "no preset: the defaults"
        );
        Ok(())
    }

    /// A later layer wins setting by setting; a group it names keeps the others' settings.
    #[test]
    fn later_layers_override_setting_by_setting() -> Result<(), TrainError> {
        let preset = layer("preset", "seed = 7\n[model]\ndropout = 0.3\nhidden = 32\n");
        let config = layer("config", "[model]\nhidden = 48\n[schedule]\nepochs = 9\n");
        let s = layered(&[preset, config])?;
        assert_eq!((s.seed, s.model.dropout, s.model.hidden), (7, 0.3, 48));
        assert_eq!(s.schedule.epochs, 9);
        assert_eq!(s.model.layers, 2, "untouched: the default");
        assert_eq!(layered(&[])?, TrainSettings::default());
        Ok(())
    }

    /// A misspelt setting, a wrong type or broken TOML is an error naming the file and the key.
    #[test]
    fn bad_layers_are_refused_naming_the_file_and_the_setting() {
        let error = |text: &str| match layered(&[layer("ok.toml", ""), layer("my.toml", text)]) {
            Err(e) => e.to_string(),
            Ok(s) => format!("accepted: {s:?}"),
        };
        let typo = error("[model]\nhiden = 32\n");
        assert!(
            typo.starts_with("my.toml") && typo.contains("hiden"),
            "{typo}"
        );
        let wrong = error("[schedule]\nepochs = \"many\"\n");
        assert!(
            wrong.starts_with("my.toml") && wrong.contains("epochs"),
            "{wrong}"
        );
        let group = error("[modle]\nhidden = 32\n");
        assert!(group.contains("modle"), "{group}");
        let broken = error("[model\n");
        assert!(broken.starts_with("my.toml"), "{broken}");
        let removed = error("[optimiser]\nadam_beta1 = 0.9\n");
        assert!(removed.contains("adam_beta1"), "{removed}");
    }

    /// What `--print-config` writes reads back as the same settings.
    #[test]
    fn the_printed_settings_read_back_the_same() -> Result<(), TrainError> {
        let mut settings = preset_settings(Architecture::SasRec, MovieLensVersion::Ml100k)?;
        settings.data.min_rating = Some(3.5);
        settings.schedule.time_budget_secs = Some(60);
        let text = to_toml(&settings)?;
        assert!(text.contains("dropout = 0.3"), "{text}");
        assert_eq!(layered(&[layer("printed", &text)])?, settings);
        Ok(())
    }
}

//! The training loop, over named parts: the model's start ([`start_model`]), the epoch's
//! batches ([`Sampler`]), one step ([`TrainStep`]: shards, optimiser groups and schedule), the
//! run folder ([`RunDir`]), the best checkpoint and early stopping ([`BestKeeper`]) and
//! progress ([`Progress`]). The schedule ends at the last epoch whatever the machine's speed; a
//! time budget only cuts the run short, and the checkpoint records it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::batch::training_sequences;
use super::data::{Dataset, SplitUser, build_dataset, leave_one_out, train_popularity};
use super::evaluate::{Stage, cases, model_metrics};
use super::item_init::{ItemInit, cooccurrence_embeddings};
use super::keeper::{BestKeeper, RunOutcome, Verdict};
use super::options::StopReason;
use super::progress::{Progress, StepReport};
use super::run_dir::{EpochRecord, RunDir};
use super::sampler::Sampler;
use super::step::TrainStep;
use super::{TrainError, TrainOptions, TrainReport};
use crate::catalogue::Catalogue;
use crate::model::checkpoint::{self, BUILD_COMMIT, CheckpointConfig, WEIGHTS_FILE};
use crate::model::{ITEM_EMBEDDINGS, ModelConfig, SeqModel, reinitialise};

/// Trains on the catalogue `<database_root>/<dataset>.db`.
pub fn train(opts: &TrainOptions) -> Result<TrainReport, TrainError> {
    train_with_progress(opts, &mut |_| {})
}

/// [`train`], calling `on_epoch` after every epoch.
pub fn train_with_progress(
    opts: &TrainOptions,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<TrainReport, TrainError> {
    opts.settings.check()?;
    let catalogue = Catalogue::open_release(&opts.database_root, opts.dataset)?;
    let interactions = catalogue.interactions(opts.settings.data.min_rating)?;
    let dataset = build_dataset(&interactions, &opts.settings.data.filters());
    tracing::info!(
        users = dataset.users.len(),
        items = dataset.vocab.len(),
        interactions = interactions.len(),
        "dataset built"
    );
    fit(opts, &dataset, on_epoch)
}

/// Trains on an already built dataset (the catalogue is not read).
pub fn train_on_dataset(
    opts: &TrainOptions,
    dataset: &Dataset,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<TrainReport, TrainError> {
    opts.settings.check()?;
    fit(opts, dataset, on_epoch)
}

/// The training run itself, on settings [`super::TrainSettings::check`] accepted.
fn fit(
    opts: &TrainOptions,
    dataset: &Dataset,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<TrainReport, TrainError> {
    let started = Instant::now();
    let settings = &opts.settings;
    let schedule = &settings.schedule;
    let split = leave_one_out(dataset);
    if split.is_empty() {
        return Err(TrainError::Invalid(
            "no user has enough interactions to train on".into(),
        ));
    }
    let start = start_model(opts, dataset, &split)?;
    let cfg = start.cfg.clone();
    let run = RunDir::create(
        &opts.checkpoint_root,
        opts.dataset,
        cfg.architecture.name(),
        start.checkpoint.created_at,
    )?;
    let mut keeper = BestKeeper::new(run.path(), start.checkpoint, schedule.patience);
    let sampler = Sampler::new(
        training_sequences(&split, &cfg, settings.data.sliding_step),
        &cfg,
        settings,
    );
    if sampler.is_empty() {
        return Err(TrainError::Invalid("no training sequences".into()));
    }
    let items = named_var(&start.varmap, ITEM_EMBEDDINGS)?;
    let mut step = TrainStep::new(
        &start.model,
        start.varmap.all_vars(),
        &items,
        settings,
        sampler.steps_per_epoch(),
        start.epoch,
    )?;
    let valid_cases = cases(&split, Stage::Valid);
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(start.epoch as u64));
    let epochs_here = (schedule.epochs + 1).saturating_sub(start.epoch);
    let mut progress = Progress::new(opts.progress, epochs_here * sampler.steps_per_epoch());
    let budget_spent = || {
        schedule
            .time_budget_secs
            .is_some_and(|b| started.elapsed().as_secs_f64() >= b as f64)
    };

    let mut records: Vec<EpochRecord> = Vec::new();
    let mut stopped_by = StopReason::Schedule;
    for epoch in start.epoch..=schedule.epochs {
        let epoch_start = Instant::now();
        let drawn = sampler.epoch(&mut rng);
        let (mut loss_sum, mut batches, mut lr) = (0.0f64, 0usize, settings.optimiser.lr);
        // The steps run on a rayon worker: the matmuls and row ops it starts are split with
        // the pool's other threads directly, without waking this thread after each one.
        rayon::scope(|_| {
            for batch in &drawn.batches {
                let shards = sampler.shards(&drawn, batch, &mut rng)?;
                let outcome = step.run(&shards, &mut rng)?;
                (loss_sum, batches, lr) = (loss_sum + outcome.loss, batches + 1, outcome.lr);
                let done = batches * settings.optimiser.batch_size;
                progress.step(&StepReport {
                    epoch,
                    epochs: schedule.epochs,
                    loss: loss_sum / batches as f64,
                    seq_per_sec: done as f64 / epoch_start.elapsed().as_secs_f64(),
                });
                // Checked per batch, so that a slow epoch cannot overrun the budget by much.
                if budget_spent() {
                    break;
                }
            }
            Ok::<_, TrainError>(())
        })?;
        let train_secs = epoch_start.elapsed().as_secs_f64();
        let over_budget = budget_spent();
        let trained = (batches * settings.optimiser.batch_size).min(sampler.len());
        let mut record = EpochRecord {
            epoch,
            loss: loss_sum / batches.max(1) as f64,
            valid_hr10: None,
            valid_ndcg10: None,
            seconds: 0.0,
            seq_per_sec: trained as f64 / train_secs,
            lr,
        };
        let mut verdict = Verdict::NotBetter;
        if epoch % schedule.eval_every == 0 || epoch == schedule.epochs || over_budget {
            let m = model_metrics(&start.model, &valid_cases, 256)?;
            (record.valid_hr10, record.valid_ndcg10) = (Some(m.hr_10), Some(m.ndcg_10));
            verdict = keeper.observe(epoch, &m, &start.varmap)?;
            record.seconds = started.elapsed().as_secs_f64();
            run.append(&record)?;
            tracing::info!(
                epoch,
                loss = record.loss,
                valid_ndcg10 = m.ndcg_10,
                valid_hr10 = m.hr_10,
                "evaluated"
            );
        }
        record.seconds = started.elapsed().as_secs_f64();
        on_epoch(&record);
        records.push(record);
        if over_budget {
            stopped_by = StopReason::TimeBudget;
            tracing::warn!(
                epoch,
                epochs = schedule.epochs,
                steps = step.steps_done(),
                "time budget reached: the run stops before the end of its schedule"
            );
            break;
        }
        if verdict == Verdict::Stop {
            stopped_by = StopReason::EarlyStop;
            tracing::info!(epoch, "early stop: no improvement");
            break;
        }
    }
    progress.finish();
    run.plot(&records);
    let outcome = RunOutcome {
        epochs_planned: schedule.epochs,
        last_epoch: records.last().map_or(start.epoch - 1, |r| r.epoch),
        stopped_by,
        seconds: started.elapsed().as_secs_f64(),
    };
    keeper.record(&outcome)?;
    let best = keeper.best().copied().unwrap_or_default();
    Ok(TrainReport {
        checkpoint: run.path().to_path_buf(),
        best_epoch: keeper.best_epoch(),
        best_valid_ndcg10: best.ndcg_10,
        best_valid_hr10: best.hr_10,
        epochs_run: records.len(),
        epochs_planned: schedule.epochs,
        seconds: outcome.seconds,
        stopped_by,
    })
}

/// A model ready to train: its configuration, weights, the epoch to start from, and the
/// checkpoint record its saves will carry.
struct ModelStart {
    cfg: ModelConfig,
    varmap: VarMap,
    model: SeqModel,
    /// The first epoch to train (after the resumed checkpoint's, or 1).
    epoch: usize,
    checkpoint: CheckpointConfig,
}

/// Builds the model of `opts`: resumed from its checkpoint, or drawn from the seed (item
/// embeddings from co-occurrences where asked).
fn start_model(
    opts: &TrainOptions,
    dataset: &Dataset,
    split: &[SplitUser],
) -> Result<ModelStart, TrainError> {
    let settings = &opts.settings;
    let resumed = match &opts.resume {
        Some(dir) => Some((dir, CheckpointConfig::read(dir)?)),
        None => None,
    };
    let cfg = match &resumed {
        Some((_, r)) => {
            if r.vocab != dataset.vocab {
                return Err(TrainError::Invalid(
                    "the resumed checkpoint was trained on other items".into(),
                ));
            }
            r.model.clone()
        }
        None => ModelConfig {
            architecture: opts.architecture,
            items: dataset.vocab.len(),
            hidden: settings.model.hidden,
            layers: settings.model.layers,
            heads: settings.model.heads,
            max_len: settings.model.max_len,
            dropout: settings.model.dropout,
        },
    };
    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = SeqModel::load(vb, &cfg)?;
    let epoch = match &resumed {
        Some((dir, r)) => {
            varmap.load(dir.join(WEIGHTS_FILE))?;
            r.best_epoch + 1
        }
        None => {
            reinitialise(&varmap, settings.seed)?;
            if settings.model.item_init == ItemInit::Cooccurrence {
                start_items_from_cooccurrences(&varmap, split, &cfg, settings.seed)?;
            }
            1
        }
    };
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let checkpoint = CheckpointConfig {
        format: checkpoint::FORMAT,
        dataset: opts.dataset,
        model: cfg.clone(),
        vocab: dataset.vocab.clone(),
        popularity: train_popularity(split, dataset.vocab.len()),
        data: settings.data.filters(),
        training: serde_json::to_value(opts).unwrap_or_default(),
        best_epoch: 0,
        metrics: serde_json::Value::Null,
        created_at,
        commit: BUILD_COMMIT.map(str::to_string),
    };
    Ok(ModelStart {
        cfg,
        varmap,
        model,
        epoch,
        checkpoint,
    })
}

/// The parameter named `name` in `varmap`.
fn named_var(varmap: &VarMap, name: &str) -> Result<Var, TrainError> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| TrainError::Invalid("the parameter map lock is poisoned".into()))?;
    data.get(name)
        .cloned()
        .ok_or_else(|| TrainError::Invalid(format!("no parameter {name}")))
}

/// Overwrites the movies' rows of the item embeddings with [`cooccurrence_embeddings`] of the
/// training sequences; movies that co-occur with nothing, padding and [MASK] keep their draws.
fn start_items_from_cooccurrences(
    varmap: &VarMap,
    split: &[SplitUser],
    cfg: &ModelConfig,
    seed: u64,
) -> Result<(), TrainError> {
    let (items, hidden) = (cfg.items, cfg.hidden);
    let started = Instant::now();
    let fitted = cooccurrence_embeddings(split, items, hidden, seed)?;
    let var = named_var(varmap, ITEM_EMBEDDINGS)?;
    let mut rows: Vec<f32> = var.flatten_all()?.to_vec1()?;
    for (row, new) in rows.chunks_mut(hidden).zip(fitted.chunks(hidden)) {
        if new.iter().any(|&x| x != 0.0) {
            row.copy_from_slice(new);
        }
    }
    var.set(&Tensor::from_vec(rows, var.shape(), &Device::Cpu)?)?;
    tracing::info!(
        items,
        secs = started.elapsed().as_secs_f64(),
        "item embeddings started from co-occurrences"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::start_items_from_cooccurrences;
    use crate::model::{Architecture, ITEM_EMBEDDINGS, ModelConfig, SeqModel, reinitialise};
    use crate::train::data::SplitUser;
    use crate::train::item_init::cooccurrence_embeddings;
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    /// The co-occurrence start overwrites the rows of the movies that co-occur in training and
    /// keeps the random draws of the others, of padding and of [MASK].
    #[test]
    fn cooccurrence_start_replaces_only_the_rows_of_movies_seen_together()
    -> Result<(), Box<dyn std::error::Error>> {
        let cfg = ModelConfig {
            architecture: Architecture::Bert4Rec,
            items: 10,
            hidden: 4,
            layers: 1,
            heads: 2,
            max_len: 8,
            dropout: 0.0,
        };
        let varmap = VarMap::new();
        SeqModel::load(
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            &cfg,
        )?;
        reinitialise(&varmap, 5)?;
        let table = || -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error>> {
            let data = varmap.data().lock().map_err(|e| e.to_string())?;
            let var = data.get(ITEM_EMBEDDINGS).ok_or("no item embeddings")?;
            Ok(var.to_vec2::<f32>()?)
        };
        let before = table()?;
        // Movies 0-5 are watched together; 6-9 only as validation and test items.
        let split: Vec<SplitUser> = (0..12u32)
            .map(|u| SplitUser {
                user_id: i64::from(u),
                train: (0..6).map(|k| (k + u) % 6).collect(),
                valid: 6 + u % 2,
                test: 8 + u % 2,
            })
            .collect();
        start_items_from_cooccurrences(&varmap, &split, &cfg, 9)?;
        let after = table()?;
        let expected = cooccurrence_embeddings(&split, cfg.items, cfg.hidden, 9)?;
        assert_eq!(after.len(), cfg.vocab_size());
        for (i, row) in after.iter().enumerate() {
            if i < 6 {
                assert_eq!(row[..], expected[i * 4..(i + 1) * 4], "movie {i}");
                assert_ne!(row, &before[i], "movie {i}");
            } else {
                assert_eq!(row, &before[i], "row {i} keeps its draw");
            }
        }
        Ok(())
    }
}

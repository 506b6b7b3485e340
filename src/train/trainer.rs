//! The training loop: AdamW with linear warm-up and decay, gradient clipping, validation
//! NDCG@10 (full ranking) every few epochs, the best checkpoint kept, early stopping, a time
//! budget, `metrics.jsonl` and a PNG curve.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::batch::{
    Batch, Cloze, ClozeSample, cloze_batch, cloze_samples, next_item_batch, training_sequences,
};
use super::data::{Dataset, SplitUser, build_dataset, leave_one_out, train_popularity};
use super::evaluate::{Stage, cases, model_metrics};
use super::item_init::{ItemInit, cooccurrence_embeddings};
use super::{LossWeighting, TrainError, TrainOptions, TrainReport, plot};
use crate::catalogue::Catalogue;
use crate::model::checkpoint::{self, CheckpointConfig, WEIGHTS_FILE};
use crate::model::{
    Architecture, DropoutRng, ITEM_EMBEDDINGS, ModelConfig, SeqModel, reinitialise,
};

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

/// The run's AdamW optimizers: one for the matrices (with weight decay), one for the vectors
/// (biases, norms: without), and one for the item embeddings (with weight decay, at
/// `item_lr_scale` times the learning rate). All share `opts`' betas and the schedule.
struct Optimizers {
    decay: AdamW,
    plain: AdamW,
    items: AdamW,
    item_lr_scale: f64,
}

impl Optimizers {
    /// Splits `vars` into the three groups; `items` is the item-embedding parameter.
    fn new(vars: &[Var], items: &Var, opts: &TrainOptions) -> candle_core::Result<Self> {
        let item_id = items.as_tensor().id();
        let (matrices, vectors): (Vec<Var>, Vec<Var>) = vars
            .iter()
            .filter(|v| v.as_tensor().id() != item_id)
            .cloned()
            .partition(|v| v.rank() >= 2);
        let params = |lr, weight_decay| ParamsAdamW {
            lr,
            weight_decay,
            beta1: opts.adam_beta1,
            beta2: opts.adam_beta2,
            ..ParamsAdamW::default()
        };
        Ok(Self {
            decay: AdamW::new(matrices, params(opts.lr, opts.weight_decay))?,
            plain: AdamW::new(vectors, params(opts.lr, 0.0))?,
            items: AdamW::new(
                vec![items.clone()],
                params(opts.lr * opts.item_lr_scale, opts.weight_decay),
            )?,
            item_lr_scale: opts.item_lr_scale,
        })
    }

    /// Sets the schedule's learning rate (the item table's scaled by its factor).
    fn set_learning_rate(&mut self, lr: f64) {
        self.decay.set_learning_rate(lr);
        self.plain.set_learning_rate(lr);
        self.items.set_learning_rate(lr * self.item_lr_scale);
    }

    /// One step of every group.
    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.decay.step(grads)?;
        self.plain.step(grads)?;
        self.items.step(grads)
    }
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

/// Trains on the catalogue of `opts.dataset` under `opts.database_root`.
pub fn train(opts: &TrainOptions) -> Result<TrainReport, TrainError> {
    train_with_progress(opts, &mut |_| {})
}

/// [`train`], calling `on_epoch` after every epoch.
pub fn train_with_progress(
    opts: &TrainOptions,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<TrainReport, TrainError> {
    opts.check()?;
    let catalogue = Catalogue::open_release(&opts.database_root, opts.dataset)?;
    let interactions = catalogue.interactions(opts.data.min_rating)?;
    let dataset = build_dataset(&interactions, &opts.data);
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
    opts.check()?;
    fit(opts, dataset, on_epoch)
}

/// The training run itself, on settings [`TrainOptions::check`] accepted.
fn fit(
    opts: &TrainOptions,
    dataset: &Dataset,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<TrainReport, TrainError> {
    let started = Instant::now();
    let split = leave_one_out(dataset);
    if split.is_empty() {
        return Err(TrainError::Invalid(
            "no user has enough interactions to train on".into(),
        ));
    }
    let popularity = train_popularity(&split, dataset.vocab.len());

    let resumed = match &opts.resume {
        Some(dir) => Some(CheckpointConfig::read(dir)?),
        None => None,
    };
    let model_cfg = match &resumed {
        Some(r) => {
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
            hidden: opts.hidden,
            layers: opts.layers,
            heads: opts.heads,
            max_len: opts.max_len,
            dropout: opts.dropout,
        },
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = SeqModel::load(vb, &model_cfg)?;
    let mut varmap = varmap;
    let start_epoch = match (&opts.resume, &resumed) {
        (Some(dir), Some(r)) => {
            varmap.load(dir.join(WEIGHTS_FILE))?;
            r.best_epoch + 1
        }
        _ => {
            reinitialise(&varmap, opts.seed)?;
            if opts.item_init == ItemInit::Cooccurrence {
                start_items_from_cooccurrences(&varmap, &split, &model_cfg, opts.seed)?;
            }
            1
        }
    };

    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = new_run_dir(&opts.checkpoint_root, opts, &model_cfg, created_at)?;
    let mut ck = CheckpointConfig {
        format: checkpoint::FORMAT,
        dataset: opts.dataset,
        model: model_cfg.clone(),
        vocab: dataset.vocab.clone(),
        popularity,
        data: opts.data.clone(),
        training: serde_json::to_value(opts).unwrap_or_default(),
        best_epoch: 0,
        metrics: serde_json::Value::Null,
        created_at,
    };

    let vars = varmap.all_vars();
    let mut optimizers = Optimizers::new(&vars, &named_var(&varmap, ITEM_EMBEDDINGS)?, opts)?;

    let samples = training_sequences(&split, &model_cfg, opts.sliding_step);
    if samples.is_empty() {
        return Err(TrainError::Invalid("no training sequences".into()));
    }
    let valid_cases = cases(&split, Stage::Valid);
    let cloze = Cloze {
        mask_prob: opts.mask_prob,
        last_item_prob: opts.last_item_prob,
        last_item_cut: opts.last_item_cut,
    };
    let steps_per_epoch = samples.len().div_ceil(opts.batch_size);
    let mut total_steps = steps_per_epoch * opts.epochs;
    let mut step = steps_per_epoch * (start_epoch - 1);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed.wrapping_add(start_epoch as u64));
    let mut drop_rngs: Vec<DropoutRng> = (0..SHARDS as u64)
        .map(|k| {
            DropoutRng::new(
                opts.seed
                    .wrapping_mul(31)
                    .wrapping_add(start_epoch as u64)
                    .wrapping_add(k << 32),
            )
        })
        .collect();
    let pools = shard_pools();

    let budget_spent = || {
        opts.time_budget_secs
            .is_some_and(|b| started.elapsed().as_secs_f64() >= b as f64)
    };
    let epochs_here = (opts.epochs + 1).saturating_sub(start_epoch);
    let bar = if opts.progress {
        ProgressBar::new((epochs_here * steps_per_epoch) as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} {wide_bar} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }

    let metrics_path = dir.join("metrics.jsonl");
    let mut records: Vec<EpochRecord> = Vec::new();
    let mut best = (-1.0f64, 0.0f64);
    let mut since_best = 0usize;
    let mut stopped_by_budget = false;
    let mut epochs_run = 0;
    let mut step_weights = StepWeights::new(opts.loss_weighting);
    for epoch in start_epoch..=opts.epochs {
        let epoch_start = Instant::now();
        // BERT4Rec draws its cuts first, so that cut sequences are batched by their new length.
        let (cloze_epoch, lengths): (Vec<ClozeSample>, Vec<usize>) = match model_cfg.architecture {
            Architecture::Bert4Rec => {
                let drawn = cloze_samples(&samples, &cloze, &mut rng);
                let lengths = drawn.iter().map(|s| s.items.len()).collect();
                (drawn, lengths)
            }
            Architecture::SasRec => (Vec::new(), samples.iter().map(Vec::len).collect()),
        };
        let order = length_bucketed_batches(&lengths, opts.batch_size, &mut rng);
        let mut loss_sum = 0.0f64;
        let mut batches = 0usize;
        let mut lr = opts.lr;
        // The steps run on a rayon worker: the matmuls and row ops it starts are split with
        // the pool's other threads directly, without waking this thread after each one.
        let epoch_steps: Result<(), TrainError> = rayon::scope(|_| {
            for chunk in &order {
                let mut shards = Vec::with_capacity(SHARDS);
                for part in chunk.chunks(chunk.len().div_ceil(SHARDS).max(1)) {
                    shards.push(match model_cfg.architecture {
                        Architecture::Bert4Rec => {
                            let part: Vec<ClozeSample> =
                                part.iter().map(|&i| cloze_epoch[i]).collect();
                            cloze_batch(&part, &model_cfg, &cloze, &mut rng)?
                        }
                        Architecture::SasRec => {
                            let seqs: Vec<&[u32]> =
                                part.iter().map(|&i| samples[i].as_slice()).collect();
                            next_item_batch(&seqs, &model_cfg)?
                        }
                    });
                }
                let negatives = draw_negatives(opts.negatives, model_cfg.items, &mut rng);
                let (loss, mut grads) = sharded_loss_and_gradients(
                    &model,
                    &shards,
                    &vars,
                    negatives.as_deref(),
                    opts.label_smoothing,
                    &mut drop_rngs,
                    &pools,
                )?;
                let count = shards.iter().map(|b| b.count).sum();
                let scale = step_weights.next(count);
                scale_and_clip_gradients(&mut grads, &vars, scale, opts.clip_norm)?;
                lr = schedule(opts.lr, step, opts.warmup_steps, total_steps);
                optimizers.set_learning_rate(lr);
                optimizers.step(&grads)?;
                step += 1;
                batches += 1;
                loss_sum += loss;
                let sps = (batches * opts.batch_size) as f64 / epoch_start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "epoch {epoch} loss {:.4} {sps:.0} seq/s",
                    loss_sum / batches as f64
                ));
                bar.inc(1);
                // The budget is checked per batch, so a slow epoch cannot overrun it by much.
                if budget_spent() {
                    break;
                }
            }
            Ok(())
        });
        epoch_steps?;
        epochs_run += 1;
        // With a time budget, the learning rate should reach the end of its decay when the
        // budget runs out, not at an epoch count the budget never reaches: after every epoch,
        // set the schedule's end to the epochs that still fit at the average pace so far
        // (validation included), capped by `epochs`.
        if let Some(budget) = opts.time_budget_secs {
            let spent = started.elapsed().as_secs_f64();
            let per_epoch = (spent / epochs_run as f64).max(1e-3);
            let fit = ((budget as f64 - spent) / per_epoch).floor().max(1.0) as usize;
            total_steps = (step + steps_per_epoch * fit).min(steps_per_epoch * opts.epochs);
        }
        let train_secs = epoch_start.elapsed().as_secs_f64();
        let over_budget = budget_spent();
        let evaluate_now = epoch % opts.eval_every == 0 || epoch == opts.epochs || over_budget;
        let mut record = EpochRecord {
            epoch,
            loss: loss_sum / batches.max(1) as f64,
            valid_hr10: None,
            valid_ndcg10: None,
            seconds: 0.0,
            seq_per_sec: (batches * opts.batch_size).min(samples.len()) as f64 / train_secs,
            lr,
        };
        let mut stop = false;
        if evaluate_now {
            let m = model_metrics(&model, &valid_cases, 256)?;
            record.valid_hr10 = Some(m.hr_10);
            record.valid_ndcg10 = Some(m.ndcg_10);
            if m.ndcg_10 > best.0 {
                best = (m.ndcg_10, m.hr_10);
                since_best = 0;
                ck.best_epoch = epoch;
                ck.metrics = serde_json::json!({ "valid": m });
                checkpoint::save(&dir, &varmap, &ck)?;
            } else {
                since_best += 1;
                stop = since_best >= opts.patience;
            }
            record.seconds = started.elapsed().as_secs_f64();
            append_line(&metrics_path, &record)?;
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
            stopped_by_budget = true;
            break;
        }
        if stop {
            tracing::info!(epoch, "early stop: no improvement");
            break;
        }
    }
    bar.finish_and_clear();
    if let Err(e) = plot::training_curve(&records, &dir.join("training_curve.png")) {
        tracing::warn!("could not draw the training curve: {e}");
    }
    Ok(TrainReport {
        checkpoint: dir,
        best_epoch: ck.best_epoch,
        best_valid_ndcg10: best.0.max(0.0),
        best_valid_hr10: best.1,
        epochs_run,
        seconds: started.elapsed().as_secs_f64(),
        stopped_by_budget,
    })
}

/// Shards each batch is split into. With more than one thread, each shard runs its forward and
/// backward pass in a single-thread pool of its own and their gradients are summed, so a step
/// of a small model keeps two cores busy (the ops of a batch of 16 are too small to split
/// across threads one by one: that is slower than one thread). Fixed rather than the thread
/// count, so that a seed repeats a run whatever the machine.
const SHARDS: usize = 2;

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

/// One single-thread pool per shard when the rayon pool has more than one thread; none (the
/// shards then run one after the other) otherwise, or when a pool cannot be built.
fn shard_pools() -> Vec<rayon::ThreadPool> {
    if rayon::current_num_threads() < 2 {
        return Vec::new();
    }
    let pools: Result<Vec<_>, _> = (0..SHARDS)
        .map(|k| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(move |_| format!("train-shard-{k}"))
                .build()
        })
        .collect();
    pools.unwrap_or_else(|e| {
        tracing::warn!("training shards run one after the other: {e}");
        Vec::new()
    })
}

/// The mean loss over all loss positions of a batch split into `shards` (batches of the same
/// step), and its gradients for `vars`: each shard's mean loss weighted by its share of the
/// positions, so the result equals the unsplit batch's (dropout aside). Shard `k` draws its
/// dropout from `drop_rngs[k]` and runs in `pools[k]` (at once), or, without pools, on this
/// thread (one after the other); the result is the same.
fn sharded_loss_and_gradients(
    model: &SeqModel,
    shards: &[Batch],
    vars: &[Var],
    negatives: Option<&[u32]>,
    label_smoothing: f32,
    drop_rngs: &mut [DropoutRng],
    pools: &[rayon::ThreadPool],
) -> candle_core::Result<(f64, GradStore)> {
    let positions: usize = shards.iter().map(|b| b.count).sum();
    if shards.is_empty() || positions == 0 || shards.len() > drop_rngs.len() {
        candle_core::bail!(
            "a training step needs 1 to {} shards with loss positions",
            drop_rngs.len()
        );
    }
    let shard_step = |batch: &Batch, drop_rng: &mut DropoutRng| {
        let loss = batch_loss(model, batch, negatives, label_smoothing, drop_rng)?;
        let weighted = (loss * (batch.count as f64 / positions as f64))?;
        let grads = weighted.backward()?;
        Ok::<_, candle_core::Error>((f64::from(weighted.to_scalar::<f32>()?), grads))
    };
    let results: Vec<candle_core::Result<(f64, GradStore)>> = if pools.len() >= shards.len() {
        std::thread::scope(|scope| {
            let handles: Vec<_> = shards
                .iter()
                .zip(drop_rngs.iter_mut())
                .zip(pools)
                .map(|((batch, drop_rng), pool)| {
                    scope.spawn(|| pool.install(|| shard_step(batch, drop_rng)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(candle_core::Error::Msg("a training shard panicked".into()))
                    })
                })
                .collect()
        })
    } else {
        shards
            .iter()
            .zip(drop_rngs.iter_mut())
            .map(|(batch, drop_rng)| shard_step(batch, drop_rng))
            .collect()
    };
    let mut results = results.into_iter();
    let Some(first) = results.next() else {
        candle_core::bail!("a training step without shards");
    };
    let (mut loss, mut grads) = first?;
    for result in results {
        let (part_loss, part_grads) = result?;
        loss += part_loss;
        for var in vars {
            let var = var.as_tensor();
            if let Some(g) = part_grads.get(var) {
                let sum = match grads.get(var) {
                    Some(total) => (total + g)?,
                    None => g.clone(),
                };
                grads.insert(var, sum);
            }
        }
    }
    Ok((loss, grads))
}

/// Cross-entropy at the batch's loss positions (training mode): over all items (with
/// `label_smoothing`), or, when `negatives` is given, over each target and those shared sampled
/// negatives.
pub(crate) fn batch_loss(
    model: &SeqModel,
    batch: &Batch,
    negatives: Option<&[u32]>,
    label_smoothing: f32,
    drop_rng: &mut DropoutRng,
) -> candle_core::Result<candle_core::Tensor> {
    let hidden = model.encode(&batch.ids, Some(drop_rng))?;
    let picked = hidden.index_select(&batch.positions, 0)?;
    let targets = batch.targets.to_vec1::<u32>()?;
    match negatives {
        Some(negatives) => {
            let logits = model.sampled_scores(&picked, &targets, negatives)?;
            crate::model::loss::cross_entropy(&logits, &vec![0; targets.len()])
        }
        None => model.full_softmax_loss(&picked, &targets, label_smoothing),
    }
}

/// `n` distinct items drawn uniformly from `0..items` for sampled softmax, or `None` (full
/// softmax) when `n` is 0 or covers the catalogue. Uniform draws give every item the same
/// sampling probability, so the sampled logits need no correction.
fn draw_negatives<R: rand::Rng>(n: usize, items: usize, rng: &mut R) -> Option<Vec<u32>> {
    if n == 0 || n >= items {
        return None;
    }
    Some(
        rand::seq::index::sample(rng, items, n)
            .into_iter()
            .map(|i| i as u32)
            .collect(),
    )
}

/// Shuffled batches of sample indices (samples of the given `lengths`), each drawn from a run of
/// similar lengths: the samples are shuffled, cut into pools of [`BUCKET_POOL`] batches, sorted
/// by length inside each pool and cut into batches, and the batches are shuffled. Padding (and
/// the quadratic attention over it) shrinks to a few items per batch, while every epoch still
/// sees a new order.
fn length_bucketed_batches<R: rand::Rng>(
    lengths: &[usize],
    batch_size: usize,
    rng: &mut R,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(batch_size));
    for pool in order.chunks_mut(batch_size * BUCKET_POOL) {
        pool.sort_by_key(|&i| lengths[i]);
        batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

/// Batches per length-sorting pool in [`length_bucketed_batches`].
const BUCKET_POOL: usize = 50;

/// Linear warm-up to `base` over `warmup` steps, then linear decay to zero at `total`.
fn schedule(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let rest = total.saturating_sub(warmup).max(1) as f64;
    let done = (step - warmup) as f64;
    base * (1.0 - done / rest).max(0.02)
}

/// Multiplies all gradients by `scale`, then scales them down so that their global norm is at
/// most `max_norm` (no clipping when `max_norm <= 0`), in one pass over the gradients.
fn scale_and_clip_gradients(
    grads: &mut GradStore,
    vars: &[Var],
    scale: f64,
    max_norm: f64,
) -> candle_core::Result<()> {
    let mut factor = scale;
    if max_norm > 0.0 {
        let mut sq = 0.0f64;
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        let norm = scale * sq.sqrt();
        if norm > max_norm {
            factor *= max_norm / norm;
        }
    }
    if factor != 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g * factor)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(())
}

/// The factor of each step's mean loss under a [`LossWeighting`].
struct StepWeights {
    weighting: LossWeighting,
    positions: usize,
    steps: usize,
}

impl StepWeights {
    fn new(weighting: LossWeighting) -> Self {
        Self {
            weighting,
            positions: 0,
            steps: 0,
        }
    }

    /// The factor of the next step, which has `count` loss positions: 1 under
    /// [`LossWeighting::Batch`]; under [`LossWeighting::Token`], `count` over the mean number of
    /// positions per step so far (this step included), so that every position weighs the same.
    fn next(&mut self, count: usize) -> f64 {
        match self.weighting {
            LossWeighting::Batch => 1.0,
            LossWeighting::Token => {
                self.positions += count;
                self.steps += 1;
                if self.positions == 0 {
                    return 1.0;
                }
                (count * self.steps) as f64 / self.positions as f64
            }
        }
    }
}

fn new_run_dir(
    root: &Path,
    opts: &TrainOptions,
    cfg: &ModelConfig,
    created_at: u64,
) -> Result<PathBuf, TrainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(root).map_err(io(root))?;
    let base = format!("{}-{}-{created_at}", opts.dataset, cfg.architecture);
    for n in 0.. {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = root.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&dir)(e)),
        }
    }
    Err(TrainError::Invalid(
        "no free checkpoint directory name".into(),
    ))
}

fn append_line(path: &Path, record: &EpochRecord) -> Result<(), TrainError> {
    let io = |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let line = serde_json::to_string(record).unwrap_or_default();
    writeln!(f, "{line}").map_err(io)
}

#[cfg(test)]
mod tests {
    use super::{
        DropoutRng, Optimizers, SHARDS, StepWeights, batch_loss, length_bucketed_batches,
        scale_and_clip_gradients, schedule, sharded_loss_and_gradients,
        start_items_from_cooccurrences,
    };
    use crate::model::{Architecture, ITEM_EMBEDDINGS, ModelConfig, SeqModel, reinitialise};
    use crate::train::LossWeighting;
    use crate::train::batch::next_item_batch;
    use crate::train::data::SplitUser;
    use crate::train::item_init::cooccurrence_embeddings;
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    /// A batch split into shards gives the unsplit batch's loss and gradients, whether the shards
    /// run one after the other or at once in pools of their own (dropout off, so that nothing
    /// random differs).
    #[test]
    fn shards_give_the_loss_and_gradients_of_the_whole_batch()
    -> Result<(), Box<dyn std::error::Error>> {
        let cfg = ModelConfig {
            architecture: Architecture::SasRec,
            items: 30,
            hidden: 16,
            layers: 1,
            heads: 2,
            max_len: 12,
            dropout: 0.0,
        };
        let varmap = VarMap::new();
        let model = SeqModel::load(
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            &cfg,
        )?;
        reinitialise(&varmap, 5)?;
        let vars = varmap.all_vars();
        // Uneven lengths: the shards hold different numbers of loss positions.
        let seqs: Vec<Vec<u32>> = (0..5u32)
            .map(|u| (0..3 + 2 * u).map(|j| (u * 7 + j * 3) % 30).collect())
            .collect();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let whole = next_item_batch(&refs, &cfg)?;
        let shards = vec![
            next_item_batch(&refs[..2], &cfg)?,
            next_item_batch(&refs[2..], &cfg)?,
        ];
        assert_ne!(shards[0].count, shards[1].count);
        let mut rngs: Vec<DropoutRng> = (0..SHARDS as u64).map(DropoutRng::new).collect();
        let expected = batch_loss(&model, &whole, None, 0.1, &mut rngs[0])?;
        let expected_grads = expected.backward()?;
        let expected = f64::from(expected.to_scalar::<f32>()?);
        let pools: Vec<rayon::ThreadPool> = (0..SHARDS)
            .map(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
            .collect::<Result<_, _>>()?;
        for pools in [&pools[..], &[]] {
            let (loss, grads) =
                sharded_loss_and_gradients(&model, &shards, &vars, None, 0.1, &mut rngs, pools)?;
            assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
            for var in &vars {
                let (Some(a), Some(b)) = (grads.get(var), expected_grads.get(var)) else {
                    panic!("a parameter without a gradient");
                };
                let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-5, "gradient differs by {diff}");
            }
        }
        assert!(
            sharded_loss_and_gradients(&model, &[], &vars, None, 0.0, &mut rngs, &pools).is_err()
        );
        Ok(())
    }

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

    /// Weight decay reaches the matrices only; the learning rate and betas reach every group;
    /// the item table learns at its scaled rate, through the schedule too.
    #[test]
    fn optimizers_carry_the_runs_settings() -> candle_core::Result<()> {
        let vars = [
            candle_core::Var::zeros((3, 4), DType::F32, &Device::Cpu)?,
            candle_core::Var::zeros(4, DType::F32, &Device::Cpu)?,
            candle_core::Var::zeros((5, 4), DType::F32, &Device::Cpu)?,
        ];
        let opts = crate::train::TrainOptions {
            lr: 3e-4,
            weight_decay: 0.05,
            adam_beta1: 0.8,
            adam_beta2: 0.98,
            item_lr_scale: 0.5,
            ..crate::train::TrainOptions::default()
        };
        let mut opt = Optimizers::new(&vars, &vars[2], &opts)?;
        let (d, p, i) = (opt.decay.params(), opt.plain.params(), opt.items.params());
        assert_eq!(
            (d.lr, d.weight_decay, d.beta1, d.beta2),
            (3e-4, 0.05, 0.8, 0.98)
        );
        assert_eq!(
            (p.lr, p.weight_decay, p.beta1, p.beta2),
            (3e-4, 0.0, 0.8, 0.98)
        );
        assert_eq!(
            (i.lr, i.weight_decay, i.beta1, i.beta2),
            (1.5e-4, 0.05, 0.8, 0.98)
        );
        opt.set_learning_rate(1e-3);
        assert_eq!((opt.decay.params().lr, opt.items.params().lr), (1e-3, 5e-4));
        // Each parameter is stepped by exactly one group: a gradient of ones moves every
        // parameter once (a second group would move it twice as far).
        let mut grads = candle_core::backprop::GradStore::default();
        for v in &vars {
            grads.insert(v.as_tensor(), v.ones_like()?);
        }
        opt.step(&grads)?;
        for (k, v) in vars.iter().enumerate() {
            let moved: Vec<f32> = v.flatten_all()?.to_vec1()?;
            let expected = if k == 2 { 5e-4 } else { 1e-3 };
            for x in moved {
                assert!((f64::from(x) + expected).abs() < 1e-6, "var {k}: {x}");
            }
        }
        Ok(())
    }

    #[test]
    fn bucketed_batches_cover_every_sample_once_with_similar_lengths() {
        use rand::SeedableRng;
        let lengths: Vec<usize> = (0..1000).map(|i| 1 + (i * 37) % 200).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let batches = length_bucketed_batches(&lengths, 64, &mut rng);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 64));
        // Padding: every batch is padded to its longest member; sorting keeps that close to
        // the real lengths (a random split would pad nearly everything to ~200).
        let padded: usize = batches
            .iter()
            .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap_or(0))
            .sum();
        let real: usize = lengths.iter().sum();
        assert!(padded < real + real / 5, "padded {padded} vs real {real}");
        let again = length_bucketed_batches(&lengths, 64, &mut rng);
        assert_ne!(batches, again, "each epoch gets a new order");
    }

    /// Under token weighting a step's factor is its positions over the running mean, so that
    /// over a run every position counts once; under batch weighting every step counts once.
    #[test]
    fn token_weighting_counts_every_position_once_and_batch_weighting_every_step() {
        let counts = [10usize, 30, 20, 40];
        let mut token = StepWeights::new(LossWeighting::Token);
        let factors: Vec<f64> = counts.iter().map(|&c| token.next(c)).collect();
        let expected = [1.0, 1.5, 20.0 * 3.0 / 60.0, 40.0 * 4.0 / 100.0];
        for (f, e) in factors.iter().zip(expected) {
            assert!((f - e).abs() < 1e-12, "{factors:?}");
        }
        // With a settled mean (25 positions per step), a step of 50 weighs twice one of 25.
        let mut settled = StepWeights::new(LossWeighting::Token);
        for _ in 0..1000 {
            settled.next(25);
        }
        assert!((settled.next(50) / settled.next(25) - 2.0).abs() < 0.01);
        let mut batch = StepWeights::new(LossWeighting::Batch);
        assert!(counts.iter().all(|&c| batch.next(c) == 1.0));
    }

    /// Gradients are scaled, then clipped to the norm bound (which applies to the scaled ones).
    #[test]
    fn gradients_are_scaled_then_clipped() -> candle_core::Result<()> {
        let run = |scale: f64, max_norm: f64| -> candle_core::Result<Vec<f32>> {
            let var = candle_core::Var::new(&[3.0f32, 4.0], &Device::Cpu)?;
            let grads_of = (var.as_tensor() * 1.0)?.sum_all()?;
            let mut grads = grads_of.backward()?;
            // d(sum)/dx = 1 per element: replace with a gradient of norm 5.
            grads.insert(
                var.as_tensor(),
                candle_core::Tensor::new(&[3.0f32, 4.0], &Device::Cpu)?,
            );
            scale_and_clip_gradients(&mut grads, std::slice::from_ref(&var), scale, max_norm)?;
            match grads.get(var.as_tensor()) {
                Some(g) => g.to_vec1::<f32>(),
                None => candle_core::bail!("no gradient"),
            }
        };
        assert_eq!(run(2.0, 0.0)?, vec![6.0, 8.0]);
        assert_eq!(run(2.0, 100.0)?, vec![6.0, 8.0]);
        let clipped = run(2.0, 5.0)?;
        assert!((clipped[0] - 3.0).abs() < 1e-6 && (clipped[1] - 4.0).abs() < 1e-6);
        let halved = run(0.5, 5.0)?;
        assert!((halved[0] - 1.5).abs() < 1e-6 && (halved[1] - 2.0).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((schedule(1.0, 0, 10, 110) - 0.1).abs() < 1e-12);
        assert!((schedule(1.0, 9, 10, 110) - 1.0).abs() < 1e-12);
        assert!((schedule(1.0, 60, 10, 110) - 0.5).abs() < 1e-12);
        assert!((schedule(1.0, 200, 10, 110) - 0.02).abs() < 1e-12);
    }
}

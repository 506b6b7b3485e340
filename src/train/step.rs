//! One training step: the batch's shards run forward and backward (at once, each in a
//! single-thread pool of its own, when there are two threads), their gradients are summed,
//! weighted, clipped, and the optimiser steps at the schedule's learning rate.

use candle_core::Var;
use candle_core::backprop::GradStore;

use super::batch::Batch;
use super::optimiser::{Optimizers, Schedule};
use super::settings::{LossWeighting, TrainSettings};
use crate::model::{DropoutRng, SeqModel};

/// Shards each batch is split into. With more than one thread, each shard runs its forward and
/// backward pass in a single-thread pool of its own and their gradients are summed, so a step
/// of a small model keeps two cores busy (the ops of a batch of 16 are too small to split
/// across threads one by one: that is slower than one thread). Fixed rather than the thread
/// count, so that a seed repeats a run whatever the machine.
pub(super) const SHARDS: usize = 2;

/// What one step reports.
pub(super) struct StepOutcome {
    /// The batch's mean loss over its loss positions.
    pub loss: f64,
    /// The learning rate the step was taken with.
    pub lr: f64,
}

/// Everything a step needs from one step to the next: the model's parameters, the optimiser
/// and its schedule, the shards' dropout draws and pools, and the loss weighting's running
/// count.
pub(super) struct TrainStep<'m> {
    model: &'m SeqModel,
    vars: Vec<Var>,
    optimizers: Optimizers,
    schedule: Schedule,
    /// Steps taken so far in the whole run (a resumed run counts the earlier epochs).
    step: usize,
    drop_rngs: Vec<DropoutRng>,
    pools: Vec<rayon::ThreadPool>,
    weights: StepWeights,
    clip_norm: f64,
    negatives: usize,
}

impl<'m> TrainStep<'m> {
    /// Steps over `vars` (`items` is the item table) from the first step of `start_epoch`,
    /// with `steps_per_epoch` steps in each of the schedule's epochs.
    pub(super) fn new(
        model: &'m SeqModel,
        vars: Vec<Var>,
        items: &Var,
        settings: &TrainSettings,
        steps_per_epoch: usize,
        start_epoch: usize,
    ) -> candle_core::Result<Self> {
        let optimizers = Optimizers::new(&vars, items, &settings.optimiser)?;
        let seed = settings.seed;
        let drop_rngs = (0..SHARDS as u64)
            .map(|k| {
                DropoutRng::new(
                    seed.wrapping_mul(31)
                        .wrapping_add(start_epoch as u64)
                        .wrapping_add(k << 32),
                )
            })
            .collect();
        Ok(Self {
            model,
            vars,
            optimizers,
            schedule: Schedule {
                base: settings.optimiser.lr,
                warmup: settings.schedule.warmup_steps,
                total: steps_per_epoch * settings.schedule.epochs,
            },
            step: steps_per_epoch * (start_epoch - 1),
            drop_rngs,
            pools: shard_pools(),
            weights: StepWeights::new(settings.objective.loss_weighting),
            clip_norm: settings.optimiser.clip_norm,
            negatives: settings.objective.negatives,
        })
    }

    /// Steps taken so far in the run.
    pub(super) fn steps_done(&self) -> usize {
        self.step
    }

    /// One step on a batch split into `shards`; `rng` draws the sampled-softmax negatives.
    pub(super) fn run<R: rand::Rng>(
        &mut self,
        shards: &[Batch],
        rng: &mut R,
    ) -> candle_core::Result<StepOutcome> {
        let negatives = draw_negatives(self.negatives, self.model.config().items, rng);
        let (loss, mut grads) = sharded_loss_and_gradients(
            self.model,
            shards,
            &self.vars,
            negatives.as_deref(),
            &mut self.drop_rngs,
            &self.pools,
        )?;
        let count = shards.iter().map(|b| b.count).sum();
        let scale = self.weights.next(count);
        scale_and_clip_gradients(&mut grads, &self.vars, scale, self.clip_norm)?;
        let lr = self.schedule.lr(self.step);
        self.optimizers.set_learning_rate(lr);
        self.optimizers.step(&grads)?;
        self.step += 1;
        Ok(StepOutcome { loss, lr })
    }
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
        let loss = batch_loss(model, batch, negatives, drop_rng)?;
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

/// Cross-entropy at the batch's loss positions (training mode): over all items, or, when
/// `negatives` is given, over each target and those shared sampled negatives.
fn batch_loss(
    model: &SeqModel,
    batch: &Batch,
    negatives: Option<&[u32]>,
    drop_rng: &mut DropoutRng,
) -> candle_core::Result<candle_core::Tensor> {
    let hidden = model.encode(&batch.ids, Some(drop_rng))?;
    let picked = hidden.index_select(&batch.positions, 0)?;
    let targets = batch.targets.to_vec1::<u32>()?;
    match negatives {
        Some(negatives) => model.sampled_softmax_loss(&picked, &targets, negatives),
        // The model's loss still takes a label-smoothing factor; the option was removed
        // (it never raised validation), so it is always 0.
        None => model.full_softmax_loss(&picked, &targets, 0.0),
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

#[cfg(test)]
mod tests {
    use super::{
        DropoutRng, SHARDS, StepWeights, batch_loss, scale_and_clip_gradients,
        sharded_loss_and_gradients,
    };
    use crate::model::{Architecture, ModelConfig, SeqModel, reinitialise};
    use crate::train::batch::next_item_batch;
    use crate::train::settings::LossWeighting;
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
        let expected = batch_loss(&model, &whole, None, &mut rngs[0])?;
        let expected_grads = expected.backward()?;
        let expected = f64::from(expected.to_scalar::<f32>()?);
        let pools: Vec<rayon::ThreadPool> = (0..SHARDS)
            .map(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
            .collect::<Result<_, _>>()?;
        for pools in [&pools[..], &[]] {
            let (loss, grads) =
                sharded_loss_and_gradients(&model, &shards, &vars, None, &mut rngs, pools)?;
            assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
            for var in &vars {
                let (Some(a), Some(b)) = (grads.get(var), expected_grads.get(var)) else {
                    panic!("a parameter without a gradient");
                };
                let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-5, "gradient differs by {diff}");
            }
        }
        assert!(sharded_loss_and_gradients(&model, &[], &vars, None, &mut rngs, &pools).is_err());
        Ok(())
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
}

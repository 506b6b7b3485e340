//! The optimiser's parameter groups and the learning-rate schedule. The schedule is a function
//! of the step alone: warm-up, then linear decay to the end of the last epoch.

use candle_core::Var;
use candle_core::backprop::GradStore;
use candle_nn::ParamsAdamW;

use super::adamw::FusedAdamW;
use crate::train::settings::OptimiserOptions;

/// The run's AdamW optimizers: one for the matrices (with weight decay), one for the vectors
/// (biases, norms: without), and one for the item embeddings (with weight decay, at
/// `item_lr_scale` times the learning rate). All follow the same schedule.
pub(super) struct Optimizers {
    decay: FusedAdamW,
    plain: FusedAdamW,
    items: FusedAdamW,
    item_lr_scale: f64,
}

impl Optimizers {
    /// Splits `vars` into the three groups; `items` is the item-embedding parameter.
    pub(super) fn new(
        vars: &[Var],
        items: &Var,
        opts: &OptimiserOptions,
    ) -> candle_core::Result<Self> {
        let item_id = items.as_tensor().id();
        let (matrices, vectors): (Vec<Var>, Vec<Var>) = vars
            .iter()
            .filter(|v| v.as_tensor().id() != item_id)
            .cloned()
            .partition(|v| v.rank() >= 2);
        let params = |lr, weight_decay| ParamsAdamW {
            lr,
            weight_decay,
            ..ParamsAdamW::default()
        };
        Ok(Self {
            decay: FusedAdamW::new(matrices, params(opts.lr, opts.weight_decay))?,
            plain: FusedAdamW::new(vectors, params(opts.lr, 0.0))?,
            items: FusedAdamW::new(
                vec![items.clone()],
                params(opts.lr * opts.item_lr_scale, opts.weight_decay),
            )?,
            item_lr_scale: opts.item_lr_scale,
        })
    }

    /// Sets the schedule's learning rate (the item table's scaled by its factor).
    pub(super) fn set_learning_rate(&mut self, lr: f64) {
        self.decay.set_learning_rate(lr);
        self.plain.set_learning_rate(lr);
        self.items.set_learning_rate(lr * self.item_lr_scale);
    }

    /// One step of every group.
    pub(super) fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.decay.step(grads)?;
        self.plain.step(grads)?;
        self.items.step(grads)
    }
}

/// Linear warm-up to `base` over `warmup` steps, then linear decay to 2 % of `base` at step
/// `total` (the end of the last epoch), where it stays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Schedule {
    pub base: f64,
    pub warmup: usize,
    pub total: usize,
}

impl Schedule {
    /// The learning rate of step `step` (counted from 0).
    pub(super) fn lr(&self, step: usize) -> f64 {
        let Self {
            base,
            warmup,
            total,
        } = *self;
        if step < warmup {
            return base * (step + 1) as f64 / warmup as f64;
        }
        let rest = total.saturating_sub(warmup).max(1) as f64;
        let done = (step - warmup) as f64;
        base * (1.0 - done / rest).max(0.02)
    }
}

#[cfg(test)]
mod tests {
    use super::{Optimizers, Schedule};
    use crate::train::settings::OptimiserOptions;
    use candle_core::{DType, Device};

    /// Weight decay reaches the matrices and the item table only; the learning rate reaches
    /// every group; the item table learns at its scaled rate, through the schedule too; AdamW
    /// keeps its usual betas.
    #[test]
    fn optimizers_carry_the_runs_settings() -> candle_core::Result<()> {
        let vars = [
            candle_core::Var::zeros((3, 4), DType::F32, &Device::Cpu)?,
            candle_core::Var::zeros(4, DType::F32, &Device::Cpu)?,
            candle_core::Var::zeros((5, 4), DType::F32, &Device::Cpu)?,
        ];
        let opts = OptimiserOptions {
            lr: 3e-4,
            weight_decay: 0.05,
            item_lr_scale: 0.5,
            ..OptimiserOptions::default()
        };
        let mut opt = Optimizers::new(&vars, &vars[2], &opts)?;
        let (d, p, i) = (opt.decay.params(), opt.plain.params(), opt.items.params());
        assert_eq!(
            (d.lr, d.weight_decay, d.beta1, d.beta2),
            (3e-4, 0.05, 0.9, 0.999)
        );
        assert_eq!(
            (p.lr, p.weight_decay, p.beta1, p.beta2),
            (3e-4, 0.0, 0.9, 0.999)
        );
        assert_eq!(
            (i.lr, i.weight_decay, i.beta1, i.beta2),
            (1.5e-4, 0.05, 0.9, 0.999)
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
    fn schedule_warms_up_then_decays() {
        let schedule = Schedule {
            base: 1.0,
            warmup: 10,
            total: 110,
        };
        assert!((schedule.lr(0) - 0.1).abs() < 1e-12);
        assert!((schedule.lr(9) - 1.0).abs() < 1e-12);
        assert!((schedule.lr(60) - 0.5).abs() < 1e-12);
        assert!((schedule.lr(200) - 0.02).abs() < 1e-12);
    }
}

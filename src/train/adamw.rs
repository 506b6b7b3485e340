//! AdamW with decoupled weight decay (Loshchilov & Hutter), as `candle_nn::AdamW` computes it,
//! in one pass per parameter.
//!
//! candle's AdamW composes each update from a dozen tensor ops, each allocating and writing a
//! buffer as large as the parameter, then copies the results into the parameter and both
//! moments. For a large item table (the 25M-rating catalogue: 62,423 × 64) at a small batch that
//! was most of a training step. Here one in-place op reads the parameter, its gradient and the
//! moments once and writes the parameter and the moments once, split over the rayon pool.

use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Var};
use candle_nn::ParamsAdamW;
use rayon::prelude::*;

/// Elements per task of the update.
const CHUNK: usize = 1 << 14;

/// One parameter and its moments.
struct Slot {
    var: Var,
    first: Vec<f32>,
    second: Vec<f32>,
}

/// AdamW over a group of parameters.
pub(super) struct FusedAdamW {
    slots: Vec<Slot>,
    params: ParamsAdamW,
    step: usize,
}

impl FusedAdamW {
    pub(super) fn new(vars: Vec<Var>, params: ParamsAdamW) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|var| {
                if var.dtype() != candle_core::DType::F32 {
                    candle_core::bail!("AdamW expects f32 parameters, got {:?}", var.dtype());
                }
                let n = var.elem_count();
                Ok(Slot {
                    var,
                    first: vec![0.0; n],
                    second: vec![0.0; n],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            slots,
            params,
            step: 0,
        })
    }

    #[cfg(test)]
    pub(super) fn params(&self) -> &ParamsAdamW {
        &self.params
    }

    pub(super) fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// One update of every parameter that has a gradient in `grads`.
    pub(super) fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let p = &self.params;
        let t = self.step as i32;
        let coefficients = Coefficients {
            beta1: p.beta1 as f32,
            beta2: p.beta2 as f32,
            one_minus_beta1: (1.0 - p.beta1) as f32,
            one_minus_beta2: (1.0 - p.beta2) as f32,
            scale_m: (1.0 / (1.0 - p.beta1.powi(t))) as f32,
            scale_v: (1.0 / (1.0 - p.beta2.powi(t))) as f32,
            decay: (1.0 - p.lr * p.weight_decay) as f32,
            lr: p.lr as f32,
            eps: p.eps as f32,
        };
        for slot in &mut self.slots {
            let Some(grad) = grads.get(&slot.var) else {
                continue;
            };
            let update = Update {
                coefficients,
                moments: Mutex::new((&mut slot.first, &mut slot.second)),
            };
            slot.var.inplace_op2(&grad.contiguous()?, &update)?;
        }
        Ok(())
    }
}

/// The step's scalars, rounded to f32 as candle's affine ops round them.
#[derive(Debug, Clone, Copy)]
struct Coefficients {
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    scale_m: f32,
    scale_v: f32,
    /// `1 - lr · weight_decay`.
    decay: f32,
    lr: f32,
    eps: f32,
}

impl Coefficients {
    /// Updates one parameter value and its moments from its gradient.
    #[inline]
    fn apply(&self, theta: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        *m = *m * self.beta1 + g * self.one_minus_beta1;
        *v = *v * self.beta2 + (g * g) * self.one_minus_beta2;
        let m_hat = *m * self.scale_m;
        let v_hat = *v * self.scale_v;
        *theta = *theta * self.decay - (m_hat / (v_hat.sqrt() + self.eps)) * self.lr;
    }
}

/// The in-place update of one parameter; the moments are the optimizer's, lent for the call.
struct Update<'a> {
    coefficients: Coefficients,
    moments: Mutex<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (CpuStorage::F32(theta), CpuStorage::F32(grad)) = (s1, s2) else {
            candle_core::bail!("AdamW expects f32 parameters and gradients");
        };
        let (Some((t0, t1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("AdamW expects contiguous parameters and gradients");
        };
        let (theta, grad) = (&mut theta[t0..t1], &grad[g0..g1]);
        let mut moments = self
            .moments
            .lock()
            .map_err(|_| candle_core::Error::Msg("AdamW moments lock poisoned".into()))?;
        let (first, second) = &mut *moments;
        if grad.len() != theta.len() || first.len() != theta.len() {
            candle_core::bail!(
                "AdamW: a gradient of {} for a parameter of {}",
                grad.len(),
                theta.len()
            );
        }
        let c = self.coefficients;
        theta
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(
                first
                    .par_chunks_mut(CHUNK)
                    .zip(second.par_chunks_mut(CHUNK)),
            )
            .for_each(|((theta, grad), (m, v))| {
                for (((theta, &g), m), v) in theta.iter_mut().zip(grad).zip(m).zip(v) {
                    c.apply(theta, g, m, v);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use candle_nn::{AdamW, Optimizer};

    /// Over several steps with changing gradients and a changing learning rate, the parameters
    /// follow candle's AdamW.
    #[test]
    fn matches_candles_adamw_step_by_step() -> Result<()> {
        let params = ParamsAdamW {
            lr: 3e-3,
            weight_decay: 0.05,
            ..ParamsAdamW::default()
        };
        // Rows of 7, more than one task's worth.
        let rows = CHUNK / 7 + 11;
        let start: Vec<f32> = (0..rows * 7)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0)
            .collect();
        let n = start.len();
        let ours_var = Var::from_vec(start.clone(), (rows, 7), &Device::Cpu)?;
        let theirs_var = Var::from_vec(start, (rows, 7), &Device::Cpu)?;
        let mut ours = FusedAdamW::new(vec![ours_var.clone()], params.clone())?;
        let mut theirs = AdamW::new(vec![theirs_var.clone()], params)?;
        for step in 0..6 {
            let g: Vec<f32> = (0..n)
                .map(|i| (((i + step * 13) * 17 % 89) as f32 - 44.0) / 30.0)
                .collect();
            let g = Tensor::from_vec(g, (rows, 7), &Device::Cpu)?;
            let (mut go, mut gt) = (GradStore::default(), GradStore::default());
            go.insert(ours_var.as_tensor(), g.clone());
            gt.insert(theirs_var.as_tensor(), g);
            let lr = 3e-3 / (step + 1) as f64;
            ours.set_learning_rate(lr);
            theirs.set_learning_rate(lr);
            ours.step(&go)?;
            theirs.step(&gt)?;
        }
        let (a, b) = (
            ours_var.flatten_all()?.to_vec1::<f32>()?,
            theirs_var.flatten_all()?.to_vec1::<f32>()?,
        );
        let moved = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| (*x - *y).abs() > 1e-6)
            .count();
        assert_eq!(moved, 0, "{moved} of {n} parameters differ");
        Ok(())
    }

    #[test]
    fn a_parameter_without_a_gradient_stays() -> Result<()> {
        let var = Var::from_vec(vec![1f32, 2.0, 3.0], 3, &Device::Cpu)?;
        let mut opt = FusedAdamW::new(vec![var.clone()], ParamsAdamW::default())?;
        opt.step(&GradStore::default())?;
        assert_eq!(var.to_vec1::<f32>()?, vec![1.0, 2.0, 3.0]);
        Ok(())
    }
}

//! Seeded dropout: candle's CPU random generator cannot be seeded, so masks come from ChaCha.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The random source of dropout during training; `None` in its place means evaluation.
pub struct DropoutRng {
    rng: ChaCha8Rng,
    bits: Vec<u32>,
}

impl DropoutRng {
    /// A generator seeded for a reproducible run.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            bits: Vec::new(),
        }
    }

    /// A seed for an op that draws its own dropout bits (attention's, from ChaCha streams).
    pub(crate) fn next_seed(&mut self) -> u64 {
        self.rng.random()
    }

    /// Zeroes each element with probability `p` and scales the rest by `1 / (1 - p)`.
    pub fn apply(&mut self, xs: &Tensor, p: f32) -> candle_core::Result<Tensor> {
        if p <= 0.0 {
            return Ok(xs.clone());
        }
        let n = xs.elem_count();
        let threshold = (f64::from(p) * f64::from(u32::MAX)) as u32;
        let scale = 1.0 / (1.0 - p);
        // Draw all the words at once (ChaCha fills whole blocks), then map them in a loop
        // that vectorises.
        self.bits.resize(n, 0);
        self.rng.fill(&mut self.bits[..]);
        let keep: Vec<f32> = self
            .bits
            .iter()
            .map(|&r| if r >= threshold { scale } else { 0.0 })
            .collect();
        xs.contiguous()?.apply_op1(Masked { keep })
    }
}

/// Multiplication by a fixed mask, with a backward pass that multiplies the gradient by the
/// same mask: as a product of two tensors, candle would also compute the constant mask's
/// gradient, and zero and sum a buffer for it.
struct Masked {
    keep: Vec<f32>,
}

impl Masked {
    fn apply(&self, xs: &[f32]) -> Vec<f32> {
        xs.iter().zip(&self.keep).map(|(x, k)| x * k).collect()
    }
}

impl CustomOp1 for Masked {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (xs, _) = crate::model::ops::fused::rows(storage, layout, self.name())?;
        if xs.len() != self.keep.len() {
            candle_core::bail!(
                "dropout: a mask of {} for {} values",
                self.keep.len(),
                xs.len()
            );
        }
        Ok((CpuStorage::F32(self.apply(xs)), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad =
            crate::model::ops::fused::with_rows(grad_res, self.name(), |g, _| Ok(self.apply(g)))?;
        Ok(Some(Tensor::from_vec(grad, res.shape(), res.device())?))
    }
}

/// Applies dropout when training (`rng` is `Some`), the identity otherwise.
pub(crate) fn dropout(
    xs: &Tensor,
    p: f32,
    rng: Option<&mut DropoutRng>,
) -> candle_core::Result<Tensor> {
    match rng {
        Some(r) => r.apply(xs, p),
        None => Ok(xs.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn drops_about_p_scales_the_rest_and_repeats_with_the_seed() -> candle_core::Result<()> {
        let xs = Tensor::ones((100, 100), candle_core::DType::F32, &Device::Cpu)?;
        let a = DropoutRng::new(3)
            .apply(&xs, 0.3)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let b = DropoutRng::new(3)
            .apply(&xs, 0.3)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(a, b);
        let dropped = a.iter().filter(|&&v| v == 0.0).count();
        assert!(
            (2800..3200).contains(&dropped),
            "{dropped} of 10000 dropped"
        );
        let kept = 1.0 / 0.7;
        assert!(a.iter().all(|&v| v == 0.0 || (v - kept).abs() < 1e-6));
        let mut rng = DropoutRng::new(3);
        let first = rng.apply(&xs, 0.3)?.flatten_all()?.to_vec1::<f32>()?;
        let second = rng.apply(&xs, 0.3)?.flatten_all()?.to_vec1::<f32>()?;
        assert_ne!(first, second, "each call draws a new mask");
        Ok(())
    }

    #[test]
    fn the_gradient_passes_where_the_value_was_kept_scaled_alike() -> candle_core::Result<()> {
        let x = candle_core::Var::from_tensor(&Tensor::arange(1f32, 201.0, &Device::Cpu)?)?;
        let y = DropoutRng::new(5).apply(x.as_tensor(), 0.25)?;
        let w = Tensor::arange(0f32, 200.0, &Device::Cpu)?;
        let grads = (&y * &w)?.sum_all()?.backward()?;
        let g = grads
            .get(x.as_tensor())
            .expect("a gradient")
            .to_vec1::<f32>()?;
        let (x, y, w) = (
            x.as_tensor().to_vec1::<f32>()?,
            y.to_vec1::<f32>()?,
            w.to_vec1::<f32>()?,
        );
        for i in 0..200 {
            // A kept value is x / 0.75 and passes w / 0.75 back; a dropped one passes nothing.
            let factor = y[i] / x[i];
            assert!(factor == 0.0 || (factor - 1.0 / 0.75).abs() < 1e-6);
            assert!(
                (g[i] - w[i] * factor).abs() < 1e-4,
                "{i}: {} vs {}",
                g[i],
                w[i] * factor
            );
        }
        Ok(())
    }
}

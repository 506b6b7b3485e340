//! Seeded dropout: candle's CPU random generator cannot be seeded, so masks come from ChaCha.

use candle_core::Tensor;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The random source of dropout during training; `None` in its place means evaluation.
pub struct DropoutRng {
    rng: ChaCha8Rng,
    bits: Vec<u32>,
    buf: Vec<f32>,
}

impl DropoutRng {
    /// A generator seeded for a reproducible run.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            bits: Vec::new(),
            buf: Vec::new(),
        }
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
        self.buf.clear();
        self.buf.extend(
            self.bits
                .iter()
                .map(|&r| if r >= threshold { scale } else { 0.0 }),
        );
        let mask = Tensor::from_slice(&self.buf, xs.shape(), xs.device())?;
        xs * mask
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
}

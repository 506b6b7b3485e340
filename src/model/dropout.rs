//! Seeded dropout: candle's CPU random generator cannot be seeded, so masks come from ChaCha.

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The random source of dropout during training; `None` in its place means evaluation.
pub struct DropoutRng {
    rng: ChaCha8Rng,
    buf: Vec<f32>,
}

impl DropoutRng {
    /// A generator seeded for a reproducible run.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
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
        self.buf.clear();
        self.buf.reserve(n);
        for _ in 0..n {
            let keep = self.rng.next_u32() >= threshold;
            self.buf.push(if keep { scale } else { 0.0 });
        }
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

//! Row-wise softmax and normalisation as single ops with a backward pass.
//!
//! candle 0.11's fused `softmax_last_dim` and `layer_norm` have no backward pass, and composing
//! them from tensor ops (max, subtract, exp, sum, divide; mean, subtract, square, mean, sqrt,
//! divide) reads and allocates the whole tensor once per op, forward and backward. These ops
//! read their input once forward and write the gradient once backward.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

/// The contiguous `f32` data of `layout` in `storage`, and its last dimension.
fn rows<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<(&'a [f32], usize)> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} expects f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} expects a contiguous tensor");
    };
    let width = layout.shape().dims().last().copied().unwrap_or(1);
    if width == 0 {
        candle_core::bail!("{op} of an empty last dimension");
    }
    Ok((&data[start..end], width))
}

/// Runs `f` on the contiguous `f32` rows of `t` (copied first when not contiguous).
fn with_rows<T>(t: &Tensor, op: &str, f: impl FnOnce(&[f32], usize) -> Result<T>) -> Result<T> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("{op} runs on the CPU");
    };
    let (data, width) = rows(cpu, layout, op)?;
    f(data, width)
}

/// Applies `f` to every row of `data` (rows of `width`), writing each result row into a new
/// buffer of the same size.
fn map_rows(data: &[f32], width: usize, f: impl Fn(&[f32], &mut [f32])) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for (row, dst) in data.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        f(row, dst);
    }
    out
}

/// Softmax over the last dimension.
struct SoftmaxRows;

impl CustomOp1 for SoftmaxRows {
    fn name(&self) -> &'static str {
        "softmax-rows"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (data, width) = rows(storage, layout, self.name())?;
        let out = map_rows(data, width, |row, dst| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (d, &x) in dst.iter_mut().zip(row) {
                *d = (x - max).exp();
                sum += *d;
            }
            let inv = 1.0 / sum;
            dst.iter_mut().for_each(|d| *d *= inv);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    /// `dx = y ⊙ (g − Σ g ⊙ y)` per row, with `y` the softmax.
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = with_rows(res, self.name(), |y, width| {
            with_rows(grad_res, self.name(), |g, _| {
                let mut out = vec![0f32; y.len()];
                for ((yr, gr), dst) in y
                    .chunks_exact(width)
                    .zip(g.chunks_exact(width))
                    .zip(out.chunks_exact_mut(width))
                {
                    let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                    for ((d, &yv), &gv) in dst.iter_mut().zip(yr).zip(gr) {
                        *d = yv * (gv - dot);
                    }
                }
                Ok(out)
            })
        })?;
        Ok(Some(Tensor::from_vec(grad, res.shape(), res.device())?))
    }
}

/// Softmax over the last dimension of an `f32` tensor, with a backward pass.
pub(crate) fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    xs.contiguous()?.apply_op1(SoftmaxRows)
}

/// `(x − mean) / sqrt(var + eps)` over the last dimension (the biased variance).
struct NormalizeRows {
    eps: f32,
}

impl NormalizeRows {
    /// The mean and `1 / sqrt(var + eps)` of a row.
    fn moments(&self, row: &[f32]) -> (f32, f32) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|&x| (x - mean) * (x - mean)).sum::<f32>() / n;
        (mean, 1.0 / (var + self.eps).sqrt())
    }
}

impl CustomOp1 for NormalizeRows {
    fn name(&self) -> &'static str {
        "normalize-rows"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (data, width) = rows(storage, layout, self.name())?;
        let out = map_rows(data, width, |row, dst| {
            let (mean, inv_std) = self.moments(row);
            for (d, &x) in dst.iter_mut().zip(row) {
                *d = (x - mean) * inv_std;
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    /// With `x̂` the output and `σ⁻¹` the row's inverse deviation:
    /// `dx = σ⁻¹ (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂))`.
    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let name = self.name();
        let grad = with_rows(arg, name, |x, width| {
            with_rows(res, name, |xhat, _| {
                with_rows(grad_res, name, |g, _| {
                    let n = width as f32;
                    let mut out = vec![0f32; x.len()];
                    for (((xr, hr), gr), dst) in x
                        .chunks_exact(width)
                        .zip(xhat.chunks_exact(width))
                        .zip(g.chunks_exact(width))
                        .zip(out.chunks_exact_mut(width))
                    {
                        let (_, inv_std) = self.moments(xr);
                        let mean_g = gr.iter().sum::<f32>() / n;
                        let mean_gh = gr.iter().zip(hr).map(|(a, b)| a * b).sum::<f32>() / n;
                        for ((d, &gv), &hv) in dst.iter_mut().zip(gr).zip(hr) {
                            *d = inv_std * (gv - mean_g - hv * mean_gh);
                        }
                    }
                    Ok(out)
                })
            })
        })?;
        Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?))
    }
}

/// Normalises the last dimension of an `f32` tensor to zero mean and unit variance, with a
/// backward pass.
pub(crate) fn normalize_last_dim(xs: &Tensor, eps: f32) -> Result<Tensor> {
    xs.contiguous()?.apply_op1(NormalizeRows { eps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};

    fn input(rows: usize, width: usize) -> Result<Var> {
        let values: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0 + (i % 3) as f32 * 0.1)
            .collect();
        Var::from_vec(values, (rows, width), &Device::Cpu)
    }

    /// A weighting that makes every output's gradient different.
    fn weights(rows: usize, width: usize) -> Result<Tensor> {
        let w: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0)
            .collect();
        Tensor::from_vec(w, (rows, width), &Device::Cpu)
    }

    /// Value and gradient of `ours` and `reference` agree on the same input.
    fn agree(
        ours: impl Fn(&Tensor) -> Result<Tensor>,
        reference: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        let (rows, width) = (6, 9);
        let x = input(rows, width)?;
        let w = weights(rows, width)?;
        let a = ours(x.as_tensor())?;
        let b = reference(x.as_tensor())?;
        let (va, vb) = (a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
        for (p, q) in va.iter().flatten().zip(vb.iter().flatten()) {
            assert!((p - q).abs() < 1e-5, "value {p} vs {q}");
        }
        let ga = (a * &w)?.sum_all()?.backward()?;
        let gb = (b * &w)?.sum_all()?.backward()?;
        let ga = ga.get(&x).expect("gradient").to_vec2::<f32>()?;
        let gb = gb.get(&x).expect("gradient").to_vec2::<f32>()?;
        for (p, q) in ga.iter().flatten().zip(gb.iter().flatten()) {
            assert!((p - q).abs() < 1e-4, "gradient {p} vs {q}");
        }
        assert!(ga.iter().flatten().any(|g| g.abs() > 1e-3));
        Ok(())
    }

    #[test]
    fn softmax_matches_candle_in_value_and_gradient() -> Result<()> {
        agree(softmax_last_dim, |x| candle_nn::ops::softmax(x, D::Minus1))
    }

    #[test]
    fn normalisation_matches_the_composed_ops_in_value_and_gradient() -> Result<()> {
        let eps = 1e-5;
        agree(
            |x| normalize_last_dim(x, eps),
            |x| {
                let mean = x.mean_keepdim(D::Minus1)?;
                let centred = x.broadcast_sub(&mean)?;
                let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
                centred.broadcast_div(&(var + eps as f64)?.sqrt()?)
            },
        )
    }

    #[test]
    fn a_masked_key_gets_no_weight() -> Result<()> {
        let x = Tensor::new(&[[0.5f32, -1e9, 2.0]], &Device::Cpu)?;
        let y = softmax_last_dim(&x)?.to_vec2::<f32>()?;
        assert_eq!(y[0][1], 0.0);
        assert!((y[0][0] + y[0][2] - 1.0).abs() < 1e-6);
        Ok(())
    }
}

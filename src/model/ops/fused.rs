//! Row-wise normalisation, a row added to every row, and elementwise GELU, as single ops with a
//! backward pass.
//!
//! candle 0.11's fused `layer_norm` has no backward pass, and composing it from tensor ops
//! (mean, subtract, square, mean, sqrt, divide) reads and allocates the whole tensor once per
//! op, forward and backward. These ops read their input once forward and write the gradient
//! once backward.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor,
};
use rayon::prelude::*;

use super::gelu_kernel;

/// The contiguous `f32` data of `layout` in `storage`, and its last dimension.
pub(crate) fn rows<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<(&'a [f32], usize)> {
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
pub(crate) fn with_rows<T>(
    t: &Tensor,
    op: &str,
    f: impl FnOnce(&[f32], usize) -> Result<T>,
) -> Result<T> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("{op} runs on the CPU");
    };
    let (data, width) = rows(cpu, layout, op)?;
    f(data, width)
}

/// Rows at and above which [`map_rows`] spreads the rows over the rayon pool.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// Applies `f` to every row of `data` (rows of `width`), writing each result row into a new
/// buffer of the same size; large inputs are split over the rayon pool.
fn map_rows(data: &[f32], width: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    if data.len() >= PARALLEL_ELEMENTS {
        out.par_chunks_exact_mut(width)
            .zip(data.par_chunks_exact(width))
            .for_each(|(dst, row)| f(row, dst));
    } else {
        for (row, dst) in data.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
            f(row, dst);
        }
    }
    out
}

/// [`map_rows`] over two inputs of the same shape, row by row.
fn map_row_pairs(
    a: &[f32],
    b: &[f32],
    width: usize,
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; a.len()];
    if a.len() >= PARALLEL_ELEMENTS {
        out.par_chunks_exact_mut(width)
            .zip(a.par_chunks_exact(width).zip(b.par_chunks_exact(width)))
            .for_each(|(dst, (ra, rb))| f(ra, rb, dst));
    } else {
        for ((ra, rb), dst) in a
            .chunks_exact(width)
            .zip(b.chunks_exact(width))
            .zip(out.chunks_exact_mut(width))
        {
            f(ra, rb, dst);
        }
    }
    out
}

/// The mean and `1 / sqrt(var + eps)` of a row (the biased variance). Both sums run in lanes
/// ([`gelu_kernel::sum`] and [`squared_deviations`]): a plain `iter().sum()` is one serial chain
/// of additions, which held a tenth of a SASRec batch at length 50.
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = gelu_kernel::sum(row) / n;
    let var = squared_deviations(row, mean) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// `Σ (x - mean)²` over a row, in eight interleaved partial sums (an order that vectorizes).
fn squared_deviations(row: &[f32], mean: f32) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += (x - mean) * (x - mean);
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|&x| (x - mean) * (x - mean)).sum::<f32>()
}

/// Sums the rows of `data` (rows of `width`): the gradient of a vector broadcast over rows.
/// candle's own sum over the first dimension divides an index per element; this loop is
/// contiguous and vectorises.
pub(crate) fn column_sums(data: &[f32], width: usize) -> Vec<f32> {
    let mut acc = vec![0f32; width];
    for row in data.chunks_exact(width) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
    acc
}

/// The contiguous `f32` data of a vector argument, checked to have `width` elements.
pub(crate) fn vector<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    width: usize,
    op: &str,
) -> Result<&'a [f32]> {
    let (data, _) = rows(storage, layout, op)?;
    if data.len() != width {
        candle_core::bail!("{op}: a vector of {} for rows of {width}", data.len());
    }
    Ok(data)
}

/// Layer normalisation over the last dimension, `x̂ ⊙ w + b` with `x̂ = (x − mean) / sqrt(var +
/// eps)`, as one op: the scale and shift need no broadcast ops, whose backward pass in candle
/// is a slow strided sum.
struct LayerNormRows {
    eps: f32,
}

impl CustomOp3 for LayerNormRows {
    fn name(&self) -> &'static str {
        "layer-norm-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (data, width) = rows(s1, l1, self.name())?;
        let weight = vector(s2, l2, width, self.name())?;
        let bias = vector(s3, l3, width, self.name())?;
        let out = map_rows(data, width, |row, dst| {
            let (mean, inv_std) = moments(row, self.eps);
            for (((d, &x), &w), &b) in dst.iter_mut().zip(row).zip(weight).zip(bias) {
                *d = (x - mean) * inv_std * w + b;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// With `x̂` the normalised row, `σ⁻¹` its inverse deviation and `h = g ⊙ w`:
    /// `dx = σ⁻¹ (h − mean(h) − x̂ ⊙ mean(h ⊙ x̂))`, `dw = Σ_rows g ⊙ x̂`, `db = Σ_rows g`.
    fn bwd(
        &self,
        arg: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let (dx, dw, db) = with_rows(arg, name, |x, width| {
            with_rows(weight, name, |w, _| {
                with_rows(grad_res, name, |g, _| {
                    let n = width as f32;
                    let mut dx = vec![0f32; x.len()];
                    let mut dw = vec![0f32; width];
                    let mut h = vec![0f32; width];
                    let mut xhat = vec![0f32; width];
                    for ((xr, gr), dst) in x
                        .chunks_exact(width)
                        .zip(g.chunks_exact(width))
                        .zip(dx.chunks_exact_mut(width))
                    {
                        let (mean, inv_std) = moments(xr, self.eps);
                        for ((((xh, hv), acc), &xv), (&gv, &wv)) in xhat
                            .iter_mut()
                            .zip(h.iter_mut())
                            .zip(dw.iter_mut())
                            .zip(xr)
                            .zip(gr.iter().zip(w))
                        {
                            *xh = (xv - mean) * inv_std;
                            *hv = gv * wv;
                            *acc += gv * *xh;
                        }
                        let mean_h = h.iter().sum::<f32>() / n;
                        let mean_hx = h.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f32>() / n;
                        for ((d, &hv), &xh) in dst.iter_mut().zip(&h).zip(&xhat) {
                            *d = inv_std * (hv - mean_h - xh * mean_hx);
                        }
                    }
                    Ok((dx, dw, column_sums(g, width)))
                })
            })
        })?;
        let device = arg.device();
        Ok((
            Some(Tensor::from_vec(dx, arg.shape(), device)?),
            Some(Tensor::from_vec(dw, weight.shape(), device)?),
            Some(Tensor::from_vec(db, bias.shape(), device)?),
        ))
    }
}

/// Layer normalisation of the last dimension of an `f32` tensor with scale `weight` and shift
/// `bias`, with a backward pass for all three.
pub(crate) fn layer_norm(xs: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    xs.contiguous()?
        .apply_op3(weight, bias, LayerNormRows { eps })
}

/// [`layer_norm`] for inference: the same op, recording nothing for a backward pass. candle's
/// own fused `layer_norm` sums each row in one serial chain (scalar code, a tenth of a batch).
pub(crate) fn layer_norm_inference(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    xs.contiguous()?
        .apply_op3_no_bwd(weight, bias, &LayerNormRows { eps })
}

/// Adds a vector to every row: `x + b` for `x` of last dimension `b.len()`.
struct AddRow;

impl CustomOp2 for AddRow {
    fn name(&self) -> &'static str {
        "add-row"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (data, width) = rows(s1, l1, self.name())?;
        let bias = vector(s2, l2, width, self.name())?;
        let out = map_rows(data, width, |row, dst| {
            for ((d, &x), &b) in dst.iter_mut().zip(row).zip(bias) {
                *d = x + b;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = with_rows(grad_res, self.name(), |g, width| Ok(column_sums(g, width)))?;
        Ok((
            Some(grad_res.clone()),
            Some(Tensor::from_vec(db, bias.shape(), bias.device())?),
        ))
    }
}

/// `xs + bias` with `bias` (a vector as long as the last dimension of `xs`) added to every row,
/// with a backward pass for both.
pub(crate) fn add_row(xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
    xs.contiguous()?.apply_op2(&bias.contiguous()?, AddRow)
}

/// GELU with the exact error function, `x Φ(x) = x (1 + erf(x / √2)) / 2`, elementwise: within
/// 3e-7 of candle's `gelu_erf` in Φ, but branch-free and vectorized (see [`gelu_kernel`]), split
/// over the rayon pool on large inputs, and with a backward pass of one pass instead of
/// candle's dozen tensor ops.
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (data, width) = rows(storage, layout, self.name())?;
        let out = map_rows(data, width, gelu_kernel::gelu_forward);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    /// `dx = g ⊙ (Φ(x) + x φ(x))`, with `φ` the standard normal density.
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = with_rows(arg, self.name(), |x, width| {
            with_rows(grad_res, self.name(), |g, _| {
                Ok(map_row_pairs(x, g, width, gelu_kernel::gelu_backward))
            })
        })?;
        Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?))
    }
}

/// GELU (exact, erf-based) of an `f32` tensor, with a backward pass.
pub(crate) fn gelu(xs: &Tensor) -> Result<Tensor> {
    xs.contiguous()?.apply_op1(Gelu)
}

/// [`Gelu`] for inference: fused multiply-adds where the CPU has them, and no backward pass.
struct GeluInference;

impl CustomOp1 for GeluInference {
    fn name(&self) -> &'static str {
        "gelu-inference"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (data, width) = rows(storage, layout, self.name())?;
        let out = map_rows(data, width, gelu_kernel::gelu_forward_inference);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// [`gelu`] for inference (see [`gelu_kernel::gelu_forward_inference`]); records no graph.
pub(crate) fn gelu_inference(xs: &Tensor) -> Result<Tensor> {
    xs.contiguous()?.apply_op1_no_bwd(&GeluInference)
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
    fn gelu_matches_candle_in_value_and_gradient() -> Result<()> {
        agree(gelu, |x| x.gelu_erf())?;
        // Split over threads, the values stay within 1e-6 of candle's.
        let x = input(PARALLEL_ELEMENTS / 64 + 3, 64)?;
        let ours = gelu(x.as_tensor())?.flatten_all()?.to_vec1::<f32>()?;
        let theirs = x.as_tensor().gelu_erf()?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(ours.len(), theirs.len());
        for (p, q) in ours.iter().zip(&theirs) {
            assert!((p - q).abs() <= 1e-6 * q.abs().max(1.0), "{p} vs {q}");
        }
        Ok(())
    }

    /// Values and gradients (of `x` and of the vectors `vecs`) agree between `ours` and
    /// `reference`, each given `x` and the vectors.
    fn agree_with_vectors(
        ours: impl Fn(&Tensor, &[Tensor]) -> Result<Tensor>,
        reference: impl Fn(&Tensor, &[Tensor]) -> Result<Tensor>,
        count: usize,
    ) -> Result<()> {
        let (rows, width) = (6, 9);
        let x = input(rows, width)?;
        let w = weights(rows, width)?;
        let vecs: Vec<Var> = (0..count)
            .map(|k| {
                let v: Vec<f32> = (0..width)
                    .map(|j| 1.0 + ((j * 5 + k * 3) % 7) as f32 / 4.0 - k as f32)
                    .collect();
                Var::from_vec(v, width, &Device::Cpu)
            })
            .collect::<Result<_>>()?;
        let plain: Vec<Tensor> = vecs.iter().map(|v| v.as_tensor().clone()).collect();
        let a = ours(x.as_tensor(), &plain)?;
        let b = reference(x.as_tensor(), &plain)?;
        let close = |p: &Tensor, q: &Tensor, tol: f32, what: &str| -> Result<()> {
            let (p, q) = (
                p.flatten_all()?.to_vec1::<f32>()?,
                q.flatten_all()?.to_vec1::<f32>()?,
            );
            assert_eq!(p.len(), q.len());
            for (u, v) in p.iter().zip(&q) {
                assert!((u - v).abs() < tol, "{what}: {u} vs {v}");
            }
            assert!(p.iter().any(|u| u.abs() > 1e-3), "{what} is all zero");
            Ok(())
        };
        close(&a, &b, 1e-5, "value")?;
        let ga = (a * &w)?.sum_all()?.backward()?;
        let gb = (b * &w)?.sum_all()?.backward()?;
        let grad = |g: &candle_core::backprop::GradStore, v: &Var| {
            g.get(v.as_tensor()).cloned().expect("gradient")
        };
        close(&grad(&ga, &x), &grad(&gb, &x), 1e-4, "gradient of x")?;
        for v in &vecs {
            close(&grad(&ga, v), &grad(&gb, v), 1e-4, "gradient of a vector")?;
        }
        Ok(())
    }

    #[test]
    fn layer_norm_matches_the_composed_ops_in_value_and_gradients() -> Result<()> {
        let eps = 1e-5;
        agree_with_vectors(
            |x, v| layer_norm(x, &v[0], &v[1], eps),
            |x, v| {
                let mean = x.mean_keepdim(D::Minus1)?;
                let centred = x.broadcast_sub(&mean)?;
                let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
                centred
                    .broadcast_div(&(var + eps as f64)?.sqrt()?)?
                    .broadcast_mul(&v[0])?
                    .broadcast_add(&v[1])
            },
            2,
        )
    }

    /// The inference op against a double-precision layer norm, on rows with and without a tail
    /// of the eight lanes and far from zero (where the mean's error would show), and it records
    /// no graph.
    #[test]
    fn layer_norm_inference_matches_a_double_precision_norm() -> Result<()> {
        for width in [1usize, 7, 8, 64, 67, 256] {
            let rows = 5;
            let data: Vec<f32> = (0..rows * width)
                .map(|i| 100.0 + ((i * 7919 % 1009) as f32 - 500.0) / 37.0)
                .collect();
            let weight: Vec<f32> = (0..width).map(|i| 0.5 + i as f32 / 50.0).collect();
            let bias: Vec<f32> = (0..width).map(|i| i as f32 / 10.0 - 1.0).collect();
            let dev = Device::Cpu;
            let xs = Var::from_vec(data.clone(), (rows, width), &dev)?;
            let out = layer_norm_inference(
                xs.as_tensor(),
                &Tensor::new(weight.as_slice(), &dev)?,
                &Tensor::new(bias.as_slice(), &dev)?,
                1e-12,
            )?;
            assert!(
                !out.is_variable() && !out.track_op(),
                "no graph for inference"
            );
            let out = out.to_vec2::<f32>()?;
            for (row, got) in data.chunks_exact(width).zip(&out) {
                let n = width as f64;
                let mean = row.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
                let var = row
                    .iter()
                    .map(|&x| (f64::from(x) - mean).powi(2))
                    .sum::<f64>()
                    / n;
                for (i, (&x, &g)) in row.iter().zip(got).enumerate() {
                    let want = (f64::from(x) - mean) / (var + 1e-12).sqrt() * f64::from(weight[i])
                        + f64::from(bias[i]);
                    assert!(
                        (f64::from(g) - want).abs() < 2e-4,
                        "width {width}: {g} vs {want}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn add_row_matches_broadcast_add_in_value_and_gradients() -> Result<()> {
        agree_with_vectors(|x, v| add_row(x, &v[0]), |x, v| x.broadcast_add(&v[0]), 1)
    }

    #[test]
    fn row_ops_reject_a_vector_of_the_wrong_length() -> Result<()> {
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu)?;
        let v = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu)?;
        assert!(add_row(&x, &v).is_err());
        assert!(layer_norm(&x, &v, &v, 1e-5).is_err());
        Ok(())
    }
}

//! Softmax cross-entropy over the item vocabulary as one fused op.
//!
//! `candle_nn::loss::cross_entropy` composes log-softmax from half a dozen tensor ops, each
//! reading and allocating a `(positions × items)` buffer, and backpropagates through every one.
//! With a full item vocabulary that buffer is the largest of the step (ml-latest-small: tens of
//! megabytes per batch). This op adds the per-item output bias, reads the logits once forward
//! (keeping the exponentials for the backward pass), and writes the gradient once backward:
//! `softmax(x) - onehot(target)`, scaled by the incoming gradient; the bias gradient is its
//! column sums. Rows are spread over the rayon pool.
//!
//! With label smoothing `ε` the target distribution is `(1 - ε) onehot + ε / V` (Szegedy et al.
//! 2016): the loss adds `ε (logsumexp - mean(x))` and the gradient subtracts `ε / V` per column.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::fused::{column_sums, vector, with_rows};
use super::gelu_kernel::{exp_in_place, row_max, sum};

/// What the forward pass leaves for the backward pass: per row, `exp(x + b - max)` and
/// `1 / Σ exp(x + b - max)`.
struct Softmax {
    exps: Vec<f32>,
    inv_sums: Vec<f32>,
}

/// Per-row loss `logsumexp(x_i + b) - (x_i[t_i] + b[t_i])` of `(N, V)` logits against `N`
/// targets, with an optional bias `b` of `V` items, and optional label smoothing.
struct RowCrossEntropy {
    targets: Vec<u32>,
    /// Label smoothing `ε` in `[0, 1)`: the share of the target's probability spread evenly
    /// over all `V` columns.
    smoothing: f32,
    /// The forward pass's exponentials, taken by the backward pass.
    saved: Mutex<Option<Softmax>>,
}

impl RowCrossEntropy {
    fn new(targets: &[u32], smoothing: f32) -> Self {
        Self {
            targets: targets.to_vec(),
            smoothing,
            saved: Mutex::new(None),
        }
    }

    /// The contiguous `f32` rows of `layout` in `storage`, and the vocabulary size.
    fn rows<'a>(&self, storage: &'a CpuStorage, layout: &Layout) -> Result<(&'a [f32], usize)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("cross-entropy expects f32 logits");
        };
        let (n, v) = layout.shape().dims2()?;
        if n != self.targets.len() {
            candle_core::bail!("{n} rows of logits for {} targets", self.targets.len());
        }
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= v) {
            candle_core::bail!("target {t} out of range for {v} items");
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("cross-entropy expects contiguous logits");
        };
        Ok((&data[start..end], v))
    }

    /// The losses, keeping the exponentials for [`backward`](Self::backward).
    fn forward(&self, data: &[f32], v: usize, bias: Option<&[f32]>) -> Result<Vec<f32>> {
        let (softmax, losses) = self.softmax(data, v, bias);
        *self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("cross-entropy lock poisoned".into()))? =
            Some(softmax);
        Ok(losses)
    }

    fn softmax(&self, data: &[f32], v: usize, bias: Option<&[f32]>) -> (Softmax, Vec<f32>) {
        let n = self.targets.len();
        let smoothing = self.smoothing;
        // Every element is written (the logits, plus the bias) before it is read, so the
        // buffer, as large as the logits, is not zeroed first.
        let mut exps: Vec<f32> = Vec::with_capacity(data.len());
        let mut inv_sums = vec![0f32; n];
        let mut losses = vec![0f32; n];
        {
            let spare = &mut exps.spare_capacity_mut()[..data.len()];
            // SAFETY: `MaybeUninit<f32>` and `f32` have the same layout; each row of the slice
            // is written whole (copied or summed from `data`) before it is read.
            let rows: &mut [f32] =
                unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), spare.len()) };
            rows.par_chunks_exact_mut(v)
                .zip(data.par_chunks_exact(v))
                .zip(inv_sums.par_iter_mut().zip(losses.par_iter_mut()))
                .zip(self.targets.par_iter())
                .for_each(|(((e, row), (inv, loss)), &t)| {
                    match bias {
                        Some(b) => e.iter_mut().zip(row).zip(b).for_each(|((e, &x), &b)| {
                            *e = x + b;
                        }),
                        None => e.copy_from_slice(row),
                    }
                    let target = e[t as usize];
                    let max = row_max(e);
                    let total = if smoothing > 0.0 { sum(e) } else { 0.0 };
                    let sum = exp_in_place(e, max);
                    *inv = 1.0 / sum;
                    let lse = max + sum.ln();
                    *loss = lse - target;
                    if smoothing > 0.0 {
                        let mean = total / e.len() as f32;
                        *loss = (1.0 - smoothing) * *loss + smoothing * (lse - mean);
                    }
                });
        }
        // SAFETY: the rows above wrote all `data.len()` elements.
        unsafe { exps.set_len(data.len()) };
        (Softmax { exps, inv_sums }, losses)
    }

    /// The gradient of the logits, `(softmax - (1 - ε) onehot - ε / V) * g` per row, from the saved
    /// exponentials (recomputed if the forward pass left none).
    fn backward(&self, arg: &Tensor, bias: Option<&Tensor>, grad_res: &Tensor) -> Result<Tensor> {
        let scales = grad_res.to_vec1::<f32>()?;
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("cross-entropy lock poisoned".into()))?
            .take();
        let v = arg.dim(1)?;
        let Softmax { mut exps, inv_sums } = match saved {
            Some(s) => s,
            None => {
                let bias_values = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
                with_rows(arg, "cross-entropy", |data, v| {
                    Ok(self.softmax(data, v, bias_values.as_deref()).0)
                })?
            }
        };
        let smoothing = self.smoothing;
        let spread = smoothing / v as f32;
        exps.par_chunks_exact_mut(v)
            .zip(inv_sums.par_iter().zip(&scales).zip(&self.targets))
            .for_each(|(row, ((&inv, &g), &t))| {
                let scale = inv * g;
                if smoothing > 0.0 {
                    let shift = spread * g;
                    row.iter_mut().for_each(|x| *x = *x * scale - shift);
                } else {
                    row.iter_mut().for_each(|x| *x *= scale);
                }
                row[t as usize] -= (1.0 - smoothing) * g;
            });
        Tensor::from_vec(exps, arg.shape(), arg.device())
    }
}

impl CustomOp1 for RowCrossEntropy {
    fn name(&self) -> &'static str {
        "row-cross-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (data, v) = self.rows(storage, layout)?;
        let losses = self.forward(data, v, None)?;
        let n = losses.len();
        Ok((CpuStorage::F32(losses), Shape::from(n)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.backward(arg, None, grad_res)?))
    }
}

impl CustomOp2 for RowCrossEntropy {
    fn name(&self) -> &'static str {
        "row-cross-entropy-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (data, v) = self.rows(s1, l1)?;
        let bias = vector(s2, l2, v, "cross-entropy bias")?;
        let losses = self.forward(data, v, Some(bias))?;
        let n = losses.len();
        Ok((CpuStorage::F32(losses), Shape::from(n)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = self.backward(arg, Some(bias), grad_res)?;
        let sums = with_rows(&grad, "cross-entropy gradient", |g, v| {
            Ok(column_sums(g, v))
        })?;
        let bias_grad = Tensor::from_vec(sums, bias.shape(), bias.device())?;
        Ok((Some(grad), Some(bias_grad)))
    }
}

/// Mean softmax cross-entropy of `(N, V)` f32 logits against `N` target indices, with a
/// backward pass. Equal to `candle_nn::loss::cross_entropy`, in one pass each way.
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    logits
        .contiguous()?
        .apply_op1(RowCrossEntropy::new(targets, 0.0))?
        .mean_all()
}

/// [`cross_entropy`] of `logits + bias`, the `(V)` bias added to every row inside the op; the
/// bias gets its gradient from the same pass. `smoothing` (label smoothing, `0` for none) moves
/// that share of each target's probability evenly onto all `V` columns.
pub fn cross_entropy_with_bias(
    logits: &Tensor,
    bias: &Tensor,
    targets: &[u32],
    smoothing: f32,
) -> Result<Tensor> {
    if !(0.0..1.0).contains(&smoothing) {
        candle_core::bail!("label smoothing {smoothing} is not in [0, 1)");
    }
    logits
        .contiguous()?
        .apply_op2(
            &bias.contiguous()?,
            RowCrossEntropy::new(targets, smoothing),
        )?
        .mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn logits(rows: usize, width: usize) -> Result<Var> {
        let values: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        Var::from_vec(values, (rows, width), &Device::Cpu)
    }

    fn close(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
        let (a, b) = (
            a.flatten_all()?.to_vec1::<f32>()?,
            b.flatten_all()?.to_vec1::<f32>()?,
        );
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-5, "{what}: {p} vs {q}");
        }
        Ok(())
    }

    /// Asserts that `ours` and `theirs` give every var the same, non-zero gradient.
    fn same_gradients(ours: &Tensor, theirs: &Tensor, vars: &[&Var]) -> Result<()> {
        let (ga, gb) = (ours.backward()?, theirs.backward()?);
        for var in vars {
            let a = ga.get(var).cloned().expect("gradient");
            let b = gb.get(var).cloned().expect("gradient");
            close(&a, &b, "gradient")?;
            assert!(a.abs()?.sum_all()?.to_scalar::<f32>()? > 1e-3);
        }
        Ok(())
    }

    #[test]
    fn matches_candle_in_value_and_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let targets = [0u32, 6, 3, 3, 1];
        let x = logits(5, 7)?;
        let t = Tensor::new(&targets[..], &dev)?;

        let ours = cross_entropy(x.as_tensor(), &targets)?;
        let theirs = candle_nn::loss::cross_entropy(x.as_tensor(), &t)?;
        close(&ours, &theirs, "loss")?;
        let ga = ours.backward()?.get(&x).cloned().expect("gradient");
        let gb = theirs.backward()?.get(&x).cloned().expect("gradient");
        close(&ga, &gb, "gradient")
    }

    #[test]
    fn the_bias_is_added_inside_and_gets_its_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let targets = [2u32, 0, 4, 4, 6, 1];
        let x = logits(6, 7)?;
        let bias = Var::from_vec(
            (0..7).map(|j| (j as f32 - 3.0) / 2.0).collect::<Vec<f32>>(),
            7,
            &dev,
        )?;
        let t = Tensor::new(&targets[..], &dev)?;

        let ours = cross_entropy_with_bias(x.as_tensor(), bias.as_tensor(), &targets, 0.0)?;
        let theirs =
            candle_nn::loss::cross_entropy(&x.as_tensor().broadcast_add(bias.as_tensor())?, &t)?;
        close(&ours, &theirs, "loss")?;
        same_gradients(&ours, &theirs, &[&x, &bias])
    }

    #[test]
    fn label_smoothing_matches_the_smoothed_target_distribution() -> Result<()> {
        let dev = Device::Cpu;
        let targets = [2u32, 0, 6, 4];
        let (rows, width, eps) = (4, 7, 0.2f32);
        let x = logits(rows, width)?;
        let bias = Var::from_vec(
            (0..width)
                .map(|j| (j as f32 - 2.0) / 5.0)
                .collect::<Vec<f32>>(),
            width,
            &dev,
        )?;
        let ours = cross_entropy_with_bias(x.as_tensor(), bias.as_tensor(), &targets, eps)?;
        // -Σ_j q_j log softmax(x + b)_j with q = (1 - ε) onehot + ε / V, averaged over rows.
        let q: Vec<f32> = targets
            .iter()
            .flat_map(|&t| {
                (0..width as u32)
                    .map(move |j| eps / width as f32 + if j == t { 1.0 - eps } else { 0.0 })
            })
            .collect();
        let q = Tensor::from_vec(q, (rows, width), &dev)?;
        let log_p =
            candle_nn::ops::log_softmax(&x.as_tensor().broadcast_add(bias.as_tensor())?, 1)?;
        let theirs = ((q * log_p)?.sum_all()? * (-1.0 / rows as f64))?;
        close(&ours, &theirs, "loss")?;
        same_gradients(&ours, &theirs, &[&x, &bias])?;
        // Smoothing raises the loss of confident, correct rows: it is not the plain loss.
        let plain = cross_entropy_with_bias(x.as_tensor(), bias.as_tensor(), &targets, 0.0)?;
        assert!((ours.to_scalar::<f32>()? - plain.to_scalar::<f32>()?).abs() > 1e-3);
        Ok(())
    }

    #[test]
    fn a_second_backward_pass_recomputes_the_same_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let targets = [1u32, 5, 0];
        let x = logits(3, 7)?;
        let bias = Var::from_vec(vec![0.3f32, -0.2, 0.0, 0.1, 0.5, -0.4, 0.2], 7, &dev)?;
        let loss = cross_entropy_with_bias(x.as_tensor(), bias.as_tensor(), &targets, 0.0)?;
        // The first pass takes the kept exponentials; the second must recompute them.
        let (first, second) = (loss.backward()?, loss.backward()?);
        for var in [&x, &bias] {
            let a = first.get(var).cloned().expect("gradient");
            let b = second.get(var).cloned().expect("gradient");
            close(&a, &b, "gradient")?;
            assert!(a.abs()?.sum_all()?.to_scalar::<f32>()? > 1e-3);
        }
        Ok(())
    }

    #[test]
    fn rows_split_over_threads_give_the_same_loss() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, width) = (300, 257);
        let targets: Vec<u32> = (0..rows as u32).map(|i| i * 7 % width as u32).collect();
        let x = logits(rows, width)?;
        let t = Tensor::new(targets.as_slice(), &dev)?;
        let ours = cross_entropy(x.as_tensor(), &targets)?;
        let theirs = candle_nn::loss::cross_entropy(x.as_tensor(), &t)?;
        close(&ours, &theirs, "loss")
    }

    #[test]
    fn bad_targets_and_bias_are_errors() {
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(cross_entropy(&x, &[0, 3]).is_err());
        assert!(cross_entropy(&x, &[0]).is_err());
        let short = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(cross_entropy_with_bias(&x, &short, &[0, 1], 0.0).is_err());
        let bias = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(cross_entropy_with_bias(&x, &bias, &[0, 1], 1.0).is_err());
        assert!(cross_entropy_with_bias(&x, &bias, &[0, 1], -0.1).is_err());
    }
}

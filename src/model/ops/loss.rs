//! Softmax cross-entropy over the item vocabulary as one fused op.
//!
//! `candle_nn::loss::cross_entropy` composes log-softmax from half a dozen tensor ops, each
//! reading and allocating a `(positions × items)` buffer, and backpropagates through every one.
//! With a full item vocabulary that buffer is the largest of the step (ml-latest-small: tens of
//! megabytes per batch). The head's op computes the logits itself, `h · itemsᵀ + b`, so that
//! they never become a tensor of the graph; it reads them once forward
//! (keeping the exponentials for the backward pass), and writes the gradient once backward:
//! `softmax(x) - onehot(target)`, scaled by the incoming gradient; the bias gradient is its
//! column sums. Rows are spread over the rayon pool.
//!
//! With label smoothing `ε` the target distribution is `(1 - ε) onehot + ε / V` (Szegedy et al.
//! 2016): the loss adds `ε (logsumexp - mean(x))` and the gradient subtracts `ε / V` per column.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::fused::{column_sums, rows, vector, with_rows};
use super::gelu_kernel::{exp_in_place, row_max, sum};
use super::matmul::{product, product_t};

/// What the forward pass leaves for the backward pass: per row, `exp(x + b - max)` and
/// `1 / Σ exp(x + b - max)`.
struct Softmax {
    exps: Vec<f32>,
    inv_sums: Vec<f32>,
}

/// The exponentials a forward pass keeps for its backward pass, taken once by it.
#[derive(Default)]
struct Kept(Mutex<Option<Softmax>>);

impl Kept {
    fn put(&self, softmax: Softmax) -> Result<()> {
        *self.lock()? = Some(softmax);
        Ok(())
    }

    /// What the forward pass kept, or `None` when a backward pass took it already.
    fn take(&self) -> Result<Option<Softmax>> {
        Ok(self.lock()?.take())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Option<Softmax>>> {
        self.0
            .lock()
            .map_err(|_| candle_core::Error::Msg("the kept exponentials' lock is poisoned".into()))
    }
}

/// Per-row loss `logsumexp(x_i + b) - (x_i[t_i] + b[t_i])` of `(N, V)` logits against `N`
/// targets, with an optional bias `b` of `V` items, and optional label smoothing.
struct RowCrossEntropy {
    targets: Vec<u32>,
    /// Label smoothing `ε` in `[0, 1)`: the share of the target's probability spread evenly
    /// over all `V` columns.
    smoothing: f32,
    /// The forward pass's exponentials, taken by the backward pass.
    saved: Kept,
}

impl RowCrossEntropy {
    fn new(targets: &[u32], smoothing: f32) -> Self {
        Self {
            targets: targets.to_vec(),
            smoothing,
            saved: Kept::default(),
        }
    }

    /// Checks `n` rows of `v` logits against the targets.
    fn check(&self, n: usize, v: usize) -> Result<()> {
        if n != self.targets.len() {
            candle_core::bail!("{n} rows of logits for {} targets", self.targets.len());
        }
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= v) {
            candle_core::bail!("target {t} out of range for {v} items");
        }
        Ok(())
    }

    /// The contiguous `f32` logits of `layout` in `storage`, and the vocabulary size.
    fn logits<'a>(&self, storage: &'a CpuStorage, layout: &Layout) -> Result<(&'a [f32], usize)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("cross-entropy expects f32 logits");
        };
        let (n, v) = layout.shape().dims2()?;
        self.check(n, v)?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("cross-entropy expects contiguous logits");
        };
        Ok((&data[start..end], v))
    }

    /// The softmax of a copy of the logits `data` (rows of `v`), and the losses.
    fn softmax(&self, data: &[f32], v: usize, bias: Option<&[f32]>) -> (Softmax, Vec<f32>) {
        // Every element is written (the logits, plus the bias) before it is read, so the
        // buffer, as large as the logits, is not zeroed first.
        let mut exps: Vec<f32> = Vec::with_capacity(data.len());
        let (inv_sums, losses) = {
            let spare = &mut exps.spare_capacity_mut()[..data.len()];
            // SAFETY: `MaybeUninit<f32>` and `f32` have the same layout; each row of the slice
            // is written whole (copied or summed from `data`) before it is read.
            let rows: &mut [f32] =
                unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), spare.len()) };
            self.softmax_rows(rows, Some(data), v, bias)
        };
        // SAFETY: the rows above wrote all `data.len()` elements.
        unsafe { exps.set_len(data.len()) };
        (Softmax { exps, inv_sums }, losses)
    }

    /// Replaces the logits `e` (rows of `v`; copied from `src` first when given) by
    /// `exp(x + b - max)` per row, and returns each row's `1 / Σ` and loss.
    fn softmax_rows(
        &self,
        e: &mut [f32],
        src: Option<&[f32]>,
        v: usize,
        bias: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        let n = self.targets.len();
        let smoothing = self.smoothing;
        let mut inv_sums = vec![0f32; n];
        let mut losses = vec![0f32; n];
        let one = |e: &mut [f32], row: Option<&[f32]>, inv: &mut f32, loss: &mut f32, t: u32| {
            match (row, bias) {
                (Some(row), Some(b)) => e.iter_mut().zip(row).zip(b).for_each(|((e, &x), &b)| {
                    *e = x + b;
                }),
                (Some(row), None) => e.copy_from_slice(row),
                (None, Some(b)) => e.iter_mut().zip(b).for_each(|(e, &b)| *e += b),
                (None, None) => {}
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
        };
        let rows = e
            .par_chunks_exact_mut(v)
            .zip(inv_sums.par_iter_mut().zip(losses.par_iter_mut()))
            .zip(self.targets.par_iter());
        match src {
            Some(src) => rows
                .zip(src.par_chunks_exact(v))
                .for_each(|(((e, (inv, loss)), &t), row)| one(e, Some(row), inv, loss, t)),
            None => rows.for_each(|((e, (inv, loss)), &t)| one(e, None, inv, loss, t)),
        }
        (inv_sums, losses)
    }

    /// The gradient of the `(n, v)` logits, `(softmax - (1 - ε) onehot - ε / V) * g` per row,
    /// from the saved exponentials (from `recompute` if the forward pass left none).
    fn backward(
        &self,
        v: usize,
        recompute: impl FnOnce() -> Result<Softmax>,
        grad_res: &Tensor,
    ) -> Result<Vec<f32>> {
        let scales = grad_res.to_vec1::<f32>()?;
        let Softmax { mut exps, inv_sums } = match self.saved.take()? {
            Some(s) => s,
            None => recompute()?,
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
        Ok(exps)
    }
}

impl CustomOp1 for RowCrossEntropy {
    fn name(&self) -> &'static str {
        "row-cross-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (data, v) = self.logits(storage, layout)?;
        let (softmax, losses) = self.softmax(data, v, None);
        self.saved.put(softmax)?;
        let n = losses.len();
        Ok((CpuStorage::F32(losses), Shape::from(n)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let v = arg.dim(1)?;
        let recompute = || {
            with_rows(arg, "cross-entropy", |data, v| {
                Ok(self.softmax(data, v, None).0)
            })
        };
        let grad = self.backward(v, recompute, grad_res)?;
        Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?))
    }
}

/// The inputs of a head op: hidden rows `(N, k)`, item rows `(V, k)` and a bias `(V)`.
struct HeadOperands<'a> {
    hidden: &'a [f32],
    items: &'a [f32],
    bias: &'a [f32],
    k: usize,
}

/// The contiguous operands of a head op, checked against each other.
fn head_operands<'a>(
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
    (s3, l3): (&'a CpuStorage, &Layout),
    op: &str,
) -> Result<HeadOperands<'a>> {
    let (hidden, k) = rows(s1, l1, op)?;
    let (items, k2) = rows(s2, l2, op)?;
    if k != k2 {
        candle_core::bail!("{op}: rows of {k} against items of {k2}");
    }
    let bias = vector(s3, l3, items.len() / k, op)?;
    Ok(HeadOperands {
        hidden,
        items,
        bias,
        k,
    })
}

/// From the logits' gradient `G` `(N, V)` of a head op: `dh = G · items`, `d items = Gᵀ · h`,
/// `d bias` the column sums of `G`.
fn head_gradients(
    grad: Vec<f32>,
    hidden: &Tensor,
    items: &Tensor,
    bias: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (n, v) = (hidden.dim(0)?, items.dim(0)?);
    let bias_grad = Tensor::from_vec(column_sums(&grad, v), bias.shape(), bias.device())?;
    let grad = Tensor::from_vec(grad, (1, n, v), hidden.device())?;
    let d_hidden = product(&grad, false, &items.unsqueeze(0)?, false, 1.0)?.squeeze(0)?;
    let d_items = product(&grad, true, &hidden.unsqueeze(0)?, false, 1.0)?.squeeze(0)?;
    Ok((Some(d_hidden), Some(d_items), Some(bias_grad)))
}

/// The cross-entropy of the output head: hidden rows `h` `(N, k)` against the item embeddings
/// `w` `(V, k)` plus a bias `b` `(V)`, the logits `h · wᵀ + b` computed inside. candle's backward
/// pass zeroes a buffer for the gradient of every tensor of the graph and adds into it; the
/// logits, the step's largest tensor, are not one, so that is a memset and a sum of `N × V`
/// values less per step.
impl CustomOp3 for RowCrossEntropy {
    fn name(&self) -> &'static str {
        "head-cross-entropy"
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
        let HeadOperands {
            hidden,
            items: weights,
            bias,
            k,
        } = head_operands((s1, l1), (s2, l2), (s3, l3), "head cross-entropy")?;
        let (n, v) = (hidden.len() / k, weights.len() / k);
        self.check(n, v)?;
        let mut exps = product_t(hidden, weights, (n, k, v))?;
        let (inv_sums, losses) = self.softmax_rows(&mut exps, None, v, Some(bias));
        self.saved.put(Softmax { exps, inv_sums })?;
        Ok((CpuStorage::F32(losses), Shape::from(n)))
    }

    /// The logits' gradient, then [`head_gradients`].
    fn bwd(
        &self,
        hidden: &Tensor,
        weights: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let v = weights.dim(0)?;
        let recompute = || {
            let logits = product(
                &hidden.unsqueeze(0)?,
                false,
                &weights.unsqueeze(0)?,
                true,
                1.0,
            )?;
            let b = bias.to_vec1::<f32>()?;
            with_rows(&logits, "cross-entropy", |data, v| {
                Ok(self.softmax(data, v, Some(&b)).0)
            })
        };
        let grad = self.backward(v, recompute, grad_res)?;
        head_gradients(grad, hidden, weights, bias)
    }
}

/// `logsumexp_j (h_i · w_j + b_j)` for each row of `h` `(N, k)` over the items `w` `(K, k)` with
/// a bias `b` `(K)`, leaving out each row's excluded column: sampled softmax's negatives. The
/// `(N, K)` logits are computed inside and never become a tensor of the graph (see the head
/// op of [`RowCrossEntropy`]).
struct HeadLogSumExp {
    /// Per row, the column left out (its target, when the target was drawn as a negative).
    excluded: Vec<Option<u32>>,
    saved: Kept,
}

impl HeadLogSumExp {
    /// Per row `exp(x - max)` (zero at the excluded column), `1 / Σ`, and the logsumexp.
    fn exponentials(
        &self,
        h: &[f32],
        w: &[f32],
        b: &[f32],
        k: usize,
    ) -> Result<(Softmax, Vec<f32>)> {
        let (n, cols) = (h.len() / k, w.len() / k);
        if self.excluded.len() != n {
            candle_core::bail!("{n} rows for {} exclusions", self.excluded.len());
        }
        if let Some(c) = self
            .excluded
            .iter()
            .flatten()
            .find(|&&c| c as usize >= cols)
        {
            candle_core::bail!("excluded column {c} out of range for {cols} items");
        }
        let mut exps = product_t(h, w, (n, k, cols))?;
        let mut inv_sums = vec![0f32; n];
        let mut out = vec![0f32; n];
        exps.par_chunks_exact_mut(cols)
            .zip(inv_sums.par_iter_mut().zip(out.par_iter_mut()))
            .zip(self.excluded.par_iter())
            .for_each(|((e, (inv, lse)), &excluded)| {
                e.iter_mut().zip(b).for_each(|(e, &b)| *e += b);
                if let Some(c) = excluded {
                    e[c as usize] = f32::NEG_INFINITY;
                }
                let max = row_max(e);
                let sum = exp_in_place(e, max);
                *inv = 1.0 / sum;
                *lse = max + sum.ln();
            });
        Ok((Softmax { exps, inv_sums }, out))
    }
}

impl CustomOp3 for HeadLogSumExp {
    fn name(&self) -> &'static str {
        "head-logsumexp"
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
        let HeadOperands {
            hidden: h,
            items: w,
            bias: b,
            k,
        } = head_operands((s1, l1), (s2, l2), (s3, l3), self.name())?;
        let (softmax, out) = self.exponentials(h, w, b, k)?;
        self.saved.put(softmax)?;
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    /// The logits' gradient is the softmax times the incoming gradient, `G = softmax ⊙ g`; then
    /// [`head_gradients`].
    fn bwd(
        &self,
        hidden: &Tensor,
        items: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let cols = items.dim(0)?;
        let Softmax { mut exps, inv_sums } = match self.saved.take()? {
            Some(s) => s,
            None => {
                let b = bias.to_vec1::<f32>()?;
                with_rows(hidden, self.name(), |h, k| {
                    with_rows(items, self.name(), |w, _| {
                        Ok(self.exponentials(h, w, &b, k)?.0)
                    })
                })?
            }
        };
        let scales = grad_res.to_vec1::<f32>()?;
        exps.par_chunks_exact_mut(cols)
            .zip(inv_sums.par_iter().zip(&scales))
            .for_each(|(row, (&inv, &g))| {
                let scale = inv * g;
                row.iter_mut().for_each(|x| *x *= scale);
            });
        head_gradients(exps, hidden, items, bias)
    }
}

/// Per row of `hidden` `(N, k)`, the logsumexp of its logits `hidden · itemsᵀ + bias` against
/// `items` `(K, k)` with `bias` `(K)`, leaving out column `excluded[i]` in row `i`: `(N)`. The
/// logits are computed inside and never returned; every input gets its gradient.
pub fn head_logsumexp(
    hidden: &Tensor,
    items: &Tensor,
    bias: &Tensor,
    excluded: Vec<Option<u32>>,
) -> Result<Tensor> {
    hidden.dims2()?;
    items.dims2()?;
    hidden.contiguous()?.apply_op3(
        &items.contiguous()?,
        &bias.contiguous()?,
        HeadLogSumExp {
            excluded,
            saved: Kept::default(),
        },
    )
}

/// Mean softmax cross-entropy of `(N, V)` f32 logits against `N` target indices, with a
/// backward pass. Equal to `candle_nn::loss::cross_entropy`, in one pass each way.
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    logits
        .contiguous()?
        .apply_op1(RowCrossEntropy::new(targets, 0.0))?
        .mean_all()
}

/// [`cross_entropy`] of the logits `hidden · itemsᵀ + bias` (`(N, k)` rows, `(V, k)` items, a
/// `(V)` bias), which the op computes inside and never returns: every input gets its gradient
/// from the same pass. `smoothing` (label smoothing, `0` for none) moves that share of each
/// target's probability evenly onto all `V` columns.
pub fn head_cross_entropy(
    hidden: &Tensor,
    items: &Tensor,
    bias: &Tensor,
    targets: &[u32],
    smoothing: f32,
) -> Result<Tensor> {
    if !(0.0..1.0).contains(&smoothing) {
        candle_core::bail!("label smoothing {smoothing} is not in [0, 1)");
    }
    hidden.dims2()?;
    items.dims2()?;
    hidden
        .contiguous()?
        .apply_op3(
            &items.contiguous()?,
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

    /// Hidden rows `(n, k)` and item embeddings `(v, k)` as variables.
    fn head(n: usize, v: usize, k: usize) -> Result<(Var, Var)> {
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| (((i + seed) * 37 % 11) as f32 - 5.0) / 4.0)
                .collect()
        };
        Ok((
            Var::from_vec(values(n * k, 0), (n, k), &Device::Cpu)?,
            Var::from_vec(values(v * k, 3), (v, k), &Device::Cpu)?,
        ))
    }

    /// `h · wᵀ + b` by candle's own ops.
    fn candle_logits(h: &Var, w: &Var, b: &Var) -> Result<Tensor> {
        h.as_tensor()
            .matmul(&w.as_tensor().t()?)?
            .broadcast_add(b.as_tensor())
    }

    #[test]
    fn the_head_and_bias_are_computed_inside_and_get_their_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let targets = [2u32, 0, 4, 4, 6, 1];
        let (h, w) = head(6, 7, 5)?;
        let bias = Var::from_vec(
            (0..7).map(|j| (j as f32 - 3.0) / 2.0).collect::<Vec<f32>>(),
            7,
            &dev,
        )?;
        let t = Tensor::new(&targets[..], &dev)?;

        let ours = head_cross_entropy(
            h.as_tensor(),
            w.as_tensor(),
            bias.as_tensor(),
            &targets,
            0.0,
        )?;
        let theirs = candle_nn::loss::cross_entropy(&candle_logits(&h, &w, &bias)?, &t)?;
        close(&ours, &theirs, "loss")?;
        same_gradients(&ours, &theirs, &[&h, &w, &bias])
    }

    #[test]
    fn label_smoothing_matches_the_smoothed_target_distribution() -> Result<()> {
        let dev = Device::Cpu;
        let targets = [2u32, 0, 6, 4];
        let (rows, width, eps) = (4, 7, 0.2f32);
        let (h, w) = head(rows, width, 3)?;
        let bias = Var::from_vec(
            (0..width)
                .map(|j| (j as f32 - 2.0) / 5.0)
                .collect::<Vec<f32>>(),
            width,
            &dev,
        )?;
        let ours = head_cross_entropy(
            h.as_tensor(),
            w.as_tensor(),
            bias.as_tensor(),
            &targets,
            eps,
        )?;
        // -Σ_j q_j log softmax(x + b)_j with q = (1 - ε) onehot + ε / V, averaged over rows.
        let q: Vec<f32> = targets
            .iter()
            .flat_map(|&t| {
                (0..width as u32)
                    .map(move |j| eps / width as f32 + if j == t { 1.0 - eps } else { 0.0 })
            })
            .collect();
        let q = Tensor::from_vec(q, (rows, width), &dev)?;
        let log_p = candle_nn::ops::log_softmax(&candle_logits(&h, &w, &bias)?, 1)?;
        let theirs = ((q * log_p)?.sum_all()? * (-1.0 / rows as f64))?;
        close(&ours, &theirs, "loss")?;
        same_gradients(&ours, &theirs, &[&h, &w, &bias])?;
        // Smoothing raises the loss of confident, correct rows: it is not the plain loss.
        let plain = head_cross_entropy(
            h.as_tensor(),
            w.as_tensor(),
            bias.as_tensor(),
            &targets,
            0.0,
        )?;
        assert!((ours.to_scalar::<f32>()? - plain.to_scalar::<f32>()?).abs() > 1e-3);
        Ok(())
    }

    #[test]
    fn a_second_backward_pass_recomputes_the_same_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let targets = [1u32, 5, 0];
        let (h, w) = head(3, 7, 4)?;
        let bias = Var::from_vec(vec![0.3f32, -0.2, 0.0, 0.1, 0.5, -0.4, 0.2], 7, &dev)?;
        let loss = head_cross_entropy(
            h.as_tensor(),
            w.as_tensor(),
            bias.as_tensor(),
            &targets,
            0.0,
        )?;
        // The first pass takes the kept exponentials; the second must recompute them.
        let (first, second) = (loss.backward()?, loss.backward()?);
        for var in [&h, &w, &bias] {
            let a = first.get(var).cloned().expect("gradient");
            let b = second.get(var).cloned().expect("gradient");
            close(&a, &b, "gradient")?;
            assert!(a.abs()?.sum_all()?.to_scalar::<f32>()? > 1e-3);
        }
        // The plain op recomputes too.
        let x = logits(3, 7)?;
        let loss = cross_entropy(x.as_tensor(), &targets)?;
        let (first, second) = (loss.backward()?, loss.backward()?);
        close(
            first.get(&x).expect("gradient"),
            second.get(&x).expect("gradient"),
            "gradient",
        )
    }

    #[test]
    fn logsumexp_leaves_out_the_excluded_column_and_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let (h, w) = head(4, 6, 3)?;
        let bias = Var::from_vec(vec![0.1f32, -0.3, 0.2, 0.0, 0.4, -0.1], 6, &dev)?;
        let excluded = vec![Some(2), None, Some(5), Some(0)];
        let ours = head_logsumexp(
            h.as_tensor(),
            w.as_tensor(),
            bias.as_tensor(),
            excluded.clone(),
        )?;
        // candle: the logits with -1e9 at the excluded columns, then log(sum(exp)).
        let mask: Vec<f32> = excluded
            .iter()
            .flat_map(|e| (0..6u32).map(move |c| if *e == Some(c) { -1e9 } else { 0.0 }))
            .collect();
        let logits = (candle_logits(&h, &w, &bias)? + Tensor::from_vec(mask, (4, 6), &dev)?)?;
        let theirs = logits.exp()?.sum(1)?.log()?;
        close(&ours, &theirs, "logsumexp")?;
        let weights = Tensor::new(&[1.0f32, -2.0, 0.5, 3.0], &dev)?;
        same_gradients(
            &(&ours * &weights)?.sum_all()?,
            &(&theirs * &weights)?.sum_all()?,
            &[&h, &w, &bias],
        )?;
        assert!(
            head_logsumexp(
                h.as_tensor(),
                w.as_tensor(),
                bias.as_tensor(),
                vec![None; 3]
            )
            .is_err()
        );
        assert!(
            head_logsumexp(
                h.as_tensor(),
                w.as_tensor(),
                bias.as_tensor(),
                vec![Some(6); 4]
            )
            .is_err()
        );
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
        // Two rows of width 3 against three items of width 3.
        let items = Tensor::zeros((3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let short = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(head_cross_entropy(&x, &items, &short, &[0, 1], 0.0).is_err());
        let bias = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(head_cross_entropy(&x, &items, &bias, &[0, 1], 0.0).is_ok());
        assert!(head_cross_entropy(&x, &items, &bias, &[0, 3], 0.0).is_err());
        assert!(
            head_cross_entropy(&x, &short.unsqueeze(1).unwrap(), &short, &[0, 1], 0.0).is_err()
        );
        assert!(head_cross_entropy(&x, &items, &bias, &[0, 1], 1.0).is_err());
        assert!(head_cross_entropy(&x, &items, &bias, &[0, 1], -0.1).is_err());
    }
}

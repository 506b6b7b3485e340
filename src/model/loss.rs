//! Softmax cross-entropy over the item vocabulary as one fused op.
//!
//! `candle_nn::loss::cross_entropy` composes log-softmax from half a dozen tensor ops, each
//! reading and allocating a `(positions × items)` buffer, and backpropagates through every one.
//! With a full item vocabulary that buffer is the largest of the step (ml-latest-small: tens of
//! megabytes per batch). This op reads the logits once forward and writes the gradient once
//! backward: `softmax(x) - onehot(target)`, scaled by the incoming gradient.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

/// Per-row loss `logsumexp(x_i) - x_i[t_i]` of `(N, V)` logits against `N` targets.
struct RowCrossEntropy {
    targets: Vec<u32>,
}

impl RowCrossEntropy {
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
}

/// `log Σ exp(row)`, computed stably.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    max + sum.ln()
}

impl CustomOp1 for RowCrossEntropy {
    fn name(&self) -> &'static str {
        "row-cross-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (data, v) = self.rows(storage, layout)?;
        let losses: Vec<f32> = data
            .chunks_exact(v)
            .zip(&self.targets)
            .map(|(row, &t)| log_sum_exp(row) - row[t as usize])
            .collect();
        let n = losses.len();
        Ok((CpuStorage::F32(losses), Shape::from(n)))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let arg = arg.contiguous()?;
        let losses = res.to_vec1::<f32>()?;
        let scales = grad_res.to_vec1::<f32>()?;
        let (storage, layout) = arg.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("cross-entropy runs on the CPU");
        };
        let (data, v) = self.rows(cpu, layout)?;
        let mut grad = vec![0f32; data.len()];
        for (i, (row, out)) in data
            .chunks_exact(v)
            .zip(grad.chunks_exact_mut(v))
            .enumerate()
        {
            let t = self.targets[i] as usize;
            // logsumexp = loss + x[t]; d loss / d x_j = softmax_j - [j = t].
            let lse = losses[i] + row[t];
            let g = scales[i];
            for (o, &x) in out.iter_mut().zip(row) {
                *o = (x - lse).exp() * g;
            }
            out[t] -= g;
        }
        drop(storage);
        Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?))
    }
}

/// Mean softmax cross-entropy of `(N, V)` f32 logits against `N` target indices, with a
/// backward pass. Equal to `candle_nn::loss::cross_entropy`, in one pass each way.
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let op = RowCrossEntropy {
        targets: targets.to_vec(),
    };
    logits.contiguous()?.apply_op1(op)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_in_value_and_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let values: Vec<f32> = (0..5 * 7)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let targets = [0u32, 6, 3, 3, 1];
        let x = Var::from_vec(values, (5, 7), &dev)?;
        let t = Tensor::new(&targets[..], &dev)?;

        let ours = cross_entropy(x.as_tensor(), &targets)?;
        let theirs = candle_nn::loss::cross_entropy(x.as_tensor(), &t)?;
        let (a, b) = (ours.to_scalar::<f32>()?, theirs.to_scalar::<f32>()?);
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");

        let ga = ours
            .backward()?
            .get(&x)
            .expect("gradient")
            .to_vec2::<f32>()?;
        let gb = theirs
            .backward()?
            .get(&x)
            .expect("gradient")
            .to_vec2::<f32>()?;
        for (ra, rb) in ga.iter().zip(&gb) {
            for (p, q) in ra.iter().zip(rb) {
                assert!((p - q).abs() < 1e-5, "{ga:?} vs {gb:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn bad_targets_are_errors() {
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(cross_entropy(&x, &[0, 3]).is_err());
        assert!(cross_entropy(&x, &[0]).is_err());
    }
}

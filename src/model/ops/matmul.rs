//! Batched matrix products for attention, split over the batch.
//!
//! candle multiplies a batch of matrices with one gemm call per matrix, each call split over
//! the rayon pool: attention's `(batch × heads)` small products each pay a fork and a join.
//! This op hands whole matrices to the pool's threads instead (one fork per product), reads a
//! transposed operand through its strides (no copy), and folds a scale into the product.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Storage, Tensor};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// How an operand of a batch of products is read.
#[derive(Debug, Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    /// Stored rows and columns of one matrix.
    rows: usize,
    cols: usize,
    /// Whether the product reads the matrix transposed.
    transposed: bool,
}

impl Operand<'_> {
    /// Rows and columns as the product reads them.
    fn dims(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// Row and column strides as the product reads them.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `scale · op(lhs_i) · op(rhs_i)` for every matrix `i` of the batch, into a new `(batch, m, n)`
/// buffer.
fn products(batch: usize, lhs: Operand, rhs: Operand, scale: f32) -> Result<Vec<f32>> {
    let (m, k) = lhs.dims();
    let (k2, n) = rhs.dims();
    if k != k2 {
        candle_core::bail!("batched product of {m}x{k} and {k2}x{n} matrices");
    }
    let (lhs_size, rhs_size) = (lhs.rows * lhs.cols, rhs.rows * rhs.cols);
    if lhs.data.len() != batch * lhs_size || rhs.data.len() != batch * rhs_size {
        candle_core::bail!("batched product: operands do not hold {batch} matrices");
    }
    if m * n == 0 {
        return Ok(vec![0f32; batch * m * n]);
    }
    // Every element is written by the products (the destination is never read: `read_dst` is
    // false below), so the buffer is not zeroed first: at attention's sizes zeroing cost as much
    // as a tenth of a forward pass.
    let mut out: Vec<f32> = Vec::with_capacity(batch * m * n);
    let (lhs_rs, lhs_cs) = lhs.strides();
    let (rhs_rs, rhs_cs) = rhs.strides();
    let one = |i: usize, dst: &mut [f32], parallelism: Parallelism| {
        let a = &lhs.data[i * lhs_size..(i + 1) * lhs_size];
        let b = &rhs.data[i * rhs_size..(i + 1) * rhs_size];
        // SAFETY: `dst` holds m×n values written with row stride n; `a` and `b` hold one
        // matrix each, and the strides above stay inside them for the m×k and k×n reads.
        unsafe {
            gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                lhs_cs,
                lhs_rs,
                b.as_ptr(),
                rhs_cs,
                rhs_rs,
                0.0,
                scale,
                false,
                false,
                false,
                parallelism,
            );
        }
    };
    {
        let spare = &mut out.spare_capacity_mut()[..batch * m * n];
        // SAFETY: `MaybeUninit<f32>` and `f32` have the same layout; the slice is only written
        // (by gemm, which does not read the destination), never read, before `set_len`.
        let dst: &mut [f32] =
            unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), spare.len()) };
        if batch > 1 {
            dst.par_chunks_exact_mut(m * n)
                .enumerate()
                .for_each(|(i, dst)| one(i, dst, Parallelism::None));
        } else {
            one(0, dst, parallelism());
        }
    }
    // SAFETY: the products above wrote all `batch * m * n` elements.
    unsafe { out.set_len(batch * m * n) };
    Ok(out)
}

/// How a single product splits over threads: over the current rayon pool when it has more than
/// one thread, not at all in a single-thread pool (a training shard's: its products are too
/// small to gain from splitting, and the other shards keep the other cores busy). candle's own
/// matmul reads `RAYON_NUM_THREADS` instead, whatever pool it runs in.
fn parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// The contiguous `f32` data of a 3-D tensor and its dimensions.
fn contiguous_3d<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<(&'a [f32], [usize; 3])> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("batched product expects f32");
    };
    let (b, r, c) = layout.shape().dims3()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("batched product expects contiguous operands");
    };
    Ok((&data[start..end], [b, r, c]))
}

/// Runs `f` on the contiguous data and dimensions of the 3-D tensors `a` and `b`.
fn with_pair<T>(
    a: &Tensor,
    b: &Tensor,
    f: impl FnOnce((&[f32], [usize; 3]), (&[f32], [usize; 3])) -> Result<T>,
) -> Result<T> {
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    let (sa, la) = a.storage_and_layout();
    let (sb, lb) = b.storage_and_layout();
    let (Storage::Cpu(ca), Storage::Cpu(cb)) = (&*sa, &*sb) else {
        candle_core::bail!("batched product runs on the CPU");
    };
    f(contiguous_3d(ca, la)?, contiguous_3d(cb, lb)?)
}

/// The products of two batches given as contiguous data and dimensions, and the result's
/// dimensions `[batch, m, n]`.
fn batch_products(
    (da, [ba, ra, ca]): (&[f32], [usize; 3]),
    a_t: bool,
    (db, [bb, rb, cb]): (&[f32], [usize; 3]),
    b_t: bool,
    scale: f32,
) -> Result<(Vec<f32>, [usize; 3])> {
    if ba != bb {
        candle_core::bail!("batched product of {ba} and {bb} matrices");
    }
    let lhs = Operand {
        data: da,
        rows: ra,
        cols: ca,
        transposed: a_t,
    };
    let rhs = Operand {
        data: db,
        rows: rb,
        cols: cb,
        transposed: b_t,
    };
    let out = products(ba, lhs, rhs, scale)?;
    Ok((out, [ba, lhs.dims().0, rhs.dims().1]))
}

/// `lhs · rhsᵀ` of contiguous row-major `(m, k)` and `(n, k)` matrices as a new `(m, n)`
/// buffer, split over the current pool.
pub(crate) fn product_t(
    lhs: &[f32],
    rhs: &[f32],
    (m, k, n): (usize, usize, usize),
) -> Result<Vec<f32>> {
    let (out, _) = batch_products((lhs, [1, m, k]), false, (rhs, [1, n, k]), true, 1.0)?;
    Ok(out)
}

/// `scale · op(a) · op(b)` of two 3-D tensors as a new tensor (no backward pass).
pub(crate) fn product(a: &Tensor, a_t: bool, b: &Tensor, b_t: bool, scale: f32) -> Result<Tensor> {
    let (data, dims) = with_pair(a, b, |lhs, rhs| batch_products(lhs, a_t, rhs, b_t, scale))?;
    Tensor::from_vec(data, dims.as_slice(), a.device())
}

/// `scale · lhs · op(rhs)` over a batch, with a backward pass.
struct BatchedProduct {
    rhs_transposed: bool,
    scale: f32,
}

impl CustomOp2 for BatchedProduct {
    fn name(&self) -> &'static str {
        "batched-product"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (data, dims) = batch_products(
            contiguous_3d(s1, l1)?,
            false,
            contiguous_3d(s2, l2)?,
            self.rhs_transposed,
            self.scale,
        )?;
        Ok((CpuStorage::F32(data), Shape::from(dims.as_slice())))
    }

    /// With `out = s · A · op(B)`: `dA = s · G · op(B)ᵀ`; `dB = s · Aᵀ · G`, or its transpose
    /// `s · Gᵀ · A` when the product read `B` transposed.
    fn bwd(
        &self,
        lhs: &Tensor,
        rhs: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let s = self.scale;
        let d_lhs = product(grad, false, rhs, !self.rhs_transposed, s)?;
        let d_rhs = if self.rhs_transposed {
            product(grad, true, lhs, false, s)?
        } else {
            product(lhs, true, grad, false, s)?
        };
        Ok((Some(d_lhs), Some(d_rhs)))
    }
}

/// `scale · lhs · rhs` (or `scale · lhs · rhsᵀ` with `rhs_transposed`) for 3-D tensors
/// `(batch, m, k)` and `(batch, k, n)` (or `(batch, n, k)`), with a backward pass.
pub(crate) fn batched_matmul(
    lhs: &Tensor,
    rhs: &Tensor,
    rhs_transposed: bool,
    scale: f32,
) -> Result<Tensor> {
    lhs.contiguous()?.apply_op2(
        &rhs.contiguous()?,
        BatchedProduct {
            rhs_transposed,
            scale,
        },
    )
}

/// `lhs · rhsᵀ` for 2-D tensors `(m, k)` and `(n, k)`, with a backward pass: a dense layer's
/// product with its `(out, in)` weight, or the output head's with the item embeddings, without
/// copying the transpose. It splits over the current rayon pool (see [`parallelism`]).
pub(crate) fn matmul_t(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    batched_matmul(&lhs.unsqueeze(0)?, &rhs.unsqueeze(0)?, true, 1.0)?.squeeze(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn var(shape: (usize, usize, usize), seed: usize) -> Result<Var> {
        let n = shape.0 * shape.1 * shape.2;
        let values: Vec<f32> = (0..n)
            .map(|i| (((i + seed) * 37 % 17) as f32 - 8.0) / 5.0)
            .collect();
        Var::from_vec(values, shape, &Device::Cpu)
    }

    fn close(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
        assert_eq!(a.dims(), b.dims(), "{what}");
        let (a, b) = (
            a.flatten_all()?.to_vec1::<f32>()?,
            b.flatten_all()?.to_vec1::<f32>()?,
        );
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-4, "{what}: {p} vs {q}");
        }
        assert!(a.iter().any(|v| v.abs() > 1e-3), "{what} is all zero");
        Ok(())
    }

    /// Value and both gradients against candle's matmul, for `rhs` read as it is and
    /// transposed.
    #[test]
    fn matches_candle_matmul_in_value_and_gradients() -> Result<()> {
        for (transposed, batch) in [(false, 3), (true, 3), (true, 1), (false, 1)] {
            let (m, k, n) = (4, 5, 6);
            let a = var((batch, m, k), 1)?;
            let b = if transposed {
                var((batch, n, k), 2)?
            } else {
                var((batch, k, n), 2)?
            };
            let w = var((batch, m, n), 3)?;
            let scale = 0.5;
            let ours = batched_matmul(a.as_tensor(), b.as_tensor(), transposed, scale)?;
            let rhs = if transposed {
                b.as_tensor().transpose(1, 2)?
            } else {
                b.as_tensor().clone()
            };
            let theirs = (a.as_tensor().matmul(&rhs)? * f64::from(scale))?;
            close(&ours, &theirs, "value")?;
            let ga = (ours * w.as_tensor())?.sum_all()?.backward()?;
            let gb = (theirs * w.as_tensor())?.sum_all()?.backward()?;
            for v in [&a, &b] {
                let x = ga.get(v).cloned().expect("gradient");
                let y = gb.get(v).cloned().expect("gradient");
                close(&x, &y, "gradient")?;
            }
        }
        Ok(())
    }

    /// `matmul_t` (a dense layer's product) against candle's `lhs · rhsᵀ`, in value and both
    /// gradients, split over a two-thread pool and on one thread (a training shard's pool).
    #[test]
    fn matmul_t_matches_candle_split_or_not() -> Result<()> {
        let (a, b, w) = (
            var((1, 40, 24), 1)?,
            var((1, 32, 24), 2)?,
            var((1, 40, 32), 3)?,
        );
        let (a2, b2, w2) = (a.squeeze(0)?, b.squeeze(0)?, w.squeeze(0)?);
        let theirs = a2.matmul(&b2.t()?)?;
        let gb = (&theirs * &w2)?.sum_all()?.backward()?;
        for threads in [2, 1] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let (ours, ga) = pool.install(|| -> Result<_> {
                let ours = matmul_t(&a2, &b2)?;
                let ga = (&ours * &w2)?.sum_all()?.backward()?;
                Ok((ours, ga))
            })?;
            close(&ours, &theirs, "value")?;
            for v in [&a, &b] {
                let x = ga.get(v).cloned().expect("gradient");
                let y = gb.get(v).cloned().expect("gradient");
                close(&x, &y, "gradient")?;
            }
        }
        Ok(())
    }

    #[test]
    fn mismatched_operands_are_errors() -> Result<()> {
        let a = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &Device::Cpu)?;
        let b = Tensor::zeros((2, 5, 6), candle_core::DType::F32, &Device::Cpu)?;
        assert!(batched_matmul(&a, &b, false, 1.0).is_err());
        let c = Tensor::zeros((3, 4, 6), candle_core::DType::F32, &Device::Cpu)?;
        assert!(batched_matmul(&a, &c, false, 1.0).is_err());
        Ok(())
    }
}

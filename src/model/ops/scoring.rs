//! The serving path's last product: one hidden row scored against every movie.
//!
//! gemm packs its right operand on every call. For one row against the output matrix
//! `(hidden, items)` that packing copies the whole matrix to multiply it once: at 62,423 items
//! it was most of a length-200 request. Here each task takes a slice of the items and adds
//! `row[k] · output[k][slice]` into its scores, `k` by `k`: the matrix is read once, in place,
//! and the scores of a slice stay in L1 while they are summed. (A copy of the matrix in panels
//! of 16 items, read front to back with the sums in registers, measured the same: at 62,423
//! items both are bound by reading the 16 MB matrix.)

use candle_core::{Result, Storage, Tensor};
use rayon::prelude::*;

/// Items a task scores: 64 rows of the output matrix over 1024 items are 256 KiB (L2), and the
/// task's scores 4 KiB a row (L1).
const SLICE: usize = 1024;

/// Rows up to which [`scores`] beats gemm. Measured against `matmul` at 64 features, 2 threads
/// (docs/experiments.md, ninth session): one row 0.43-0.46 against 0.63-0.75 ms at 62,423 items
/// and 0.05-0.06 against 0.09 ms at 9,724, level at 1,682; from two rows on gemm wins, since
/// this reads the matrix again for every row.
pub(crate) const MAX_ROWS: usize = 1;

/// `hidden · output + bias` for `hidden` `(m, k)`, `output` `(k, n)` and `bias` `(n)`, all f32
/// on the CPU: `(m, n)`.
pub(crate) fn scores(hidden: &Tensor, output: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (m, k) = hidden.dims2()?;
    let (k2, n) = output.dims2()?;
    if k != k2 || bias.dims1()? != n {
        candle_core::bail!(
            "scoring {m}x{k} rows against a {k2}x{n} output matrix and {} biases",
            bias.elem_count()
        );
    }
    let (hidden, output, bias) = (
        hidden.contiguous()?,
        output.contiguous()?,
        bias.contiguous()?,
    );
    let out = {
        let (sh, lh) = hidden.storage_and_layout();
        let (so, lo) = output.storage_and_layout();
        let (sb, lb) = bias.storage_and_layout();
        let (Storage::Cpu(ch), Storage::Cpu(co), Storage::Cpu(cb)) = (&*sh, &*so, &*sb) else {
            candle_core::bail!("scoring runs on the CPU");
        };
        let (h, _) = super::fused::rows(ch, lh, "scoring")?;
        let (o, _) = super::fused::rows(co, lo, "scoring")?;
        let (b, _) = super::fused::rows(cb, lb, "scoring")?;
        product(h, m, o, b)
    };
    Tensor::from_vec(out, (m, n), hidden.device())
}

/// The product on row-major slices: `hidden` `m × k`, `output` `k × n`, `bias` `n`. Each row's
/// scores are split over the pool in slices of [`SLICE`] items.
fn product(hidden: &[f32], m: usize, output: &[f32], bias: &[f32]) -> Vec<f32> {
    let n = bias.len();
    let k = hidden.len() / m.max(1);
    // Each row starts as the bias: no zeroed buffer to overwrite.
    let mut out = bias.repeat(m);
    if k == 0 || n == 0 {
        return out;
    }
    for (row, scores) in hidden.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        scores
            .par_chunks_mut(SLICE)
            .enumerate()
            .for_each(|(s, scores)| accumulate(row, output, n, s * SLICE, scores));
    }
    out
}

/// Adds `row · output[.., start..start + scores.len()]` into `scores`.
fn accumulate(row: &[f32], output: &[f32], n: usize, start: usize, scores: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU was just found to support AVX-512F.
        return unsafe { simd::accumulate_avx512(row, output, n, start, scores) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just found to support AVX2.
        return unsafe { simd::accumulate_avx2(row, output, n, start, scores) };
    }
    accumulate_loop(row, output, n, start, scores)
}

/// The loop the builds below compile for wider vectors: one `axpy` per input feature.
#[inline(always)]
fn accumulate_loop(row: &[f32], output: &[f32], n: usize, start: usize, scores: &mut [f32]) {
    let width = scores.len();
    for (i, &w) in row.iter().enumerate() {
        let line = &output[i * n + start..i * n + start + width];
        for (s, &o) in scores.iter_mut().zip(line) {
            *s += w * o;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    /// [`super::accumulate_loop`] compiled for AVX-512 (16 lanes).
    #[target_feature(enable = "avx512f")]
    pub(super) fn accumulate_avx512(
        row: &[f32],
        output: &[f32],
        n: usize,
        start: usize,
        scores: &mut [f32],
    ) {
        super::accumulate_loop(row, output, n, start, scores)
    }

    /// [`super::accumulate_loop`] compiled for AVX2 (8 lanes).
    #[target_feature(enable = "avx2")]
    pub(super) fn accumulate_avx2(
        row: &[f32],
        output: &[f32],
        n: usize,
        start: usize,
        scores: &mut [f32],
    ) {
        super::accumulate_loop(row, output, n, start, scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against a sum written out by hand, in f64, at widths that end inside a slice and rows
    /// beyond one.
    #[test]
    fn scores_are_the_product_plus_the_bias() -> Result<()> {
        for (m, k, n) in [
            (1, 3, 5),
            (1, 64, 1500),
            (2, 7, 2049),
            (1, 16, 1024),
            (3, 64, 62423 / 7),
        ] {
            let h: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let o: Vec<f32> = (0..k * n)
                .map(|i| ((i * 11 % 17) as f32 - 8.0) / 9.0)
                .collect();
            let b: Vec<f32> = (0..n).map(|j| (j % 5) as f32 - 2.0).collect();
            let got = scores(
                &Tensor::from_vec(h.clone(), (m, k), &Device::Cpu)?,
                &Tensor::from_vec(o.clone(), (k, n), &Device::Cpu)?,
                &Tensor::from_vec(b.clone(), n, &Device::Cpu)?,
            )?
            .to_vec2::<f32>()?;
            for r in 0..m {
                for j in 0..n {
                    let want: f64 = b[j] as f64
                        + (0..k)
                            .map(|i| h[r * k + i] as f64 * o[i * n + j] as f64)
                            .sum::<f64>();
                    let diff = (got[r][j] as f64 - want).abs();
                    assert!(
                        diff < 1e-4,
                        "({m},{k},{n}) row {r} item {j}: {} vs {want}",
                        got[r][j]
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_refused() -> Result<()> {
        let h = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu)?;
        let o = Tensor::zeros((5, 10), candle_core::DType::F32, &Device::Cpu)?;
        let b = Tensor::zeros(10, candle_core::DType::F32, &Device::Cpu)?;
        assert!(scores(&h, &o, &b).is_err());
        let o = Tensor::zeros((4, 10), candle_core::DType::F32, &Device::Cpu)?;
        let b = Tensor::zeros(9, candle_core::DType::F32, &Device::Cpu)?;
        assert!(scores(&h, &o, &b).is_err());
        Ok(())
    }
}

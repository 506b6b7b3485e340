//! Attention at inference as one op: `softmax(scale · q kᵀ + mask) v`, with the mask applied
//! by leaving keys out rather than by adding a large negative number.
//!
//! The additive form builds a `(B, 1, T, T)` mask for a causal model, adds it to every score,
//! exponentiates every score, masked or not, and multiplies the zeros of the masked keys by
//! their values. Here the queries go in blocks of [`BLOCK`] rows, and each block multiplies
//! only the keys one of its rows can see: after the sequence's left padding and, for a causal
//! model, up to the block's last column. At length 200 that leaves out about 40% of a causal
//! model's attention products, and all of a short padded sequence's padding.

use candle_core::{Result, Tensor};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::fused::with_rows;
use super::gelu_kernel::exp_in_place;

/// Which keys each attention row may see at inference.
#[derive(Debug, Clone)]
pub(crate) struct KeyMask {
    /// Left padding of each sequence of the batch: its first `pads[b]` keys are off.
    pub pads: Vec<usize>,
    /// A causal model: a query does not see the keys after its own column.
    pub causal: bool,
}

impl KeyMask {
    /// The keys `[from, to)` that query row `row` of `rows` (the last `rows` columns of a
    /// sequence of length `t`) sees in sequence `b`; empty when `from == to`.
    fn visible(&self, b: usize, row: usize, rows: usize, t: usize) -> (usize, usize) {
        let to = if self.causal { t - rows + row + 1 } else { t };
        (self.pads[b].min(to), to)
    }
}

/// Query rows per product: small enough that a causal block skips most of the future, large
/// enough for the gemm kernels' tiles.
const BLOCK: usize = 32;

/// The attention of queries `q` `(B·heads, rows, d)` over keys `k` and values `v`
/// `(B·heads, T, d)` (the queries are the last `rows` columns), under `mask`: `(B·heads, rows,
/// d)`. A query row that sees no key (a padding query of a causal model, which nothing reads)
/// gives zeros.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: &KeyMask,
    scale: f32,
) -> Result<Tensor> {
    let (bh, rows, d) = q.dims3()?;
    let (bh_k, t, d_k) = k.dims3()?;
    if (bh_k, t, d_k) != v.dims3()? || bh_k != bh || d_k != d {
        candle_core::bail!(
            "attention: keys {:?} and values {:?} for queries {:?}",
            k.dims(),
            v.dims(),
            q.dims()
        );
    }
    if heads == 0 || bh != mask.pads.len() * heads {
        candle_core::bail!(
            "attention: {bh} matrices for {} sequences of {heads} heads",
            mask.pads.len()
        );
    }
    if t == 0 || rows > t || d == 0 {
        candle_core::bail!("attention: {rows} query rows over {t} keys of width {d}");
    }
    let out = with_rows(q, "attention", |q, _| {
        with_rows(k, "attention", |k, _| {
            with_rows(v, "attention", |v, _| {
                let mut out = vec![0f32; bh * rows * d];
                let units = out
                    .par_chunks_mut(rows * d)
                    .enumerate()
                    .flat_map(|(i, matrix)| {
                        // Blocks go to the pool too: one sequence of one head still
                        // splits over the threads.
                        matrix
                            .par_chunks_mut(BLOCK * d)
                            .enumerate()
                            .map(move |(j, dst)| (i, j * BLOCK, dst))
                    });
                // One score buffer per thread, reused by its blocks.
                units.for_each_init(Vec::new, |scores, (i, r0, dst)| {
                    let r1 = r0 + dst.len() / d;
                    let one = Matrix {
                        q: &q[i * rows * d..(i + 1) * rows * d],
                        k: &k[i * t * d..(i + 1) * t * d],
                        v: &v[i * t * d..(i + 1) * t * d],
                        rows,
                        t,
                        d,
                    };
                    one.block(mask, i / heads, (r0, r1), scale, scores, dst);
                });
                Ok(out)
            })
        })
    })?;
    Tensor::from_vec(out, (bh, rows, d), q.device())
}

/// One head of one sequence: contiguous row-major queries `(rows, d)`, keys and values `(t, d)`.
struct Matrix<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    rows: usize,
    t: usize,
    d: usize,
}

impl Matrix<'_> {
    /// Query rows `r0..r1` of sequence `seq` into `dst` `(r1 - r0, d)`, which holds zeros;
    /// `scores` is scratch space.
    fn block(
        &self,
        mask: &KeyMask,
        seq: usize,
        (r0, r1): (usize, usize),
        scale: f32,
        scores: &mut Vec<f32>,
        dst: &mut [f32],
    ) {
        let (rows, t, d) = (self.rows, self.t, self.d);
        // The keys any row of the block sees: the last row's reach, from the padding's end.
        let (from, to) = mask.visible(seq, r1 - 1, rows, t);
        if from >= to {
            return;
        }
        let (m, n) = (r1 - r0, to - from);
        // Every element is written by the product below; resizing only grows the buffer.
        scores.resize(m * n, 0.0);
        let scores = &mut scores[..m * n];
        // SAFETY: `scores` holds m×n values with row stride n; the queries read are rows r0..r1
        // of `q` (row stride d), the keys rows from..to of `k` read transposed (d×n), all in bounds.
        unsafe {
            gemm(
                m,
                n,
                d,
                scores.as_mut_ptr(),
                1,
                n as isize,
                false,
                self.q[r0 * d..].as_ptr(),
                1,
                d as isize,
                self.k[from * d..].as_ptr(),
                d as isize,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        for (r, row) in (r0..r1).zip(scores.chunks_exact_mut(n)) {
            let (row_from, row_to) = mask.visible(seq, r, rows, t);
            let (lo, hi) = (row_from.max(from) - from, row_to.max(from) - from);
            if lo >= hi {
                row.fill(0.0);
                continue;
            }
            let max = row[lo..hi]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let sum = exp_in_place(&mut row[lo..hi], max);
            let inv = 1.0 / sum;
            row[lo..hi].iter_mut().for_each(|p| *p *= inv);
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
        }
        // SAFETY: `dst` holds m×d values with row stride d; the probabilities are m×n with row
        // stride n, the values rows from..to of `v` (n×d, row stride d), all in bounds.
        unsafe {
            gemm(
                m,
                d,
                n,
                dst.as_mut_ptr(),
                1,
                d as isize,
                false,
                scores.as_ptr(),
                1,
                n as isize,
                self.v[from * d..].as_ptr(),
                1,
                d as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The attention with an additive mask, in double precision: the reference.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dims: (usize, usize, usize, usize),
        heads: usize,
        mask: &KeyMask,
        scale: f64,
    ) -> Vec<f64> {
        let (bh, rows, t, d) = dims;
        let mut out = vec![0f64; bh * rows * d];
        for i in 0..bh {
            let seq = i / heads;
            for r in 0..rows {
                let column = t - rows + r;
                let seen: Vec<usize> = (0..t)
                    .filter(|&j| j >= mask.pads[seq] && (!mask.causal || j <= column))
                    .collect();
                if seen.is_empty() {
                    continue;
                }
                let score = |j: usize| -> f64 {
                    (0..d)
                        .map(|c| q[(i * rows + r) * d + c] as f64 * k[(i * t + j) * d + c] as f64)
                        .sum::<f64>()
                        * scale
                };
                let scores: Vec<f64> = seen.iter().map(|&j| score(j)).collect();
                let max = scores.iter().copied().fold(f64::MIN, f64::max);
                let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for (&j, s) in seen.iter().zip(&scores) {
                    let p = (s - max).exp() / sum;
                    for c in 0..d {
                        out[(i * rows + r) * d + c] += p * v[(i * t + j) * d + c] as f64;
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) / 40.0)
            .collect()
    }

    fn check(b: usize, heads: usize, rows: usize, t: usize, d: usize, mask: KeyMask) {
        let bh = b * heads;
        let (q, k, v) = (
            values(bh * rows * d, 1),
            values(bh * t * d, 2),
            values(bh * t * d, 3),
        );
        let tensor =
            |x: &Vec<f32>, r: usize| Tensor::from_vec(x.clone(), (bh, r, d), &Device::Cpu).unwrap();
        let scale = 1.0 / (d as f32).sqrt();
        let got: Vec<f32> = attend(
            &tensor(&q, rows),
            &tensor(&k, t),
            &tensor(&v, t),
            heads,
            &mask,
            scale,
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
        let want = reference(&q, &k, &v, (bh, rows, t, d), heads, &mask, scale as f64);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (*g as f64 - w).abs() < 1e-5,
                "element {i} of {b}x{heads}x{rows}x{t}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn causal_rows_see_their_past_after_the_padding() {
        // Every query row and the last only; blocks cut mid-sequence (70 = 32 + 32 + 6 rows).
        check(
            3,
            2,
            5,
            5,
            4,
            KeyMask {
                pads: vec![0, 2, 4],
                causal: true,
            },
        );
        check(
            3,
            2,
            1,
            5,
            4,
            KeyMask {
                pads: vec![0, 2, 4],
                causal: true,
            },
        );
        check(
            4,
            1,
            70,
            70,
            8,
            KeyMask {
                pads: vec![0, 10, 69, 40],
                causal: true,
            },
        );
    }

    #[test]
    fn bidirectional_rows_see_every_key_but_the_padding() {
        check(
            2,
            2,
            7,
            7,
            4,
            KeyMask {
                pads: vec![0, 3],
                causal: false,
            },
        );
        check(
            2,
            2,
            1,
            7,
            4,
            KeyMask {
                pads: vec![6, 3],
                causal: false,
            },
        );
        check(
            4,
            2,
            70,
            70,
            8,
            KeyMask {
                pads: vec![0, 10, 69, 40],
                causal: false,
            },
        );
    }

    #[test]
    fn a_row_that_sees_nothing_is_zero_and_bad_shapes_are_errors() {
        let ones =
            |r: usize| Tensor::ones((1, r, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mask = KeyMask {
            pads: vec![2],
            causal: true,
        };
        let out: Vec<Vec<f32>> = attend(&ones(3), &ones(3), &ones(3), 1, &mask, 1.0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(out, vec![vec![0.0, 0.0], vec![0.0, 0.0], vec![1.0, 1.0]]);
        let two = KeyMask {
            pads: vec![0, 0],
            causal: true,
        };
        assert!(attend(&ones(3), &ones(3), &ones(3), 1, &two, 1.0).is_err());
        assert!(attend(&ones(4), &ones(3), &ones(3), 1, &mask, 1.0).is_err());
    }
}

//! Attention in training as one op with a backward pass:
//! `dropout(softmax(scale · q kᵀ, masked)) v`.
//!
//! Composed from tensor ops, training attention computes every score of the `(T, T)` square,
//! masked or not, and writes the square six times forward (scores, the mask added, the softmax,
//! the dropout mask, the dropped probabilities) and as often backward, where candle also
//! computes a gradient for the constant masks. Here each sequence's query rows go in blocks of
//! [`BLOCK`], and a block computes only the keys its rows can see: after the left padding and,
//! for a causal model, up to the block's last row. Padding query rows are skipped (their
//! output is zero: nothing reads it). The probabilities and the dropped probabilities of those
//! blocks are kept for the backward pass, which walks the same blocks.
//!
//! Dropout draws its bits from a ChaCha stream per matrix, so a run repeats with its seed
//! whatever the number of threads.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use gemm::{Parallelism, gemm};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::attention::KeyMask;
use super::fused::with_rows;
use super::gelu_kernel::{exp_in_place, row_max};

/// Query rows per block: small enough that a causal block skips most of the future, large
/// enough for the gemm kernels' tiles.
const BLOCK: usize = 32;

/// Dropout of the attention probabilities: each is kept with probability `1 - p` and scaled by
/// `1 / (1 - p)`; the bits come from ChaCha streams of `seed`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionDropout {
    pub p: f32,
    pub seed: u64,
}

/// A block of one matrix: query rows `rows.0..rows.1` over keys `keys.0..keys.1`.
#[derive(Debug, Clone, Copy)]
struct Block {
    rows: (usize, usize),
    keys: (usize, usize),
}

impl Block {
    fn size(&self) -> usize {
        (self.rows.1 - self.rows.0) * (self.keys.1 - self.keys.0)
    }
}

/// The blocks of a sequence of length `t` with `pad` leading padding positions: the query rows
/// after the padding, [`BLOCK`] at a time, each over the keys its last row sees.
fn blocks(pad: usize, t: usize, causal: bool) -> impl Iterator<Item = Block> {
    (pad..t).step_by(BLOCK).map(move |r0| {
        let r1 = (r0 + BLOCK).min(t);
        Block {
            rows: (r0, r1),
            keys: (pad, if causal { r1 } else { t }),
        }
    })
}

/// The keys `[from, to)` that query row `row` sees, as offsets into its block's keys.
fn visible(block: &Block, row: usize, causal: bool) -> usize {
    let to = if causal { row + 1 } else { block.keys.1 };
    to - block.keys.0
}

/// What the forward pass keeps for the backward pass: per matrix, its blocks' probabilities
/// (row-major, one block after another) and the same after dropout (absent without dropout).
struct Saved {
    offsets: Vec<usize>,
    probs: Vec<f32>,
    dropped: Option<Vec<f32>>,
}

/// The op: queries, keys and values `(B·heads, T, d)` to `(B·heads, T, d)`.
struct TrainAttention {
    heads: usize,
    mask: KeyMask,
    scale: f32,
    dropout: Option<AttentionDropout>,
    saved: Mutex<Option<Saved>>,
}

/// `c += scale · op(a) · op(b)` (or `c = …` without `accumulate`) for row-major matrices given
/// by pointer and row stride, `a` read transposed when `a_t`, `b` when `b_t`.
///
/// # Safety
/// `c` must hold `m` rows of `n` at stride `c_rs`; `a` the `m×k` (or `k×m` when transposed)
/// and `b` the `k×n` (or `n×k`) values at their strides; `c` must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    (m, n, k): (usize, usize, usize),
    c: (*mut f32, usize),
    a: (*const f32, usize, bool),
    b: (*const f32, usize, bool),
    scale: f32,
    accumulate: bool,
) {
    let strides = |rs: usize, transposed: bool| {
        if transposed {
            (rs as isize, 1)
        } else {
            (1, rs as isize)
        }
    };
    let (a_cs, a_rs) = strides(a.1, a.2);
    let (b_cs, b_rs) = strides(b.1, b.2);
    // SAFETY: the caller's contract above.
    unsafe {
        gemm(
            m,
            n,
            k,
            c.0,
            1,
            c.1 as isize,
            accumulate,
            a.0,
            a_cs,
            a_rs,
            b.0,
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

impl TrainAttention {
    fn causal(&self) -> bool {
        self.mask.causal
    }

    /// The sequence of matrix `i`'s blocks.
    fn blocks_of(&self, i: usize, t: usize) -> impl Iterator<Item = Block> {
        blocks(self.mask.pads[i / self.heads], t, self.causal())
    }

    /// Matrix `i`'s forward pass: `q`, `k`, `v` and `out` are its `(t, d)` rows; `probs` and
    /// `dropped` its blocks' probabilities, written here.
    #[allow(clippy::too_many_arguments)]
    fn forward_one(
        &self,
        i: usize,
        (q, k, v): (&[f32], &[f32], &[f32]),
        (t, d): (usize, usize),
        out: &mut [f32],
        probs: &mut [MaybeUninit<f32>],
        mut dropped: Option<&mut [MaybeUninit<f32>]>,
        Scratch { scores, bits }: &mut Scratch,
    ) {
        let mut rng = self.dropout.map(|drop| {
            let mut rng = ChaCha8Rng::seed_from_u64(drop.seed);
            rng.set_stream(i as u64);
            rng
        });
        let mut at = 0;
        for block in self.blocks_of(i, t) {
            let (r0, r1) = block.rows;
            let (from, to) = block.keys;
            let (m, n) = (r1 - r0, to - from);
            scores.resize(m * n, 0.0);
            let scores = &mut scores[..m * n];
            // SAFETY: `scores` holds m×n values at stride n; rows r0..r1 of q and from..to of k
            // (read transposed) are in bounds at stride d.
            unsafe {
                product(
                    (m, n, d),
                    (scores.as_mut_ptr(), n),
                    (q[r0 * d..].as_ptr(), d, false),
                    (k[from * d..].as_ptr(), d, true),
                    self.scale,
                    false,
                );
            }
            for (r, row) in (r0..r1).zip(scores.chunks_exact_mut(n)) {
                let hi = visible(&block, r, self.causal());
                let max = row_max(&row[..hi]);
                let inv = 1.0 / exp_in_place(&mut row[..hi], max);
                row[..hi].iter_mut().for_each(|x| *x *= inv);
                row[hi..].fill(0.0);
            }
            store(&mut probs[at..at + m * n], scores);
            // With dropout, the dropped probabilities replace the probabilities in `scores`.
            if let (Some(drop), Some(rng), Some(dropped)) =
                (self.dropout, rng.as_mut(), dropped.as_deref_mut())
            {
                let threshold = (f64::from(drop.p) * f64::from(u32::MAX)) as u32;
                let keep = 1.0 / (1.0 - drop.p);
                for (r, row) in (r0..r1).zip(scores.chunks_exact_mut(n)) {
                    let hi = visible(&block, r, self.causal());
                    bits.resize(hi, 0);
                    rng.fill(&mut bits[..]);
                    for (x, &bit) in row[..hi].iter_mut().zip(bits.iter()) {
                        *x = if bit >= threshold { *x * keep } else { 0.0 };
                    }
                }
                store(&mut dropped[at..at + m * n], scores);
            }
            // SAFETY: `out` rows r0..r1 at stride d; the m×n probabilities at stride n; rows
            // from..to of v at stride d.
            unsafe {
                product(
                    (m, d, n),
                    (out[r0 * d..].as_mut_ptr(), d),
                    (scores.as_ptr(), n, false),
                    (v[from * d..].as_ptr(), d, false),
                    1.0,
                    false,
                );
            }
            at += m * n;
        }
    }

    /// Matrix `i`'s backward pass: the gradients of its queries, keys and values from the
    /// gradient of its output `g`, all `(t, d)` rows; `scratch` is scratch space.
    #[allow(clippy::too_many_arguments)]
    fn backward_one(
        &self,
        i: usize,
        (q, k, v, g): (&[f32], &[f32], &[f32], &[f32]),
        (t, d): (usize, usize),
        (probs, dropped): (&[f32], &[f32]),
        (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
        scratch: &mut Vec<f32>,
    ) {
        let mut at = 0;
        for block in self.blocks_of(i, t) {
            let (r0, r1) = block.rows;
            let (from, to) = block.keys;
            let (m, n) = (r1 - r0, to - from);
            let p = &probs[at..at + m * n];
            let pd = &dropped[at..at + m * n];
            scratch.resize(m * n, 0.0);
            let ds = &mut scratch[..m * n];
            // SAFETY (all four products): row ranges r0..r1 and from..to are inside the (t, d)
            // matrices at stride d, the block matrices hold m×n at stride n, and the
            // destinations are distinct buffers from the operands.
            unsafe {
                // d(dropped) = g · vᵀ
                product(
                    (m, n, d),
                    (ds.as_mut_ptr(), n),
                    (g[r0 * d..].as_ptr(), d, false),
                    (v[from * d..].as_ptr(), d, true),
                    1.0,
                    false,
                );
                // dv += droppedᵀ · g
                product(
                    (n, d, m),
                    (dv[from * d..].as_mut_ptr(), d),
                    (pd.as_ptr(), n, true),
                    (g[r0 * d..].as_ptr(), d, false),
                    1.0,
                    true,
                );
            }
            // The softmax's backward pass through the dropout: with `pd = p · keep`, the score
            // gradient is `pd ⊙ dpd − p · Σ pd ⊙ dpd` per row.
            for ((row, p), pd) in ds
                .chunks_exact_mut(n)
                .zip(p.chunks_exact(n))
                .zip(pd.chunks_exact(n))
            {
                let dot: f32 = row.iter().zip(pd).map(|(a, b)| a * b).sum();
                for ((x, &p), &pd) in row.iter_mut().zip(p).zip(pd) {
                    *x = pd * *x - p * dot;
                }
            }
            unsafe {
                // dq = scale · ds · k
                product(
                    (m, d, n),
                    (dq[r0 * d..].as_mut_ptr(), d),
                    (ds.as_ptr(), n, false),
                    (k[from * d..].as_ptr(), d, false),
                    self.scale,
                    false,
                );
                // dk += scale · dsᵀ · q
                product(
                    (n, d, m),
                    (dk[from * d..].as_mut_ptr(), d),
                    (ds.as_ptr(), n, true),
                    (q[r0 * d..].as_ptr(), d, false),
                    self.scale,
                    true,
                );
            }
            at += m * n;
        }
    }

    /// The forward pass over contiguous `(bh, t, d)` queries, keys and values: the output and
    /// what the backward pass needs.
    fn run_forward(
        &self,
        (q, k, v): (&[f32], &[f32], &[f32]),
        (bh, t, d): (usize, usize, usize),
    ) -> (Vec<f32>, Saved) {
        let offsets = self.offsets(bh, t);
        let total = offsets[bh];
        let mut probs: Vec<f32> = Vec::with_capacity(total);
        let mut dropped: Option<Vec<f32>> = self.dropout.map(|_| Vec::with_capacity(total));
        // Padding rows stay zero.
        let mut out = vec![0f32; bh * t * d];
        {
            let prob_parts = split_at_offsets(&mut probs.spare_capacity_mut()[..total], &offsets);
            let dropped_parts: Vec<Option<&mut [MaybeUninit<f32>]>> = match dropped.as_mut() {
                Some(buffer) => {
                    split_at_offsets(&mut buffer.spare_capacity_mut()[..total], &offsets)
                        .into_iter()
                        .map(Some)
                        .collect()
                }
                None => (0..bh).map(|_| None).collect(),
            };
            out.par_chunks_mut(t * d)
                .zip(prob_parts)
                .zip(dropped_parts)
                .enumerate()
                .for_each_init(Scratch::default, |scratch, (i, ((out, probs), dropped))| {
                    let m = i * t * d..(i + 1) * t * d;
                    self.forward_one(
                        i,
                        (&q[m.clone()], &k[m.clone()], &v[m]),
                        (t, d),
                        out,
                        probs,
                        dropped,
                        scratch,
                    );
                });
        }
        // SAFETY: `forward_one` wrote every value of every matrix's blocks, and the blocks of
        // all matrices tile `0..total` (`offsets`).
        unsafe {
            probs.set_len(total);
            if let Some(buffer) = dropped.as_mut() {
                buffer.set_len(total);
            }
        }
        let saved = Saved {
            offsets,
            probs,
            dropped,
        };
        (out, saved)
    }

    /// The start of each matrix's blocks in the saved buffers, and their total size.
    fn offsets(&self, bh: usize, t: usize) -> Vec<usize> {
        let mut offsets = Vec::with_capacity(bh + 1);
        let mut at = 0;
        for i in 0..bh {
            offsets.push(at);
            at += self.blocks_of(i, t).map(|b| b.size()).sum::<usize>();
        }
        offsets.push(at);
        offsets
    }
}

/// A thread's scratch space in the forward pass: one block's scores, one row's dropout bits.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    bits: Vec<u32>,
}

/// Writes `values` into the uninitialised `dst` of the same length.
fn store(dst: &mut [MaybeUninit<f32>], values: &[f32]) {
    for (d, &x) in dst.iter_mut().zip(values) {
        d.write(x);
    }
}

/// Splits `buffer` into the consecutive pieces `offsets` delimits.
fn split_at_offsets<'a, T>(mut buffer: &'a mut [T], offsets: &[usize]) -> Vec<&'a mut [T]> {
    let mut pieces = Vec::with_capacity(offsets.len().saturating_sub(1));
    for pair in offsets.windows(2) {
        let (piece, rest) = buffer.split_at_mut(pair[1] - pair[0]);
        pieces.push(piece);
        buffer = rest;
    }
    pieces
}

/// The contiguous f32 values of a tensor's storage.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} expects f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} expects contiguous tensors");
    };
    Ok(&data[start..end])
}

impl CustomOp3 for TrainAttention {
    fn name(&self) -> &'static str {
        "train-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (bh, t, d) = q_layout.shape().dims3()?;
        if k_layout.shape().dims3()? != (bh, t, d) || v_layout.shape().dims3()? != (bh, t, d) {
            candle_core::bail!(
                "training attention: keys {:?} and values {:?} for queries {:?}",
                k_layout.shape(),
                v_layout.shape(),
                q_layout.shape()
            );
        }
        if self.heads == 0 || bh != self.mask.pads.len() * self.heads {
            candle_core::bail!(
                "training attention: {bh} matrices for {} sequences of {} heads",
                self.mask.pads.len(),
                self.heads
            );
        }
        if self.mask.pads.iter().any(|&p| p > t) {
            candle_core::bail!("training attention: more padding than the length {t}");
        }
        let (q, k, v) = (
            values(q, q_layout, self.name())?,
            values(k, k_layout, self.name())?,
            values(v, v_layout, self.name())?,
        );
        let (out, saved) = self.run_forward((q, k, v), (bh, t, d));
        *self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("attention state lock poisoned".into()))? =
            Some(saved);
        Ok((CpuStorage::F32(out), q_layout.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("attention state lock poisoned".into()))?
            .take();
        let (bh, t, d) = q.dims3()?;
        // A second backward pass through the same graph finds nothing kept: it recomputes
        // (the dropout bits come from the same seed).
        let saved = match saved {
            Some(saved) => saved,
            None => with_rows(q, self.name(), |q, _| {
                with_rows(k, self.name(), |k, _| {
                    with_rows(v, self.name(), |v, _| {
                        Ok(self.run_forward((q, k, v), (bh, t, d)).1)
                    })
                })
            })?,
        };
        let mut dq = vec![0f32; bh * t * d];
        let mut dk = vec![0f32; bh * t * d];
        let mut dv = vec![0f32; bh * t * d];
        with_rows(q, self.name(), |q, _| {
            with_rows(k, self.name(), |k, _| {
                with_rows(v, self.name(), |v, _| {
                    with_rows(grad, self.name(), |g, _| {
                        let dropped = saved.dropped.as_deref().unwrap_or(&saved.probs);
                        dq.par_chunks_mut(t * d)
                            .zip(dk.par_chunks_mut(t * d))
                            .zip(dv.par_chunks_mut(t * d))
                            .enumerate()
                            .for_each_init(Vec::new, |scratch, (i, ((dq, dk), dv))| {
                                let m = i * t * d..(i + 1) * t * d;
                                let s = saved.offsets[i]..saved.offsets[i + 1];
                                self.backward_one(
                                    i,
                                    (&q[m.clone()], &k[m.clone()], &v[m.clone()], &g[m]),
                                    (t, d),
                                    (&saved.probs[s.clone()], &dropped[s]),
                                    (dq, dk, dv),
                                    scratch,
                                );
                            });
                        Ok(())
                    })
                })
            })
        })?;
        let device = q.device();
        Ok((
            Some(Tensor::from_vec(dq, (bh, t, d), device)?),
            Some(Tensor::from_vec(dk, (bh, t, d), device)?),
            Some(Tensor::from_vec(dv, (bh, t, d), device)?),
        ))
    }
}

/// Training attention of queries, keys and values `(B·heads, T, d)` under `mask` (one entry
/// per sequence), with dropout of the probabilities when given: `(B·heads, T, d)`, zero at
/// padding query rows. It has a backward pass; see the module's doc.
pub(crate) fn attend_train(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: KeyMask,
    scale: f32,
    dropout: Option<AttentionDropout>,
) -> Result<Tensor> {
    let dropout = dropout.filter(|drop| drop.p > 0.0);
    if let Some(drop) = dropout
        && !(0.0..1.0).contains(&drop.p)
    {
        candle_core::bail!("attention dropout {} outside [0, 1)", drop.p);
    }
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        TrainAttention {
            heads,
            mask,
            scale,
            dropout,
            saved: Mutex::new(None),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Sizes of a test case: sequences, heads, length, head width.
    #[derive(Clone, Copy)]
    struct Dims {
        b: usize,
        heads: usize,
        t: usize,
        d: usize,
    }

    impl Dims {
        fn len(&self) -> usize {
            self.b * self.heads * self.t * self.d
        }
    }

    /// 37 rows: a full block and a partial one.
    const SMALL: Dims = Dims {
        b: 3,
        heads: 2,
        t: 37,
        d: 4,
    };

    fn numbers(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1009) as f64 - 504.0) / 300.0)
            .collect()
    }

    /// The masked attention in double precision, padding query rows zero: the reference.
    fn reference(
        q: &[f64],
        k: &[f64],
        v: &[f64],
        dims: Dims,
        mask: &KeyMask,
        scale: f64,
    ) -> Vec<f64> {
        let Dims { b, heads, t, d } = dims;
        let mut out = vec![0f64; dims.len()];
        for i in 0..b * heads {
            let pad = mask.pads[i / heads];
            for r in pad..t {
                let to = if mask.causal { r + 1 } else { t };
                let at = |m: &[f64], row: usize, c: usize| m[(i * t + row) * d + c];
                let scores: Vec<f64> = (pad..to)
                    .map(|j| (0..d).map(|c| at(q, r, c) * at(k, j, c)).sum::<f64>() * scale)
                    .collect();
                let max = scores.iter().copied().fold(f64::MIN, f64::max);
                let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for (j, s) in (pad..to).zip(&scores) {
                    let p = (s - max).exp() / sum;
                    for c in 0..d {
                        out[(i * t + r) * d + c] += p * at(v, j, c);
                    }
                }
            }
        }
        out
    }

    fn tensor(x: &[f64], dims: Dims) -> Tensor {
        let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        Tensor::from_vec(x, (dims.b * dims.heads, dims.t, dims.d), &Device::Cpu).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The op's output and the gradients of `Σ out ⊙ w` for q, k and v.
    fn run(
        inputs: [&[f64]; 3],
        w: &[f64],
        dims: Dims,
        mask: &KeyMask,
        dropout: Option<AttentionDropout>,
    ) -> (Vec<f32>, [Vec<f32>; 3]) {
        let vars = inputs.map(|x| Var::from_tensor(&tensor(x, dims)).unwrap());
        let scale = 1.0 / (dims.d as f32).sqrt();
        let out = attend_train(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            dims.heads,
            mask.clone(),
            scale,
            dropout,
        )
        .unwrap();
        let loss = (&out * tensor(w, dims)).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let grad = |i: usize| flat(grads.get(vars[i].as_tensor()).unwrap());
        (flat(&out), [grad(0), grad(1), grad(2)])
    }

    fn check_against_reference(dims: Dims, mask: KeyMask) {
        let n = dims.len();
        let (q, k, v, w) = (numbers(n, 1), numbers(n, 2), numbers(n, 3), numbers(n, 4));
        let scale = 1.0 / (dims.d as f64).sqrt();
        let (out, grads) = run([&q, &k, &v], &w, dims, &mask, None);
        let want = reference(&q, &k, &v, dims, &mask, scale);
        for (i, (g, w)) in out.iter().zip(&want).enumerate() {
            assert!((*g as f64 - w).abs() < 1e-5, "output {i}: {g} vs {w}");
        }
        // Gradients against central differences of the double-precision reference.
        let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
            let out = reference(q, k, v, dims, &mask, scale);
            out.iter().zip(&w).map(|(o, w)| o * w).sum()
        };
        let h = 1e-5;
        for (which, grad) in grads.iter().enumerate() {
            for e in 0..n {
                let mut inputs = [q.clone(), k.clone(), v.clone()];
                inputs[which][e] += h;
                let up = loss(&inputs[0], &inputs[1], &inputs[2]);
                inputs[which][e] -= 2.0 * h;
                let down = loss(&inputs[0], &inputs[1], &inputs[2]);
                let want = (up - down) / (2.0 * h);
                assert!(
                    (grad[e] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "gradient {which}[{e}]: {} vs {want}",
                    grad[e]
                );
            }
        }
    }

    #[test]
    fn causal_attention_and_its_gradients_match_the_reference() {
        // A sequence that is all padding but its last.
        check_against_reference(
            SMALL,
            KeyMask {
                pads: vec![0, 5, 36],
                causal: true,
            },
        );
    }

    #[test]
    fn bidirectional_attention_and_its_gradients_match_the_reference() {
        check_against_reference(
            SMALL,
            KeyMask {
                pads: vec![0, 5, 37],
                causal: false,
            },
        );
    }

    #[test]
    fn dropout_is_unbiased_repeats_with_its_seed_and_has_the_right_gradients() {
        let dims = Dims {
            b: 2,
            heads: 2,
            t: 9,
            d: 3,
        };
        let n = dims.len();
        let (q, k, v, w) = (numbers(n, 5), numbers(n, 6), numbers(n, 7), numbers(n, 8));
        let mask = KeyMask {
            pads: vec![0, 3],
            causal: true,
        };
        let drop = |seed| Some(AttentionDropout { p: 0.3, seed });
        let (plain, _) = run([&q, &k, &v], &w, dims, &mask, None);
        // The same seed gives the same output on one thread and on several.
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let (one, _) = single.install(|| run([&q, &k, &v], &w, dims, &mask, drop(11)));
        let (again, _) = run([&q, &k, &v], &w, dims, &mask, drop(11));
        assert_eq!(one, again);
        assert_ne!(one, plain);
        assert_ne!(run([&q, &k, &v], &w, dims, &mask, drop(12)).0, one);
        // Averaged over seeds, dropout leaves the output where it was (kept values are scaled
        // by 1 / (1 - p)).
        let seeds = 2000;
        let mut mean = vec![0f64; n];
        for seed in 0..seeds {
            let (out, _) = run([&q, &k, &v], &w, dims, &mask, drop(seed));
            mean.iter_mut()
                .zip(&out)
                .for_each(|(m, &o)| *m += o as f64 / seeds as f64);
        }
        let spread = plain.iter().map(|x| x.abs() as f64).fold(0.0, f64::max);
        for (i, (m, p)) in mean.iter().zip(&plain).enumerate() {
            assert!(
                (m - *p as f64).abs() < 0.05 * spread,
                "element {i}: mean {m} vs {p}"
            );
        }
        // With the mask fixed by the seed, the op is a smooth function of its inputs: its
        // gradients match central differences of its own output.
        let (_, grads) = run([&q, &k, &v], &w, dims, &mask, drop(11));
        let h = 1e-2;
        let loss = |inputs: &[Vec<f64>; 3]| -> f64 {
            let (out, _) = run(
                [&inputs[0], &inputs[1], &inputs[2]],
                &w,
                dims,
                &mask,
                drop(11),
            );
            out.iter().zip(&w).map(|(&o, w)| o as f64 * w).sum()
        };
        for (which, grad) in grads.iter().enumerate() {
            for e in 0..n {
                let mut inputs = [q.clone(), k.clone(), v.clone()];
                inputs[which][e] += h;
                let up = loss(&inputs);
                inputs[which][e] -= 2.0 * h;
                let want = (up - loss(&inputs)) / (2.0 * h);
                assert!(
                    (grad[e] as f64 - want).abs() < 2e-2 * (1.0 + want.abs()),
                    "gradient {which}[{e}]: {} vs {want}",
                    grad[e]
                );
            }
        }
    }

    #[test]
    fn a_second_backward_pass_recomputes_the_same_gradients() {
        let dims = Dims {
            b: 2,
            heads: 1,
            t: 40,
            d: 4,
        };
        let n = dims.len();
        let vars =
            [1, 2, 3].map(|seed| Var::from_tensor(&tensor(&numbers(n, seed), dims)).unwrap());
        let mask = KeyMask {
            pads: vec![0, 7],
            causal: true,
        };
        let drop = Some(AttentionDropout { p: 0.2, seed: 9 });
        let out = attend_train(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            1,
            mask,
            0.5,
            drop,
        )
        .unwrap();
        let loss = (&out * tensor(&numbers(n, 4), dims))
            .unwrap()
            .sum_all()
            .unwrap();
        // The first pass takes what the forward pass kept; the second recomputes it.
        let (first, second) = (loss.backward().unwrap(), loss.backward().unwrap());
        for var in &vars {
            let (a, b) = (
                flat(first.get(var).unwrap()),
                flat(second.get(var).unwrap()),
            );
            assert_eq!(a, b);
            assert!(a.iter().any(|g| g.abs() > 1e-3));
        }
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        let ones =
            |r: usize| Tensor::ones((2, r, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mask = KeyMask {
            pads: vec![0, 1],
            causal: true,
        };
        assert!(attend_train(&ones(3), &ones(3), &ones(3), 2, mask.clone(), 1.0, None).is_err());
        assert!(attend_train(&ones(3), &ones(4), &ones(3), 1, mask.clone(), 1.0, None).is_err());
        let too_much = KeyMask {
            pads: vec![0, 4],
            causal: true,
        };
        assert!(attend_train(&ones(3), &ones(3), &ones(3), 1, too_much, 1.0, None).is_err());
        let bad = Some(AttentionDropout { p: 1.0, seed: 1 });
        assert!(attend_train(&ones(3), &ones(3), &ones(3), 1, mask, 1.0, bad).is_err());
    }
}

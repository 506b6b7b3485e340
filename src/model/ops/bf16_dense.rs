//! Dense layers in bf16 at inference, on CPUs with AVX-512 BF16 (`vdpbf16ps`).
//!
//! A layer's weight `(n, k)` is rounded to bf16 once, at load, and stored in panels of 32
//! output columns where each 32-bit word holds two consecutive inputs of one column: the layout
//! `vdpbf16ps` multiplies, two products per lane, accumulated in f32. The input rows are rounded
//! to bf16 per call (round to nearest even, as the weights) and the bias is added in f32 as the
//! results are stored. Half the bytes per operand and two products per lane double the
//! arithmetic of an f32 fused multiply-add; the price is bf16's 8-bit mantissa on both inputs
//! of every product (the sums stay f32).
//!
//! A [`PackedBf16`] exists only where the CPU has the instructions (checked at run time), so
//! holding one is what lets [`PackedBf16::dense`] call them.

use candle_core::{CpuStorage, Result, Storage, Tensor};

/// Output columns of one panel: two 16-lane f32 accumulators per row.
const PANEL: usize = 32;
/// Rows of one register block: 8 rows × 2 accumulators = 16 of the 32 vector registers.
const ROWS: usize = 8;
/// Smallest product (rows × inputs × outputs) split over the rayon pool: one sequence of 200
/// through a 64 × 64 layer is split.
const SPLIT_WORK: usize = 1 << 18;

/// Whether this CPU runs the bf16 kernels (AVX-512F and AVX-512 BF16), detected at run time.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The bits of `x` rounded to bf16, round to nearest even (NaN stays NaN).
fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return (bits >> 16) | 0x40;
    }
    (bits + 0x7fff + ((bits >> 16) & 1)) >> 16
}

/// Two values rounded to bf16 in one word: `lo` in the low half, as `vdpbf16ps` pairs them.
fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | (bf16_bits(hi) << 16)
}

/// A dense layer's weight and bias, packed for the bf16 kernel.
#[derive(Debug, Clone)]
pub(crate) struct PackedBf16 {
    /// Outputs and inputs of the layer.
    outputs: usize,
    inputs: usize,
    /// Input pairs: `inputs` rounded up to even, halved.
    pairs: usize,
    /// Per panel of [`PANEL`] outputs, per input pair, one word per output (zero past `outputs`).
    weights: Vec<u32>,
    /// The bias, zero-padded to whole panels.
    bias: Vec<f32>,
}

impl PackedBf16 {
    /// Packs `weight` `(outputs, inputs)` and `bias` `(outputs)`; `None` where the CPU lacks
    /// the instructions.
    pub(crate) fn new(weight: &Tensor, bias: &Tensor) -> Result<Option<Self>> {
        if !supported() {
            return Ok(None);
        }
        let (outputs, inputs) = weight.dims2()?;
        let w = weight.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let b = bias.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        if b.len() != outputs {
            candle_core::bail!("bias of {} for {outputs} outputs", b.len());
        }
        let pairs = inputs.div_ceil(2);
        let panels = outputs.div_ceil(PANEL);
        let mut weights = vec![0u32; panels * pairs * PANEL];
        for (j, row) in w.iter().enumerate() {
            let (panel, lane) = (j / PANEL, j % PANEL);
            for p in 0..pairs {
                let hi = row.get(2 * p + 1).copied().unwrap_or(0.0);
                weights[(panel * pairs + p) * PANEL + lane] = pair(row[2 * p], hi);
            }
        }
        let mut bias = b;
        bias.resize(panels * PANEL, 0.0);
        Ok(Some(Self {
            outputs,
            inputs,
            pairs,
            weights,
            bias,
        }))
    }

    /// `xs · weightᵀ + bias` for rows `xs` `(N, inputs)`: `(N, outputs)`, no backward pass.
    pub(crate) fn dense(&self, xs: &Tensor) -> Result<Tensor> {
        let (rows, inputs) = xs.dims2()?;
        if inputs != self.inputs {
            candle_core::bail!("dense layer of {} inputs given {inputs}", self.inputs);
        }
        let xs = xs.contiguous()?;
        let out = {
            let (storage, layout) = xs.storage_and_layout();
            let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
                candle_core::bail!("bf16 dense layer expects f32 rows on the CPU");
            };
            let Some((start, end)) = layout.contiguous_offsets() else {
                candle_core::bail!("bf16 dense layer expects contiguous rows");
            };
            self.rows(&data[start..end], rows)
        };
        Tensor::from_vec(out, (rows, self.outputs), xs.device())
    }

    /// The product for `rows` rows of `data`, split over the rayon pool when large.
    fn rows(&self, data: &[f32], rows: usize) -> Vec<f32> {
        use rayon::prelude::*;
        let (k, n) = (self.inputs, self.outputs);
        if n == 0 || rows == 0 {
            return Vec::new();
        }
        // Every element is written by `block_rows` (the destination is never read), so the
        // buffer, as large as the layer's output, is not zeroed first.
        let mut out: Vec<f32> = Vec::with_capacity(rows * n);
        {
            let spare = &mut out.spare_capacity_mut()[..rows * n];
            // SAFETY: `MaybeUninit<f32>` and `f32` have the same layout; the slice is only
            // written, never read, before `set_len`.
            let dst: &mut [f32] =
                unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), spare.len()) };
            let threads = rayon::current_num_threads();
            if threads > 1 && rows * k * n >= SPLIT_WORK && rows >= threads * ROWS {
                // One even share of whole register blocks per thread.
                let share = rows.div_ceil(threads).div_ceil(ROWS) * ROWS;
                dst.par_chunks_mut(share * n)
                    .zip(data.par_chunks(share * k))
                    .for_each(|(out, data)| self.block_rows(data, out));
            } else if threads > 1 && rows * k * n >= SPLIT_WORK {
                // Too few rows to share out (one history against every movie): each thread
                // takes a run of output panels of every row instead.
                self.block_panels(data, rows, dst, threads);
            } else {
                self.block_rows(data, dst);
            }
        }
        // SAFETY: `block_rows` wrote every row and column above.
        unsafe { out.set_len(rows * n) };
        out
    }

    /// The product for `rows` rows of `data` into `out`, its output panels split into
    /// `threads` runs over the rayon pool; writes every element.
    fn block_panels(&self, data: &[f32], rows: usize, out: &mut [f32], threads: usize) {
        use rayon::prelude::*;
        let packed = pack_rows(data, rows, self.inputs, self.pairs);
        let panels = self.outputs.div_ceil(PANEL);
        let per_thread = panels.div_ceil(threads);
        let out = SharedOut(out.as_mut_ptr());
        (0..panels.div_ceil(per_thread))
            .into_par_iter()
            .for_each(|run| {
                let first = run * per_thread;
                let panels = first..(first + per_thread).min(panels);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as in `block_rows`; `out` holds `rows × outputs` values, and the runs
                // of panels are disjoint, so no two tasks write the same column.
                unsafe {
                    kernel::product_panels(self, &packed, rows, out.get(), panels);
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (&packed, &out, panels);
            });
        // Unreachable (no `PackedBf16` is built off x86-64); it still writes every element.
        #[cfg(not(target_arch = "x86_64"))]
        {
            // SAFETY: `out` holds `rows × outputs` values and no task runs any more.
            unsafe { std::slice::from_raw_parts_mut(out.get(), rows * self.outputs) }.fill(0.0);
        }
    }

    /// The product for the rows of `data` into `out` on this thread; writes every element.
    fn block_rows(&self, data: &[f32], out: &mut [f32]) {
        let rows = out.len() / self.outputs;
        let packed = pack_rows(data, rows, self.inputs, self.pairs);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `PackedBf16` is only built where `supported()` holds; `packed` holds
        // `rows × pairs` words and `out` `rows × outputs` values, as `kernel::product` reads
        // and writes.
        unsafe {
            kernel::product(self, &packed, rows, out);
        }
        // Unreachable (no `PackedBf16` is built off x86-64); it still writes every element.
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = packed;
            out.fill(0.0);
        }
    }
}

/// The output buffer shared by the tasks of [`PackedBf16::block_panels`], each of which writes
/// its own columns.
struct SharedOut(*mut f32);

// SAFETY: the tasks that share it write disjoint elements, and the buffer outlives them.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Rows `(rows, inputs)` rounded to bf16 pairs, `pairs` words a row (odd inputs end in a zero).
fn pack_rows(data: &[f32], rows: usize, inputs: usize, pairs: usize) -> Vec<u32> {
    #[cfg(target_arch = "x86_64")]
    if inputs.is_multiple_of(2) {
        // SAFETY: reached only from a `PackedBf16` (the CPU has the instructions).
        return unsafe { kernel::pack_even_rows(&data[..rows * inputs]) };
    }
    let mut out = Vec::with_capacity(rows * pairs);
    for row in data.chunks_exact(inputs).take(rows) {
        for p in 0..pairs {
            let hi = row.get(2 * p + 1).copied().unwrap_or(0.0);
            out.push(pair(row[2 * p], hi));
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{PANEL, PackedBf16, ROWS, bf16_bits};

    /// Rounds an even-length run of values to bf16 pairs, 32 values per instruction.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512 BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn pack_even_rows(data: &[f32]) -> Vec<u32> {
        let words = data.len() / 2;
        let mut out: Vec<u32> = Vec::with_capacity(words);
        let (src, dst) = (data.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        // SAFETY: every read is below `data.len()` and every write below `words`, the capacity.
        unsafe {
            while i + 32 <= data.len() {
                let lo = _mm512_loadu_ps(src.add(i));
                let hi = _mm512_loadu_ps(src.add(i + 16));
                // The second operand gives the low 16 results: the values stay in order.
                let both = _mm512_cvtne2ps_pbh(hi, lo);
                _mm512_storeu_si512(
                    dst.add(i / 2).cast(),
                    std::mem::transmute::<__m512bh, __m512i>(both),
                );
                i += 32;
            }
            while i + 2 <= data.len() {
                *dst.add(i / 2) = bf16_bits(data[i]) | (bf16_bits(data[i + 1]) << 16);
                i += 2;
            }
            out.set_len(words);
        }
        out
    }

    /// `out = rows · weightᵀ + bias` for `rows` packed input rows.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512 BF16; `rows` holds `n_rows × w.pairs` words and
    /// `out` `n_rows × w.outputs` values.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn product(w: &PackedBf16, rows: &[u32], n_rows: usize, out: &mut [f32]) {
        debug_assert!(out.len() >= n_rows * w.outputs);
        let panels = 0..w.outputs.div_ceil(PANEL);
        // SAFETY: the caller's bounds.
        unsafe { product_panels(w, rows, n_rows, out.as_mut_ptr(), panels) }
    }

    /// [`product`] for the output columns of `panels` only.
    ///
    /// # Safety
    /// As [`product`], with `out` valid for `n_rows × w.outputs` values, of which this call
    /// writes only the columns of `panels`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn product_panels(
        w: &PackedBf16,
        rows: &[u32],
        n_rows: usize,
        out: *mut f32,
        panels: std::ops::Range<usize>,
    ) {
        let (pairs, n) = (w.pairs, w.outputs);
        debug_assert!(rows.len() >= n_rows * pairs && panels.end <= n.div_ceil(PANEL));
        let mut r = 0;
        while r < n_rows {
            let take = (n_rows - r).min(ROWS);
            for panel in panels.clone() {
                let first = panel * PANEL;
                let cols = (n - first).min(PANEL);
                // SAFETY: the offsets stay inside `rows` (rows r..r+take), the panel's
                // `pairs × PANEL` weights, the padded bias and `out` (columns first..first+cols).
                unsafe {
                    let a = rows.as_ptr().add(r * pairs);
                    let b = w.weights.as_ptr().add(panel * pairs * PANEL);
                    let bias = w.bias.as_ptr().add(first);
                    let o = out.add(r * n + first);
                    if take == ROWS {
                        block::<ROWS>(a, pairs, b, bias, o, n, cols);
                    } else {
                        for i in 0..take {
                            block::<1>(a.add(i * pairs), pairs, b, bias, o.add(i * n), n, cols);
                        }
                    }
                }
            }
            r += take;
        }
    }

    /// `R` rows × one panel: `R × 2` accumulators, one `vdpbf16ps` per accumulator and input
    /// pair; the bias is added and the first `cols` columns stored.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn block<const R: usize>(
        a: *const u32,
        pairs: usize,
        b: *const u32,
        bias: *const f32,
        out: *mut f32,
        row_stride: usize,
        cols: usize,
    ) {
        // SAFETY: the caller's bounds (see `product`).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            for p in 0..pairs {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * PANEL).cast()));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(b.add(p * PANEL + 16).cast()));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(i * pairs + p) as i32));
                    acc[0] = _mm512_dpbf16_ps(acc[0], x, b0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], x, b1);
                }
            }
            let mask = |from: usize| -> __mmask16 {
                match cols.saturating_sub(from) {
                    0 => 0,
                    c if c >= 16 => 0xffff,
                    c => ((1u32 << c) - 1) as __mmask16,
                }
            };
            let (m0, m1) = (mask(0), mask(16));
            let (bias0, bias1) = (_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16)));
            for (i, acc) in acc.iter().enumerate() {
                let row = out.add(i * row_stride);
                _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(acc[0], bias0));
                _mm512_mask_storeu_ps(row.add(16), m1, _mm512_add_ps(acc[1], bias1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `half`'s rounding, an implementation independent of [`bf16_bits`].
    fn rounded(x: f32) -> f64 {
        f64::from(half::bf16::from_f32(x).to_f32())
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 - 1001.0) / 317.0)
            .collect()
    }

    #[test]
    fn rounding_matches_half_to_nearest_even() {
        for x in values(4000, 3).into_iter().chain([
            0.0,
            -0.0,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            f32::MAX,
            -1e-40,
        ]) {
            let ours = f32::from_bits(bf16_bits(x) << 16);
            assert_eq!(
                ours.to_bits(),
                half::bf16::from_f32(x).to_f32().to_bits(),
                "{x}"
            );
        }
        assert!(f32::from_bits(bf16_bits(f32::NAN) << 16).is_nan());
    }

    /// The kernel against a double-precision product of the same bf16-rounded operands, over
    /// shapes that cover whole and partial register blocks, panels and odd input counts, split
    /// over a pool and not.
    #[test]
    fn dense_matches_a_double_precision_product_of_the_rounded_operands() -> Result<()> {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return Ok(());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        for (rows, k, n) in [
            (1, 64, 64),
            (9, 64, 256),
            (17, 5, 33),
            (8, 256, 64),
            (300, 64, 256),
            (130, 256, 17),
            // Too few rows to share out: split by output panels (a part panel at the end).
            (1, 64, 4100),
            (3, 64, 2000),
            (5, 63, 1001),
        ] {
            let (x, w, b) = (values(rows * k, 1), values(n * k, 2), values(n, 3));
            let packed = PackedBf16::new(
                &Tensor::from_vec(w.clone(), (n, k), &Device::Cpu)?,
                &Tensor::from_vec(b.clone(), n, &Device::Cpu)?,
            )?
            .expect("supported");
            let xs = Tensor::from_vec(x.clone(), (rows, k), &Device::Cpu)?;
            for split in [false, true] {
                let got = if split {
                    pool.install(|| packed.dense(&xs))?
                } else {
                    packed.dense(&xs)?
                };
                assert_eq!(got.dims(), &[rows, n]);
                let got = got.flatten_all()?.to_vec1::<f32>()?;
                for r in 0..rows {
                    for j in 0..n {
                        let (mut want, mut size) = (f64::from(b[j]), f64::from(b[j].abs()));
                        for i in 0..k {
                            let p = rounded(x[r * k + i]) * rounded(w[j * k + i]);
                            want += p;
                            size += p.abs();
                        }
                        let diff = (f64::from(got[r * n + j]) - want).abs();
                        assert!(
                            diff <= 1e-6 * size + 1e-6,
                            "{rows}x{k}x{n} ({r},{j}): {} vs {want}",
                            got[r * n + j]
                        );
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_mismatched_input_is_an_error() -> Result<()> {
        let Some(packed) = PackedBf16::new(
            &Tensor::zeros((4, 6), candle_core::DType::F32, &Device::Cpu)?,
            &Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu)?,
        )?
        else {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return Ok(());
        };
        let xs = Tensor::zeros((3, 5), candle_core::DType::F32, &Device::Cpu)?;
        assert!(packed.dense(&xs).is_err());
        Ok(())
    }
}

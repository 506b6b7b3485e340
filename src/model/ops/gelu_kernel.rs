//! The elementwise loops of exact (erf-based) GELU and its derivative, and of the softmax's
//! exponentials, row maximum and sum, branch-free so that they vectorize, with a runtime switch
//! to an AVX-512 or AVX2 build of the same loops on CPUs that have them (the x86-64 baseline is
//! SSE2). Training's loops use no fused multiply-add, so every build gives the same bits;
//! inference's GELU ([`gelu_forward_inference`]) uses it where the CPU has it, for a third fewer
//! instructions, and differs from training's only in rounding.
//!
//! `Φ(x) = erfc(-x/√2) / 2` comes from the Numerical Recipes `erfcc` rational approximation
//! (fractional error below 1.2e-7) and a Cephes-style `exp`. libm's `erff`, which candle's
//! `gelu_erf` uses, takes a branch per element and calls `expf` twice in its tail: once a model
//! sharpens and more pre-activations leave `|x| < 1.77`, that scalar path held a third of a
//! training step.

/// Below this exponent `exp` returns 0: `e^-80` is about 1.8e-35, still a normal `f32`, so no
/// subnormal is ever produced (they are slow on x86).
const EXP_FLOOR: f32 = -80.0;

/// `e^y`, branch-free (a select, not a jump): `y = k ln 2 + r` with `k` rounded to nearest by
/// the 1.5·2²³ trick, `e^r` by the Cephes `expf` polynomial, and `2^k` built in the exponent
/// bits. Within 2 ulp of `f32::exp` for `y` in `[-80, 88)`; 0 below -80.
#[inline(always)]
fn exp(y: f32) -> f32 {
    exp_with::<false>(y)
}

/// `a · b + c`: one fused multiply-add with `FMA` (a CPU with FMA and a build for it), else a
/// multiply and an add, whose bits are the same on every build.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// [`exp`], with its multiply-adds fused when `FMA`.
#[inline(always)]
fn exp_with<const FMA: bool>(y: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2^23
    let y = y.clamp(EXP_FLOOR, 88.0);
    let shifted = madd::<FMA>(y, std::f32::consts::LOG2_E, SHIFT);
    let k = shifted - SHIFT;
    let r = madd::<FMA>(-k, -2.121_944_4e-4, madd::<FMA>(-k, 0.693_359_4, y));
    let mut p = 1.987_569_1e-4_f32;
    p = madd::<FMA>(p, r, 1.398_199_9e-3);
    p = madd::<FMA>(p, r, 8.333_452e-3);
    p = madd::<FMA>(p, r, 4.166_579_6e-2);
    p = madd::<FMA>(p, r, 1.666_666_5e-1);
    p = madd::<FMA>(p, r, 0.5);
    let e_r = madd::<FMA>(p * r, r, r) + 1.0;
    // The low mantissa bits of `shifted` hold k (two's complement around 0x4B40_0000).
    let k_bits = shifted.to_bits().wrapping_sub(SHIFT.to_bits());
    let two_k = f32::from_bits(k_bits.wrapping_add(127) << 23);
    if y > EXP_FLOOR { e_r * two_k } else { 0.0 }
}

/// `Φ(x)`, the standard normal distribution function, within 3e-7 absolutely (and 2e-5
/// relatively where it is above 1e-30).
#[inline(always)]
fn normal_cdf(x: f32) -> f32 {
    normal_cdf_with::<false>(x)
}

/// [`normal_cdf`], with its multiply-adds fused when `FMA`.
#[inline(always)]
fn normal_cdf_with<const FMA: bool>(x: f32) -> f32 {
    // erfc(z) at z = |x|/√2 is `t e^(-z² + P(t))` with t = 1/(1 + z/2); Φ(x) = erfc(-x/√2)/2.
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / madd::<FMA>(0.5, z, 1.0);
    let mut p = 0.170_872_77_f32;
    p = madd::<FMA>(p, t, -0.822_152_23);
    p = madd::<FMA>(p, t, 1.488_515_9);
    p = madd::<FMA>(p, t, -1.135_204);
    p = madd::<FMA>(p, t, 0.278_868_07);
    p = madd::<FMA>(p, t, -0.186_288_06);
    p = madd::<FMA>(p, t, 0.096_784_18);
    p = madd::<FMA>(p, t, 0.374_091_96);
    p = madd::<FMA>(p, t, 1.000_023_7);
    p = madd::<FMA>(p, t, -1.265_512_2);
    let half_erfc = 0.5 * t * exp_with::<FMA>(madd::<FMA>(-z, z, p));
    if x >= 0.0 { 1.0 - half_erfc } else { half_erfc }
}

/// `φ(x) = e^(-x²/2) / √(2π)`, the standard normal density.
#[inline(always)]
fn normal_density(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    exp(-0.5 * x * x) * INV_SQRT_2PI
}

/// `x Φ(x)` for every element of `x`, into `dst`.
#[inline(always)]
fn forward_loop(x: &[f32], dst: &mut [f32]) {
    forward_loop_with::<false>(x, dst)
}

/// [`forward_loop`], with its multiply-adds fused when `FMA`.
#[inline(always)]
fn forward_loop_with<const FMA: bool>(x: &[f32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(x) {
        *d = x * normal_cdf_with::<FMA>(x);
    }
}

/// `g (Φ(x) + x φ(x))` for every element, into `dst`.
#[inline(always)]
fn backward_loop(x: &[f32], g: &[f32], dst: &mut [f32]) {
    for ((d, &x), &g) in dst.iter_mut().zip(x).zip(g) {
        *d = g * (normal_cdf(x) + x * normal_density(x));
    }
}

/// `x ← e^(x - shift)` for every element of `x`.
#[inline(always)]
fn exp_shifted_loop(x: &mut [f32], shift: f32) {
    for x in x.iter_mut() {
        *x = exp(*x - shift);
    }
}

/// The sum of `xs` in eight interleaved partial sums, an order the compiler can vectorize.
#[inline(always)]
fn sum_loop(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// The largest of `xs` in eight lanes (NaN is passed over), so that it vectorizes.
#[inline(always)]
fn max_loop(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// The sum of `xs`, in eight lanes.
pub(crate) fn sum(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU was just found to support AVX2.
        return unsafe { avx2::sum(xs) };
    }
    sum_loop(xs)
}

/// The largest of `xs` (NaN is passed over; `-inf` for none).
pub(crate) fn row_max(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU was just found to support AVX2.
        return unsafe { avx2::max(xs) };
    }
    max_loop(xs)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2")]
    pub(super) fn sum(xs: &[f32]) -> f32 {
        super::sum_loop(xs)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn max(xs: &[f32]) -> f32 {
        super::max_loop(xs)
    }

    /// [`super::exp_shifted_loop`] then [`super::sum_loop`], compiled for AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) fn exp_sum(x: &mut [f32], shift: f32) -> f32 {
        super::exp_shifted_loop(x, shift);
        super::sum_loop(x)
    }

    /// [`super::forward_loop`] compiled for AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) fn forward_loop(x: &[f32], dst: &mut [f32]) {
        super::forward_loop(x, dst)
    }

    /// [`super::forward_loop_with`] with fused multiply-adds, compiled for AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_loop_fma(x: &[f32], dst: &mut [f32]) {
        super::forward_loop_with::<true>(x, dst)
    }

    /// [`super::backward_loop`] compiled for AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) fn backward_loop(x: &[f32], g: &[f32], dst: &mut [f32]) {
        super::backward_loop(x, g, dst)
    }
}

/// The elementwise loops again, compiled for AVX-512 (16 lanes): GELU and the exponential are
/// most of their time in arithmetic, which the wider vectors halve.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    /// [`super::exp_shifted_loop`] then [`super::sum_loop`], compiled for AVX-512.
    #[target_feature(enable = "avx512f")]
    pub(super) fn exp_sum(x: &mut [f32], shift: f32) -> f32 {
        super::exp_shifted_loop(x, shift);
        super::sum_loop(x)
    }

    /// [`super::forward_loop`] compiled for AVX-512.
    #[target_feature(enable = "avx512f")]
    pub(super) fn forward_loop(x: &[f32], dst: &mut [f32]) {
        super::forward_loop(x, dst)
    }

    /// [`super::forward_loop_with`] with fused multiply-adds, compiled for AVX-512 (which has
    /// them).
    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn forward_loop_fma(x: &[f32], dst: &mut [f32]) {
        super::forward_loop_with::<true>(x, dst)
    }

    /// [`super::backward_loop`] compiled for AVX-512.
    #[target_feature(enable = "avx512f")]
    pub(super) fn backward_loop(x: &[f32], g: &[f32], dst: &mut [f32]) {
        super::backward_loop(x, g, dst)
    }
}

/// Whether this CPU runs the AVX-512 build of the elementwise loops.
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Whether this CPU runs the AVX2 build of the loops (detected once, then cached by std).
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// Replaces every element of `x` by `e^(x - shift)` and returns their sum. With `shift` the
/// row's maximum this is a softmax's numerator and denominator.
pub(crate) fn exp_in_place(x: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU was just found to support AVX-512F.
        return unsafe { avx512::exp_sum(x, shift) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU was just found to support AVX2.
        return unsafe { avx2::exp_sum(x, shift) };
    }
    exp_shifted_loop(x, shift);
    sum_loop(x)
}

/// GELU, `x Φ(x)`, of every element of `x`, written into `dst` (of the same length).
pub(crate) fn gelu_forward(x: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU was just found to support AVX-512F.
        unsafe { avx512::forward_loop(x, dst) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU was just found to support AVX2.
        unsafe { avx2::forward_loop(x, dst) };
        return;
    }
    forward_loop(x, dst)
}

/// [`gelu_forward`] for inference, with fused multiply-adds where the CPU has them: the same
/// function as training's up to rounding (a few units in the last place), in a third fewer
/// instructions. A third of the work of one SASRec batch at length 50 was GELU.
pub(crate) fn gelu_forward_inference(x: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() && has_fma() {
        // SAFETY: the CPU was just found to support AVX-512F and FMA.
        unsafe { avx512::forward_loop_fma(x, dst) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && has_fma() {
        // SAFETY: the CPU was just found to support AVX2 and FMA.
        unsafe { avx2::forward_loop_fma(x, dst) };
        return;
    }
    gelu_forward(x, dst)
}

/// Whether this CPU has fused multiply-add (detected once, then cached by std).
#[cfg(target_arch = "x86_64")]
fn has_fma() -> bool {
    std::arch::is_x86_feature_detected!("fma")
}

/// The gradient of GELU, `g (Φ(x) + x φ(x))`, for inputs `x` and output gradients `g`, written
/// into `dst` (all three of the same length).
pub(crate) fn gelu_backward(x: &[f32], g: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU was just found to support AVX-512F.
        unsafe { avx512::backward_loop(x, g, dst) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU was just found to support AVX2.
        unsafe { avx2::backward_loop(x, g, dst) };
        return;
    }
    backward_loop(x, g, dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs from -20 to 20 in steps of 1/64, values around zero, and, on both sides, the
    /// inputs at which libm's `erff` (taking `x/√2`) changes branch.
    fn inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (-1280..=1280).map(|i| i as f32 / 64.0).collect();
        xs.extend([1e-8, -1e-8, 0.0, -0.0]);
        for edge in [0.84375f32, 1.25, 2.857_143, 6.0, 9.0] {
            let x = edge * std::f32::consts::SQRT_2;
            xs.extend([x, -x]);
        }
        xs
    }

    /// Φ from libm's double-precision erfc, the reference.
    fn reference_cdf(x: f32) -> f64 {
        0.5 * libm::erfc(-(x as f64) / std::f64::consts::SQRT_2)
    }

    #[test]
    fn exp_is_within_two_ulp_of_std_and_zero_below_the_floor() {
        for i in -8000..8800 {
            let y = i as f32 / 100.0 + 0.003;
            let (ours, theirs) = (exp(y), y.exp());
            assert!(
                (ours - theirs).abs() <= 2.0 * theirs * f32::EPSILON,
                "e^{y}: {ours} vs {theirs}"
            );
        }
        assert_eq!(exp(-80.5), 0.0);
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn normal_cdf_is_within_3e7_of_libm_erfc() {
        for x in inputs() {
            let (ours, reference) = (normal_cdf(x) as f64, reference_cdf(x));
            assert!(
                (ours - reference).abs() < 3e-7,
                "Φ({x}) = {ours} vs {reference}"
            );
            if reference > 1e-30 {
                let relative = (ours - reference).abs() / reference;
                assert!(
                    relative < 2e-5,
                    "Φ({x}) = {ours} vs {reference}: relative {relative}"
                );
            }
        }
        assert_eq!(normal_cdf(-20.0), 0.0);
        assert_eq!(normal_cdf(20.0), 1.0);
    }

    /// The dispatched loops (AVX2 where the CPU has it) give the plain loops' bits, and agree
    /// with the double-precision formula, on inputs longer than a vector and with a tail.
    #[test]
    fn dispatched_loops_agree_with_the_formula() {
        let x = inputs();
        let g: Vec<f32> = (0..x.len()).map(|i| (i % 7) as f32 / 3.0 - 1.0).collect();
        let (mut fwd, mut bwd) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        gelu_forward(&x, &mut fwd);
        gelu_backward(&x, &g, &mut bwd);
        let (mut plain_fwd, mut plain_bwd) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        forward_loop(&x, &mut plain_fwd);
        backward_loop(&x, &g, &mut plain_bwd);
        for i in 0..x.len() {
            let (xi, gi) = (x[i] as f64, g[i] as f64);
            let cdf = reference_cdf(x[i]);
            let density = (-0.5 * xi * xi).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let (want_fwd, want_bwd) = (xi * cdf, gi * (cdf + xi * density));
            let tolerance = |want: f64| 1e-6 * want.abs().max(1.0);
            assert!(
                (fwd[i] as f64 - want_fwd).abs() < tolerance(want_fwd),
                "gelu({xi})"
            );
            assert!(
                (bwd[i] as f64 - want_bwd).abs() < tolerance(want_bwd),
                "gelu'({xi})"
            );
        }
        assert_eq!(fwd, plain_fwd);
        assert_eq!(bwd, plain_bwd);
        // The softmax's exponentials and their sum, dispatched and plain, bit for bit.
        let (mut dispatched, mut plain) = (x.clone(), x.clone());
        let sum = exp_in_place(&mut dispatched, 3.0);
        exp_shifted_loop(&mut plain, 3.0);
        assert_eq!(dispatched, plain);
        assert_eq!(sum, sum_loop(&plain));
    }

    /// Inference's GELU (fused multiply-adds where the CPU has them) against the
    /// double-precision formula, and within a few units in the last place of training's.
    #[test]
    fn inference_gelu_agrees_with_the_formula_and_training() {
        let x = inputs();
        let (mut fast, mut exact) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        gelu_forward_inference(&x, &mut fast);
        gelu_forward(&x, &mut exact);
        for i in 0..x.len() {
            let xi = f64::from(x[i]);
            let want = xi * reference_cdf(x[i]);
            let (f, e) = (f64::from(fast[i]), f64::from(exact[i]));
            assert!(
                (f - want).abs() < 1e-6 * want.abs().max(1.0),
                "gelu({xi}): {f} vs {want}"
            );
            assert!(
                (f - e).abs() <= 1e-6 * e.abs().max(1e-3),
                "gelu({xi}): {f} vs training's {e}"
            );
        }
        // The fused build on its own, so that a CPU without AVX-512 still checks the loop.
        let mut fused = vec![0f32; x.len()];
        forward_loop_with::<true>(&x, &mut fused);
        for (f, e) in fused.iter().zip(&exact) {
            assert!((f - e).abs() <= 1e-6 * e.abs().max(1e-3), "{f} vs {e}");
        }
    }

    /// The lane-wise max and sum against a plain fold and a double-precision sum, over lengths
    /// with and without a tail, NaN passed over by the max.
    #[test]
    fn row_max_and_sum_agree_with_plain_folds() {
        for len in [0usize, 1, 7, 8, 9, 1682, 1683] {
            let mut xs: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 % 1009) as f32 - 500.0) / 37.0)
                .collect();
            let want_max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(row_max(&xs), want_max, "max of {len}");
            let want_sum: f64 = xs.iter().map(|&x| f64::from(x)).sum();
            assert!(
                (f64::from(sum(&xs)) - want_sum).abs() < 1e-3,
                "sum of {len}"
            );
            if len > 3 {
                xs[2] = f32::NAN;
                // `f32::max` passes NaN over too.
                let want = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(row_max(&xs), want, "max of {len} with a NaN");
            }
        }
    }
}

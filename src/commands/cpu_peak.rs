//! The CPU's arithmetic peak, measured: every rayon thread runs independent multiply-adds from
//! registers for a moment, so that `bench model` can say what share of it each case reaches.
//! Measured rather than computed from a clock rate, which a shared or boosting CPU does not hold.

use std::time::{Duration, Instant};

/// How long each thread runs its loop.
const RUN: Duration = Duration::from_millis(300);

/// What the machine's threads reach together, in GFLOP/s (a multiply-add is two).
#[derive(Debug, Clone, Copy)]
pub struct Peak {
    /// f32 fused multiply-adds.
    pub f32: f64,
    /// bf16 pairs into f32 (`vdpbf16ps`), where the CPU has AVX-512 BF16.
    pub bf16: Option<f64>,
    /// The vector width the f32 loop used.
    pub f32_kind: &'static str,
}

/// Measures both peaks on all threads of the current rayon pool at once.
pub fn measure() -> Peak {
    let (f32_kind, f32_loop): (&'static str, fn(Duration) -> f64) = f32_loop();
    let f32 = on_all_threads(f32_loop);
    let bf16 = movierec::model::bf16_supported().then(|| on_all_threads(bf16_loop));
    Peak {
        f32,
        bf16,
        f32_kind,
    }
}

/// The sum over the pool's threads of `run`'s GFLOP/s, all running at once.
fn on_all_threads(run: fn(Duration) -> f64) -> f64 {
    rayon::broadcast(|_| run(RUN)).into_iter().sum()
}

#[cfg(target_arch = "x86_64")]
fn f32_loop() -> (&'static str, fn(Duration) -> f64) {
    if std::arch::is_x86_feature_detected!("avx512f") {
        ("AVX-512", |d| {
            // SAFETY: the CPU has AVX-512F (checked above).
            unsafe { x86::fma512(d) }
        })
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        ("AVX2", |d| {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { x86::fma256(d) }
        })
    } else {
        ("scalar", scalar_loop)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn f32_loop() -> (&'static str, fn(Duration) -> f64) {
    ("scalar", scalar_loop)
}

fn bf16_loop(run: Duration) -> f64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: only called where `bf16_supported()` (AVX-512F and AVX-512 BF16) holds.
    unsafe {
        x86::dpbf16(run)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = run;
        0.0
    }
}

/// A portable stand-in: what the compiler makes of eight independent multiply-adds.
fn scalar_loop(run: Duration) -> f64 {
    let mut acc = [1.0f32; 8];
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < run {
        for _ in 0..1000 {
            for a in &mut acc {
                *a = a.mul_add(0.999_999, 1e-7);
            }
        }
        rounds += 1000;
    }
    std::hint::black_box(acc);
    rounds as f64 * 8.0 * 2.0 / started.elapsed().as_secs_f64() / 1e9
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::time::{Duration, Instant};

    /// Independent accumulators: enough to cover the latency of two pipes.
    const CHAINS: usize = 12;
    /// Multiply-adds per chain between clock reads.
    const INNER: u64 = 4096;

    /// Runs `step` on `CHAINS` accumulators until `run` has passed; GFLOP/s for `flops` per
    /// accumulator and step.
    #[inline(always)]
    fn timed<T: Copy>(
        run: Duration,
        init: T,
        flops: f64,
        mut step: impl FnMut(&mut [T; CHAINS]),
    ) -> f64 {
        let mut acc = [init; CHAINS];
        let started = Instant::now();
        let mut steps = 0u64;
        while started.elapsed() < run {
            for _ in 0..INNER {
                step(&mut acc);
            }
            steps += INNER;
        }
        std::hint::black_box(&acc);
        steps as f64 * CHAINS as f64 * flops / started.elapsed().as_secs_f64() / 1e9
    }

    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma512(run: Duration) -> f64 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        timed(run, _mm512_set1_ps(1.0), 32.0, |acc| {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        })
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma256(run: Duration) -> f64 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        timed(run, _mm256_set1_ps(1.0), 16.0, |acc| {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        })
    }

    /// # Safety
    /// The CPU must have AVX-512F and AVX-512 BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn dpbf16(run: Duration) -> f64 {
        let (a, b) = (
            _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3), _mm512_set1_ps(1e-3)),
            _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3), _mm512_set1_ps(1e-3)),
        );
        // 16 lanes × 2 products × 2 FLOP.
        timed(run, _mm512_setzero_ps(), 64.0, |acc| {
            for x in acc.iter_mut() {
                *x = _mm512_dpbf16_ps(*x, a, b);
            }
        })
    }
}

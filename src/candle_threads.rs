//! candle's element-wise thread pool, switched off: the process's parallel work goes through
//! rayon alone.
//!
//! candle 0.11 splits every element-wise op over 64 Ki elements across its own "barrier pool" of
//! `CANDLE_NUM_THREADS - 1` threads (by default one per core, less one), which spin between ops
//! and take one op at a time. Our models are small: rayon already splits their products and
//! fused ops, and training runs each batch's shards on threads of their own. The spinning
//! workers take cores from both, and two shards calling the pool wait on each other. With the
//! pool off on 2 cores (`RAYON_NUM_THREADS=2`), BERT4Rec on ml-100k trained 50 epochs in 60 s
//! instead of 22, and `bench model`'s batch of 64 at length 50 scored 9,000-11,000 sequences a
//! second instead of about 4,500 (docs/experiments.md, "Two cores for one run").

/// The variable candle reads, once, for the size of its pool.
const CANDLE_NUM_THREADS: &str = "CANDLE_NUM_THREADS";

/// Sets `CANDLE_NUM_THREADS=1` (a pool without workers: candle's element-wise ops run on the
/// calling thread) unless the process environment already sets it, which then wins. Returns
/// whether it was set here. Call first thing in `main`, before any other thread starts and
/// before `.env` is loaded (so a value there does not count, as for mimalloc's options).
pub fn run_elementwise_ops_inline() -> bool {
    if std::env::var_os(CANDLE_NUM_THREADS).is_some() {
        return false;
    }
    // SAFETY: `main` calls this before it starts any thread, so nothing reads or writes the
    // environment at the same time.
    unsafe { std::env::set_var(CANDLE_NUM_THREADS, "1") };
    true
}

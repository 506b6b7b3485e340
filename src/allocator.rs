//! The process's allocator: mimalloc; told to keep the pages it frees while training.
//!
//! candle allocates a fresh buffer for every tensor op. With the system allocator the large ones
//! go back to the kernel and fault in again, zeroed, at each step; mimalloc reuses them, but by
//! default still returns ("purges") freed memory it has held for a second, and the kernel zeroes
//! those pages again when they are next used. Never purging cut a SASRec epoch on ml-100k from 6.36 to 5.42 s (medians of three runs of
//! `bench model`); the price is that a process keeps its peak memory, so only `train` and `bench
//! model` turn purging off: the API and the worker keep mimalloc's default and give memory back
//! after a burst.

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in `mi_option_t` of mimalloc v3 (`include/mimalloc.h`), which
/// libmimalloc-sys builds; the crate does not name it.
const PURGE_DELAY: mi_option_t = 15;
/// mimalloc v3's default purge delay, in milliseconds (`src/options.c`): what the option must
/// read before it is set, or the index above does not name it (another mimalloc version).
const DEFAULT_PURGE_DELAY: std::ffi::c_long = 1000;
/// The environment variable through which mimalloc reads the option; when set, it wins.
const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// Turns off mimalloc's purging of freed memory, unless `MIMALLOC_PURGE_DELAY` is in the
/// process environment (mimalloc read it at start-up; a `.env` file is loaded too late for it).
/// Call before any thread of ours starts. Returns false when the option was left alone because
/// mimalloc's option layout is not the one expected.
pub fn keep_freed_pages() -> bool {
    if std::env::var_os(PURGE_DELAY_ENV).is_some() {
        return true;
    }
    // SAFETY: reading and setting a mimalloc option has no memory-safety requirement; mimalloc
    // notes only that the calls are not synchronised, and `main` makes them before any thread
    // of ours starts.
    unsafe {
        if mi_option_get(PURGE_DELAY) != DEFAULT_PURGE_DELAY {
            return false;
        }
        mi_option_set(PURGE_DELAY, -1);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_index_names_the_purge_delay() {
        // Among its neighbours only the purge delay defaults to 1000 ms; a different
        // mimalloc layout fails here rather than silently setting another option.
        let value = unsafe { mi_option_get(PURGE_DELAY) };
        if std::env::var_os(PURGE_DELAY_ENV).is_none() {
            assert_eq!(value, DEFAULT_PURGE_DELAY);
        }
    }
}

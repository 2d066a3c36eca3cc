//! The allocator and threads of the benchmarks, as in the `protein-lm` binary (src/main.rs):
//! mimalloc, keeping the pages it frees, and candle's pool threads sleeping soon when idle.
//! Included by `#[path]`, not a library item: linking mimalloc into the library put its static TLS
//! into every evcxr cell's shared object, and after a few cells `dlopen` failed.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Call first. mimalloc returns freed pages to the kernel 10 ms later, which then zeroes them on
/// the next touch (13–18 % of a PRoBERTa forward in `clear_page_erms`); −1 = never. And candle's
/// pool threads sleep soon when idle (`protein_lm::device::park_idle_candle_threads`).
pub fn setup_runtime() {
    protein_lm::device::park_idle_candle_threads();
    // `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (include/mimalloc.h).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

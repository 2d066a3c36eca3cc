//! `protein-lm`: data, tokenizers, models, training and embeddings from the command line.

mod cli;

// candle allocates a fresh buffer for every tensor; with glibc's malloc every buffer over its mmap
// threshold (32 MB at most: ProteinBERT's attention values, PRoBERTa's FFN and attention scores)
// is a new mapping whose pages the kernel zeroes on first touch. mimalloc reuses them: ProteinBERT's
// 32 × 512 forward took 0.91–1.21 s instead of 1.50 s (`benches/models.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc returns freed pages to the kernel 10 ms later, which then zeroes them on their next
/// touch: 13–18 % of a PRoBERTa forward (`clear_page_erms`). −1 keeps them; the resident set stays
/// at its peak between batches, the peak itself unchanged. (Here, not in the library: linked into
/// the library, mimalloc's static TLS went into every evcxr cell and `dlopen` failed.)
fn keep_freed_pages() {
    // `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (include/mimalloc.h).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

fn main() {
    // First, while this is the only thread (it sets an environment variable candle reads).
    protein_lm::device::park_idle_candle_threads();
    // Every subcommand computes on the CPU threads set up here (see the function's comment).
    protein_lm::device::flush_denormals_to_zero();
    keep_freed_pages();
    if let Err(e) = cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

//! `protein-lm`: data, tokenizers, models, training and embeddings from the command line.

mod cli;

// candle allocates a fresh buffer for every tensor; with glibc's malloc every buffer over its mmap
// threshold (32 MB at most: ProteinBERT's attention values, PRoBERTa's FFN and attention scores)
// is a new mapping whose pages the kernel zeroes on first touch. mimalloc reuses them: ProteinBERT's
// 32 × 512 forward took 0.91–1.21 s instead of 1.50 s (`benches/models.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Every subcommand computes on the CPU threads set up here (see the function's comment).
    protein_lm::device::flush_denormals_to_zero();
    protein_lm::memory::keep_freed_pages();
    if let Err(e) = cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

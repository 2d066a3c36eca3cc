//! `protein-lm`: data, tokenizers, models, training and embeddings from the command line.

mod cli;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

//! `protein-lm data split` and the PPI part of `data stats` (filled in with the splits and PPI modules).
use clap::Args;
use protein_lm::data::resolver::DataResolver;

#[derive(Args)]
pub struct SplitArgs {}

pub fn run(_a: SplitArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}

pub fn ppi_stats(_resolver: &DataResolver) -> anyhow::Result<()> {
    Ok(())
}

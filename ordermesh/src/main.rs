//! `ordermesh`: with no arguments it runs `ordermesh up`, so `cargo run` at the repository root
//! starts the whole platform.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = ordermesh::Cli::parse();
    ordermesh::execute(cli)
}

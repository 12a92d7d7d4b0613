//! The ordermesh command-line tool.

mod demo;
mod dlq;
pub mod housekeeping;
pub mod mesh;
pub mod processes;
mod token;
pub mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ordermesh", version, about = "Customer-service and order-management platform", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the six services and the BFF in one process (the default command).
    Up(up::UpArgs),
    /// Print a token that the running dev issuer accepts.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// List, replay or discard dead-lettered events, through each service's ops API.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// The service mesh's policy, derived from the call graph.
    #[command(subcommand)]
    Mesh(mesh::MeshCommand),
    /// Retention and maintenance jobs (`list` lists them); scheduled by CronJobs in Kubernetes.
    Housekeeping(housekeeping::HousekeepingArgs),
    /// Run one service (or the BFF) of a platform of processes (`ordermesh up --processes`).
    #[command(hide = true)]
    Serve(processes::ServeArgs),
}

/// Where `ordermesh up` keeps its SQLite files and the dev issuer's key.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDirArg {
    /// Data directory of the embedded profile.
    #[arg(long, env = "ORDERMESH_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

pub fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Up(up::UpArgs::default())) {
        Command::Up(args) => up::run(args),
        Command::Token(command) => token::run(command),
        Command::Dlq(command) => dlq::run(command),
        Command::Mesh(command) => mesh::run(command),
        Command::Housekeeping(args) => housekeeping::run(args),
        Command::Serve(args) => processes::serve(args),
    }
}

//! The `finledger` command line.

use clap::{Parser, Subcommand};

use crate::configuration::Settings;

#[derive(Parser, Debug)]
#[command(
    name = "finledger",
    version,
    about = "A compliance-focused double-entry ledger service"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Run the service (embedded PostgreSQL under ./var unless DATABASE_URL is set).
    Serve(Settings),
    /// Apply database migrations and exit.
    Migrate(Settings),
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = match &cli.command {
        Commands::Serve(settings) | Commands::Migrate(settings) => settings.clone(),
    };
    crate::telemetry::init(&settings.log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Commands::Serve(settings) => crate::startup::serve(settings).await,
            Commands::Migrate(settings) => crate::startup::migrate(settings).await,
        }
    })
}

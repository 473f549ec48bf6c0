//! The `finledger` command line.

use std::path::PathBuf;

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
    /// Run the service (embedded PostgreSQL and dev PKI under ./var unless configured).
    Serve(Settings),
    /// Apply database migrations and exit.
    Migrate(Settings),
    /// Development certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Print the API's OpenAPI document (what openapi.json holds).
    Openapi,
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// Create a dev CA, a server certificate for localhost and client certificates for the demo
    /// principals.
    Init {
        #[arg(long, default_value = "var/pki")]
        out: PathBuf,
        /// Trust domain of the client certificates' SPIFFE IDs.
        #[arg(long, default_value = crate::pki::DEV_TRUST_DOMAIN)]
        trust_domain: String,
        /// Replace an existing dev PKI (every certificate issued from the old CA stops working).
        #[arg(long)]
        force: bool,
    },
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = match &cli.command {
        Commands::Serve(settings) | Commands::Migrate(settings) => settings.clone(),
        Commands::Certs { command } => return certs(command),
        Commands::Openapi => {
            print!("{}", crate::api::openapi::document());
            return Ok(());
        }
    };
    crate::telemetry::init(&settings.log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Commands::Serve(settings) => crate::startup::serve(settings).await,
            Commands::Migrate(settings) => crate::startup::migrate(settings).await,
            Commands::Certs { .. } | Commands::Openapi => unreachable!("handled before the runtime starts"),
        }
    })
}

fn certs(command: &CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init {
            out,
            trust_domain,
            force,
        } => {
            for path in crate::pki::init(out, trust_domain, *force)? {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

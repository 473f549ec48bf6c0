//! The `finledger` command line.

use std::path::{Path, PathBuf};

use anyhow::Context;
use audit::note::NoteVerifier;

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
    /// The tamper-evident audit log: signing key, evidence bundles and their offline verification.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Create a checkpoint signing key (C2SP signed-note format) and print its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// The log's name: the checkpoints' origin line and the key's name.
        #[arg(long, default_value = crate::evidence::DEV_AUDIT_ORIGIN)]
        origin: String,
        /// Replace an existing key (checkpoints signed with the old one will no longer verify with it).
        #[arg(long)]
        force: bool,
    },
    /// Write an evidence bundle: records, the latest signed checkpoint, the public key and a manifest.
    Export {
        #[arg(long)]
        out: PathBuf,
        /// First record to include.
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        /// Include records before this seq (default: all the latest checkpoint covers).
        #[arg(long)]
        to_seq: Option<u64>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Verify an evidence bundle offline: exits 0 only if every check passes.
    Verify {
        file: PathBuf,
        /// The log's public key (note verifier format), or a file holding it.
        #[arg(long)]
        public_key: String,
        /// A checkpoint (signed note file) trusted from before: the log must extend it.
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
    },
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
        Commands::Serve(settings)
        | Commands::Migrate(settings)
        | Commands::Audit {
            command: AuditCommand::Export { settings, .. },
        } => settings.clone(),
        Commands::Certs { command } => return certs(command),
        Commands::Audit { command } => return audit_offline(command),
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
            Commands::Audit {
                command:
                    AuditCommand::Export {
                        out,
                        from_seq,
                        to_seq,
                        settings,
                    },
            } => crate::startup::export_audit(settings, &out, from_seq, to_seq).await,
            Commands::Certs { .. } | Commands::Openapi | Commands::Audit { .. } => {
                unreachable!("handled before the runtime starts")
            }
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

/// The audit commands that need no database.
fn audit_offline(command: &AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Keygen { out, origin, force } => {
            let signer = crate::evidence::write_key(out, origin, *force)?;
            println!("wrote {}", out.display());
            println!("public key: {}", signer.verifier());
            Ok(())
        }
        AuditCommand::Verify {
            file,
            public_key,
            trusted_checkpoint,
        } => verify(file, public_key, trusted_checkpoint.as_deref()),
        AuditCommand::Export { .. } => unreachable!("export runs with a database"),
    }
}

fn verify(file: &Path, public_key: &str, trusted: Option<&Path>) -> anyhow::Result<()> {
    let key = match NoteVerifier::parse(public_key) {
        Ok(key) => key,
        Err(_) => {
            let text = std::fs::read_to_string(public_key)
                .with_context(|| format!("--public-key is neither a key nor a readable file: {public_key}"))?;
            NoteVerifier::parse(&text).with_context(|| format!("the public key in {public_key}"))?
        }
    };
    let trusted = trusted
        .map(|path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())))
        .transpose()?;
    let started = std::time::Instant::now();
    let outcome = crate::evidence::verify_bundle(file, &key, trusted.as_deref(), |done, total| {
        if total >= 1_000_000 || done < total {
            eprintln!("verified {done} of {total} records");
        }
    });
    match outcome {
        Ok((manifest, report)) => {
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "VERIFIED: records {}..{} of {} ({} records) signed by {}",
                report.first_seq,
                report.first_seq + report.records,
                manifest.origin,
                report.records,
                key
            );
            println!("  checkpoint size {}, root matches", report.checkpoint_size);
            if let Some(trusted) = &trusted {
                let size = trusted.lines().nth(1).unwrap_or("?");
                println!("  extends the trusted checkpoint of size {size}");
            }
            for (kind, count) in &report.by_type {
                println!("  {kind}: {count}");
            }
            for (currency, totals) in &report.totals {
                println!(
                    "  {currency}: debits posted {} = credits posted {}, debits pending {} = credits pending {}",
                    totals.debits_posted, totals.credits_posted, totals.debits_pending, totals.credits_pending
                );
            }
            if report.balances_compared > 0 {
                println!(
                    "  database balances of {} accounts equal the log's",
                    report.balances_compared
                );
            }
            println!("  {:.0} records/s", report.records as f64 / elapsed.max(f64::EPSILON));
            Ok(())
        }
        Err(error) => {
            println!("FAILED: {error}");
            std::process::exit(1);
        }
    }
}

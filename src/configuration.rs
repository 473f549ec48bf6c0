//! The service's one configuration struct. Every setting has an embedded default, so `finledger
//! serve` runs with none; each can be set by flag or environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::store::SequencerConfig;

#[derive(clap::Args, Clone, Debug)]
pub struct Settings {
    /// PostgreSQL to use. Without it, a local cluster is started (or reused) under <data-dir>/pg.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory for local state: the embedded PostgreSQL cluster and, later, the dev PKI.
    #[arg(long, env = "FINLEDGER_DATA_DIR", default_value = "var")]
    pub data_dir: PathBuf,

    /// Plain-HTTP operations listener: /healthz and /readyz only, never business data.
    #[arg(long, env = "FINLEDGER_OPS_LISTEN", default_value = "127.0.0.1:9464")]
    pub ops_listen: SocketAddr,

    /// Most commands committed in one database transaction.
    #[arg(long, env = "FINLEDGER_BATCH_SIZE_MAX", default_value_t = 8190, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub batch_size_max: u32,

    /// Most submissions queued for the sequencer before submitters wait.
    #[arg(long, env = "FINLEDGER_QUEUE_DEPTH_MAX", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_depth_max: u32,

    /// Accounts the sequencer keeps cached between batches.
    #[arg(long, env = "FINLEDGER_ACCOUNT_CACHE_MAX", default_value_t = 1_000_000)]
    pub account_cache_max: u32,

    /// Most batches writing or committing at once, each on its own database connection.
    #[arg(long, env = "FINLEDGER_COMMIT_PIPELINE_DEPTH", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub commit_pipeline_depth: u32,

    /// Connections in the read pool (the sequencer has its own).
    #[arg(long, env = "FINLEDGER_DB_CONNECTIONS_MAX", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_connections_max: u32,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "FINLEDGER_LOG", default_value = "info")]
    pub log: String,
}

impl Settings {
    pub fn sequencer(&self) -> SequencerConfig {
        SequencerConfig {
            batch_size_max: self.batch_size_max as usize,
            queue_depth_max: self.queue_depth_max as usize,
            account_cache_max: self.account_cache_max as usize,
            commit_pipeline_depth: self.commit_pipeline_depth as usize,
        }
    }

    pub fn postgres_dir(&self) -> PathBuf {
        self.data_dir.join("pg")
    }
}
